package replica_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sofadb/sofadb/bench/cluster"
	"github.com/sofadb/sofadb/kv"
	"github.com/sofadb/sofadb/loadgen/sofaclient"
	"github.com/sofadb/sofadb/paxos"
	"github.com/sofadb/sofadb/wire"
	"github.com/sofadb/sofadb/wire/peerwire"
)

const refusedMetric = "sofadb_peer_handshakes_refused_total"

// metric reads one /metrics sample of a replica, failing the test if it cannot.
func metric(t *testing.T, p *cluster.Proc, name string) float64 {
	t.Helper()
	v, err := p.Metric(name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// peerHandshake dials addr and plays the initiator's side of the handshake as replica from to
// replica to, with identity ident, proving key (which may be wrong). It returns the connection,
// open, after the Proof is sent, and whether the responder's Challenge proved key.
func peerHandshake(t *testing.T, addr string, fromID, toID paxos.ReplicaID, ident wire.Identity, key []byte) (net.Conn, bool) {
	from, to := uint16(fromID), uint16(toID)
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	hello := wire.Hello{From: from, To: to, Identity: ident, Nonce: wire.NewNonce()}
	if _, err := nc.Write(wire.AppendHelloFrame(nil, &hello)); err != nil {
		t.Fatal(err)
	}
	rd := wire.NewReader(nc, 1<<20, peerwire.Types)
	typ, payload, err := rd.Next()
	if err != nil || typ != wire.TypeChallenge {
		t.Fatalf("hello from %d to %d: got %v %v, want a challenge", from, to, typ, err)
	}
	var ch wire.Challenge
	if _, err := wire.DecodeChallenge(payload, &ch); err != nil {
		t.Fatal(err)
	}
	tr := wire.NewTranscript(&hello, &ch)
	responderOK := ch.From == to && wire.CheckMAC(&ch.MAC, key, wire.RoleResponder, tr)
	proof := wire.Proof{MAC: wire.HandshakeMAC(key, wire.RoleInitiator, tr)}
	if _, err := nc.Write(wire.AppendProofFrame(nil, &proof)); err != nil {
		t.Fatal(err)
	}
	return nc, responderOK
}

// expectClosed reads nc until the server closes it; a read that times out instead fails the test.
func expectClosed(t *testing.T, nc net.Conn, within time.Duration, what string) {
	t.Helper()
	nc.SetReadDeadline(time.Now().Add(within))
	buf := make([]byte, 4096)
	for {
		_, err := nc.Read(buf)
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("%s: connection still open after %v", what, within)
		}
		return
	}
}

// waitLog polls a process's log until it contains every one of want.
func waitLog(t *testing.T, p *cluster.Proc, what string, want ...string) {
	t.Helper()
	waitFor(t, 5*time.Second, fmt.Sprintf("%s: %s log to contain %q", what, p.Name, want), func() bool {
		log := p.Log()
		for _, w := range want {
			if !strings.Contains(log, w) {
				return false
			}
		}
		return true
	})
}

// allPeerLinksUp reports whether every replica answers /status with every peer link connected.
func allPeerLinksUp(c *cluster.Cluster) bool {
	for _, id := range c.IDs() {
		st, err := c.Status(id)
		if err != nil {
			return false
		}
		for _, p := range st.Peers {
			if !p.Connected {
				return false
			}
		}
	}
	return true
}

// clusterServes checks that every replica answers /status with every peer link up, and that a
// write through each replica is applied and read back through the next one.
func clusterServes(t *testing.T, c *cluster.Cluster, tag string) {
	t.Helper()
	if err := c.CheckAlive(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitLeader(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "every peer link up", func() bool { return allPeerLinksUp(c) })
	for _, id := range c.IDs() {
		key, val := fmt.Sprintf("%s-%d", tag, id), fmt.Sprintf("served by %d", id)
		expect(t, "put "+key, do(t, dial(t, c.ClientAddr(id)), kv.OpPut, key, val), wire.StatusOK, "")
		expect(t, "get "+key, do(t, dial(t, c.ClientAddr(id%c.N()+1)), kv.OpGet, key, ""), wire.StatusOK, val)
	}
}

// TestE2EPeerAuth checks that only a peer holding the cluster key gets in: a raw connection that
// completes the handshake with the right key is taken as replica 1's link (the positive control
// that makes the refusal meaningful), the same with a wrong key is closed, logged and counted; and
// a whole process started as replica 1 with a wrong key file connects to no one while the cluster
// keeps serving.
func TestE2EPeerAuth(t *testing.T) {
	c, _ := startCluster(t, 3)
	key, err := os.ReadFile(c.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	key = bytes.TrimSpace(key)
	wrong := []byte(strings.Repeat("not the cluster key ", 3))
	r3 := c.Replica(3)

	// (a) Raw peers claiming to be replica 1, at replica 3 (a higher id accepts from a lower one).
	peer1Reconnects := func() uint64 {
		st, err := r3.Status()
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range st.Peers {
			if p.ID == 1 {
				return p.Reconnects
			}
		}
		t.Fatal("replica 3 has no peer 1")
		return 0
	}
	// The raw peer claims replica 1's identity too (identities are names, not secrets: the key
	// is what authenticates), or replica 3 would refuse it as a second replica 1.
	id1 := identityOf(t, c.Replica(1))
	refused0, reconnects0 := metric(t, r3, refusedMetric), peer1Reconnects()
	nc, responderOK := peerHandshake(t, r3.PeerAddr, 1, 3, id1, key)
	if !responderOK {
		t.Fatal("replica 3's challenge does not prove the cluster key")
	}
	waitFor(t, 5*time.Second, "the right key's connection to be taken as replica 1's link", func() bool {
		return peer1Reconnects() > reconnects0
	})
	nc.Close()
	if got := metric(t, r3, refusedMetric); got != refused0 {
		t.Fatalf("a handshake with the right key counted as refused (%v -> %v)", refused0, got)
	}

	nc, responderOK = peerHandshake(t, r3.PeerAddr, 1, 3, id1, wrong)
	if responderOK {
		t.Fatal("a challenge checked with the wrong key passed")
	}
	expectClosed(t, nc, 3*time.Second, "handshake with a wrong key")
	nc.Close()
	waitFor(t, 5*time.Second, "the refusal to be counted", func() bool { return metric(t, r3, refusedMetric) > refused0 })
	waitLog(t, r3, "wrong key", "refused peer connection", "replica 1 did not prove the cluster key")
	clusterServes(t, c, "after-raw")

	// (b) A fourth process that claims to be replica 1, without the key.
	wrongFile := filepath.Join(t.TempDir(), "wrong.key")
	if err := cluster.WriteKeyFile(wrongFile); err != nil {
		t.Fatal(err)
	}
	base := map[int]float64{2: metric(t, c.Replica(2), refusedMetric), 3: metric(t, r3, refusedMetric)}
	intruder, err := c.StartExtra(1, wrongFile)
	if err != nil {
		t.Fatal(err)
	}
	// It dials 2 and 3 (the ids above its own); both refuse it, and it refuses them.
	waitFor(t, 10*time.Second, "replicas 2 and 3 to refuse the intruder", func() bool {
		return metric(t, c.Replica(2), refusedMetric) > base[2] && metric(t, r3, refusedMetric) > base[3]
	})
	waitLog(t, intruder, "intruder", "peer handshake failed", "did not prove the cluster key")
	st, err := intruder.Status()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range st.Peers {
		if p.Connected {
			t.Errorf("intruder connected to replica %d", p.ID)
		}
		// Its /status says why (issue 11, bug 4), at least for the replicas it dials.
		if p.ID > 1 && !strings.Contains(p.LastError, "cluster keys differ") {
			t.Errorf("intruder's status for replica %d: last_error %q, want the key mismatch named", p.ID, p.LastError)
		}
	}
	if st.Role == "leader" || st.Commit != 0 || st.Applied != 0 {
		t.Errorf("intruder: role %s commit %d applied %d; it must learn nothing", st.Role, st.Commit, st.Applied)
	}
	// Its clients are answered at once (issue 11, bug 4): it has known no leader for several
	// election timeouts, so a request is refused (not taken: retry elsewhere) instead of waiting
	// out the 10 s request timeout.
	start := time.Now()
	hc := newHTTPClient(15 * time.Second)
	hc.mustHTTP(t, "PUT", intruder.HTTPAddr, "/kv/lonely", []byte("v"), 503, "no leader known yet: retry\n")
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("the intruder took %v to refuse a PUT; want an answer at once", took)
	}
	// A binary client cannot open its session there; it says why.
	if _, err := sofaclient.Dial(intruder.ClientAddr, sofaclient.Options{Timeout: time.Second}); err == nil ||
		!strings.Contains(err.Error(), "not-leader") {
		t.Errorf("binary session opened at the intruder: err = %v, want a not-leader refusal", err)
	}
	if n := metric(t, intruder, "sofadb_leaderless_refusals_total"); n < 2 {
		t.Errorf("sofadb_leaderless_refusals_total = %v, want the refusals counted", n)
	}
	clusterServes(t, c, "with-intruder")
	if err := intruder.Stop(); err != nil {
		t.Fatal(err)
	}
}

// identityOf reads a replica's identity from its /status.
func identityOf(t *testing.T, p *cluster.Proc) wire.Identity {
	t.Helper()
	st, err := p.Status()
	if err != nil {
		t.Fatal(err)
	}
	b, err := hex.DecodeString(st.Identity)
	var ident wire.Identity
	if err != nil || len(b) != len(ident) {
		t.Fatalf("%s: identity %q in /status", p.Name, st.Identity)
	}
	copy(ident[:], b)
	return ident
}

const conflictMetric = "sofadb_peer_identity_conflicts_total"

// TestE2ESecondProcessWithAKnownIDIsRefused (issue 11, bug 2): a process started as replica 1 at
// another address, with the right cluster key but its own data directory, was trusted by the
// peers; the links flapped between the two replica 1s (13,000 reconnects) and writes timed out.
// Now each replica has an identity kept in its data directory, the peers remember the identity
// behind each id, and a second process claiming a known id is refused, counted, logged at error
// level and shown in /status, while the cluster and the real replica 1 carry on.
func TestE2ESecondProcessWithAKnownIDIsRefused(t *testing.T) {
	c, _ := startCluster(t, 3)
	clusterServes(t, c, "before")
	real1 := identityOf(t, c.Replica(1))
	for _, id := range []int{2, 3} {
		if got := metric(t, c.Replica(id), conflictMetric); got != 0 {
			t.Fatalf("replica %d counts %v identity conflicts before any impostor", id, got)
		}
	}
	impostor, err := c.StartExtra(1, "")
	if err != nil {
		t.Fatal(err)
	}
	if identityOf(t, impostor) == real1 {
		t.Fatal("two data directories got the same identity")
	}
	waitFor(t, 10*time.Second, "replicas 2 and 3 to refuse the second replica 1", func() bool {
		return metric(t, c.Replica(2), conflictMetric) > 0 && metric(t, c.Replica(3), conflictMetric) > 0
	})
	for _, id := range []int{2, 3} {
		r := c.Replica(id)
		waitLog(t, r, "second replica 1", "REFUSING PEER", "claims to be replica 1")
		st, err := r.Status()
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range st.Peers {
			if p.ID == 1 && (!strings.Contains(p.IdentityConflict, "claims to be replica 1") || p.Identity != hex.EncodeToString(real1[:])) {
				t.Errorf("replica %d's status for peer 1: identity %q conflict %q; want the real identity kept and the conflict shown",
					id, p.Identity, p.IdentityConflict)
			}
		}
	}
	st, err := impostor.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.Commit != 0 || st.Applied != 0 || st.Role == "leader" {
		t.Errorf("impostor: role %s commit %d applied %d; it must learn nothing", st.Role, st.Commit, st.Applied)
	}
	// The real replica 1 keeps its links (clusterServes waits for every peer link to be up) and
	// its writes go through.
	clusterServes(t, c, "with-impostor")
	if err := impostor.Stop(); err != nil {
		t.Fatal(err)
	}
	// The peers remember across a restart: a restarted replica 3 still knows replica 1.
	if err := c.Stop(3); err != nil {
		t.Fatal(err)
	}
	if err := c.Restart(3); err != nil {
		t.Fatal(err)
	}
	clusterServes(t, c, "after-restart")
	if got := identityOf(t, c.Replica(3)); got == real1 {
		t.Fatal("replica 3 took replica 1's identity")
	}
	st3, err := c.Status(3)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range st3.Peers {
		if p.ID == 1 && p.Identity != hex.EncodeToString(real1[:]) {
			t.Errorf("restarted replica 3 knows peer 1 as %q, want %x", p.Identity, real1)
		}
	}
}
