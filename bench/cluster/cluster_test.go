package cluster_test

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/sofadb/sofadb/bench/cluster"
	"github.com/sofadb/sofadb/kv"
	"github.com/sofadb/sofadb/loadgen/sofaclient"
	"github.com/sofadb/sofadb/wire"
)

func TestMain(m *testing.M) {
	code := m.Run()
	cluster.RemoveBinary()
	os.Exit(code)
}

// TestLauncherLifecycle exercises every verb of the launcher on a real cluster: a leader is
// found, a SIGKILLed leader is replaced and comes back, a crash is told apart from a stop, and
// Close removes the directory.
func TestLauncherLifecycle(t *testing.T) {
	if testing.Short() {
		t.Skip("starts replica processes")
	}
	c, err := cluster.Start(cluster.Options{N: 3, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() {
			c.KeepOnClose()
		}
		c.Close()
	}()
	leader, err := c.WaitLeader(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Kill(leader); err != nil {
		t.Fatal(err)
	}
	if c.Running(leader) || len(c.Live()) != 2 {
		t.Fatalf("after Kill(%d): running %v, live %v", leader, c.Running(leader), c.Live())
	}
	if err := c.Kill(leader); !errors.Is(err, cluster.ErrNotRunning) {
		t.Fatalf("second Kill: %v, want ErrNotRunning", err)
	}
	next, err := c.WaitLeader(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if next == leader {
		t.Fatalf("leader %d still named after it was killed", next)
	}
	if err := c.Restart(leader); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitConverged(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := c.CheckAlive(); err != nil {
		t.Fatalf("no replica crashed, yet: %v", err)
	}
	// A replica that dies behind the launcher's back is reported as a crash.
	follower := next%3 + 1
	p := c.Replica(follower)
	if err := cluster.KillBehindBack(p); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for c.Running(follower) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if err := c.CheckAlive(); err == nil {
		t.Fatalf("replica %d was killed outside the launcher, CheckAlive says nothing", follower)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(c.Dir); os.Getenv("SOFADB_CLUSTER_KEEP") == "" && !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Close left %s: %v", c.Dir, err)
	}
}

// TestLauncherFiveReplicas runs a 5-replica cluster that loses two replicas (its leader among
// them), still commits through the remaining majority, and takes both back.
func TestLauncherFiveReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("starts replica processes")
	}
	c := cluster.StartT(t, cluster.Options{N: 5})
	leader, err := c.WaitLeader(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	other := leader%5 + 1
	for _, id := range []int{leader, other} {
		if err := c.Kill(id); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.WaitLeader(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	survivor := c.Live()[0]
	conn, err := sofaclient.Dial(c.ClientAddr(survivor), sofaclient.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	res, err := conn.Do(context.Background(), kv.OpPut, []byte("k"), []byte("v"))
	if err != nil || res.Status != wire.StatusOK {
		t.Fatalf("put with 3 of 5 replicas: %+v %v", res, err)
	}
	for _, id := range []int{leader, other} {
		if err := c.Restart(id); err != nil {
			t.Fatal(err)
		}
	}
	sts, err := c.WaitConverged(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(sts) != 5 || sts[0].Keys != 1 {
		t.Fatalf("after restarts: %d replicas converged with %d keys, want 5 with 1", len(sts), sts[0].Keys)
	}
}
