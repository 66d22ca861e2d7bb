package replica_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sofadb/sofadb/bench/cluster"
	"github.com/sofadb/sofadb/kv"
	"github.com/sofadb/sofadb/wire"
)

// rejoinTool runs `sofadb rejoin` for replica id of c and returns its combined output and error.
func rejoinTool(t *testing.T, c *cluster.Cluster, id int, yes bool) (string, error) {
	t.Helper()
	bin, err := cluster.Binary()
	if err != nil {
		t.Fatal(err)
	}
	var https []string
	for _, i := range c.IDs() {
		https = append(https, fmt.Sprintf("%d=%s", i, c.HTTPAddr(i)))
	}
	args := []string{"rejoin", "-id", fmt.Sprint(id), "-data", c.Replica(id).DataDir, "-http", strings.Join(https, ",")}
	if yes {
		args = append(args, "-yes")
	}
	out, err := exec.Command(bin, args...).CombinedOutput()
	return string(out), err
}

// TestE2EAWipedReplicaRejoinsAsALearnerThenVotes (issue 13): the way back for a replica whose
// data directory cannot be trusted. `sofadb rejoin` refuses while the replica runs and while another
// replica is down (changing nothing); with every other replica up it empties the directory but for
// the identity and marks it. The replica then catches up without voting (Voting false in /status),
// votes once it has caught up, and removes the mark; with the old leader stopped, it and the third
// replica hold every acknowledged write and keep taking new ones.
func TestE2EAWipedReplicaRejoinsAsALearnerThenVotes(t *testing.T) {
	c, leader := startCluster(t, 3)
	var followers []int
	for _, id := range c.IDs() {
		if id != leader {
			followers = append(followers, id)
		}
	}
	victim, other := followers[0], followers[1]
	conn := dial(t, c.ClientAddr(leader))
	written := 0
	write := func(n int) {
		for range n {
			expect(t, "put", do(t, conn, kv.OpPut, fmt.Sprintf("key-%d", written), fmt.Sprintf("value-%d", written)), wire.StatusOK, "")
			written++
		}
	}
	write(300)

	if out, err := rejoinTool(t, c, victim, true); err == nil || !strings.Contains(out, "stop it before") {
		t.Fatalf("rejoin of a running replica: %v\n%s", err, out)
	}
	if err := c.Stop(victim); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(other); err != nil {
		t.Fatal(err)
	}
	if out, err := rejoinTool(t, c, victim, true); err == nil || !strings.Contains(out, fmt.Sprintf("replica %d does not answer", other)) {
		t.Fatalf("rejoin with another replica down: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(c.Replica(victim).DataDir, "REJOIN")); err == nil {
		t.Fatal("a refused rejoin wrote REJOIN")
	}
	if err := c.Restart(other); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitLeader(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	out, err := rejoinTool(t, c, victim, true)
	if err != nil {
		t.Fatalf("rejoin with every other replica up: %v\n%s", err, out)
	}
	t.Logf("sofadb rejoin:\n%s", out)
	names, err := os.ReadDir(c.Replica(victim).DataDir)
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, n := range names {
		left = append(left, n.Name())
	}
	if !slices.Equal(left, []string{"IDENTITY", "PEER-IDENTITIES", "REJOIN"}) {
		t.Fatalf("the rejoined directory holds %v, want only the identity files and REJOIN", left)
	}

	write(100) // while the victim is away
	if err := c.Restart(victim); err != nil {
		t.Fatal(err)
	}
	sawLearner := false
	waitFor(t, 30*time.Second, "the rejoined replica to vote", func() bool {
		st, err := c.Status(victim)
		if err != nil {
			return false
		}
		if !st.Voting {
			sawLearner = true
		}
		return st.Voting
	})
	waitFor(t, 2*time.Second, "REJOIN to be removed once the replica votes", func() bool {
		_, err := os.Stat(filepath.Join(c.Replica(victim).DataDir, "REJOIN"))
		return os.IsNotExist(err)
	})
	ignored := metric(t, c.Replica(victim), "sofadb_rejoin_ignored_total")
	t.Logf("the rejoined replica was seen a learner: %v; prepares and accepts it left unanswered: %v", sawLearner, ignored)
	if !sawLearner && ignored == 0 {
		t.Error("the rejoined replica was never seen as a learner: it voted at once")
	}
	if !strings.Contains(c.Replica(victim).Log(), "REJOINING as a learner") {
		t.Error("the replica's log does not say it rejoined as a learner")
	}

	// The old leader goes: the rejoined replica and the third must hold every acknowledged write
	// between them, elect a leader, and take new writes (which needs the rejoined replica's votes).
	if err := c.Stop(leader); err != nil {
		t.Fatal(err)
	}
	nl, err := c.WaitLeader(15 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	conn = dial(t, c.ClientAddr(nl))
	for i := range written {
		expect(t, "get", do(t, conn, kv.OpGet, fmt.Sprintf("key-%d", i), ""), wire.StatusOK, fmt.Sprintf("value-%d", i))
	}
	write(50)
	t.Logf("replica %d rejoined; with replica %d stopped, replicas %d and %d (leader %d) served all %d writes", victim, leader, victim, other, nl, written)
}
