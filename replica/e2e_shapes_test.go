package replica_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/sofadb/sofadb/bench/cluster"
	"github.com/sofadb/sofadb/faultproxy"
	"github.com/sofadb/sofadb/kv"
	"github.com/sofadb/sofadb/wire"
)

// OmniPaxos (EuroSys'23) showed leader-based protocols losing liveness for good under partial
// connectivity, where every replica reaches some but not all of the others. These tests put
// SofaDB in its shapes and measure how long until writes succeed again and how many ballots were
// raised meanwhile (campaigns, summed over the replicas).

// startProxiedN starts an n-replica cluster whose peer links all go through a fault proxy.
func startProxiedN(t *testing.T, n int, flags ...string) (*cluster.Cluster, *faultproxy.Proxy, int) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: starts replica processes")
	}
	fp := faultproxy.New(1)
	c := cluster.StartT(t, cluster.Options{N: n, Faults: fp, Flags: flags})
	t.Cleanup(func() { fp.Close() })
	leader, err := c.WaitLeader(15 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return c, fp, leader
}

// keepOnly cuts, both ways, every link of the cluster but those listed.
func keepOnly(c *cluster.Cluster, fp *faultproxy.Proxy, keep [][2]int) {
	kept := map[[2]int]bool{}
	for _, k := range keep {
		kept[k], kept[[2]int{k[1], k[0]}] = true, true
	}
	for _, a := range c.IDs() {
		for _, b := range c.IDs() {
			if a < b && !kept[[2]int{a, b}] {
				fp.SetBoth(a, b, faultproxy.Faults{Refuse: true})
			}
		}
	}
}

// campaigns sums sofadb_campaigns_total over the replicas.
func campaigns(t *testing.T, c *cluster.Cluster) float64 {
	n := 0.0
	for _, id := range c.IDs() {
		n += metric(t, c.Replica(id), "sofadb_campaigns_total")
	}
	return n
}

// firstWrite waits until a write succeeds through one of ids and returns how long that took.
func firstWrite(t *testing.T, c *cluster.Cluster, ids []int, within time.Duration, what string) time.Duration {
	t.Helper()
	start := time.Now()
	waitFor(t, within, what, func() bool {
		for _, id := range ids {
			if writeVia(c, id, fmt.Sprint("shape-", id, "-", time.Now().UnixNano())) {
				return true
			}
		}
		return false
	})
	return time.Since(start)
}

// Quorum loss (5 replicas): the leader keeps one link only, to C, and every other replica keeps
// only its link to C. The leader can no longer reach a majority; C still hears it. Without
// check-quorum the leader would keep heartbeating C, C would never time out, and no one else can
// gather a majority without C: stuck for good. SofaDB's leader steps down when it has not heard
// a majority for an election timeout, C then times out and is elected by everyone but the old
// leader's side.
func TestE2EPartialConnectivityQuorumLoss(t *testing.T) {
	c, fp, leader := startProxiedN(t, 5)
	hub := leader%5 + 1 // C: any replica but the leader
	var keep [][2]int
	for _, id := range c.IDs() {
		if id != hub {
			keep = append(keep, [2]int{id, hub})
		}
	}
	before := campaigns(t, c)
	keepOnly(c, fp, keep)
	took := firstWrite(t, c, []int{hub}, 15*time.Second, "a write through the quorum-connected replica")
	st, err := c.Status(hub)
	if err != nil || st.Role != "leader" {
		t.Fatalf("replica %d (the only one connected to a majority) is %q, want leader (%v)", hub, st.Role, err)
	}
	t.Logf("quorum loss, 5 replicas: first write %v after the cut, %v ballots raised", took.Round(time.Millisecond), campaigns(t, c)-before)
}

// Chained (3 replicas): the leader A and a follower C lose their link; B still reaches both. C no
// longer hears A. Campaigning at once it would depose A through B, and A would depose C in turn,
// for as long as the chain lasts (OmniPaxos' livelock). With pre-vote, C asks first, B (which
// hears A) refuses, and no ballot is raised. Without it, C raises a ballot every election timeout
// (13 in 3 s), and A still keeps leading: B ignores prepares while the leader it hears holds a
// lease. Either way writes through A keep succeeding.
func TestE2EPartialConnectivityChained(t *testing.T) {
	for _, tc := range []struct {
		name       string
		flags      []string
		wantRaised bool
	}{{"prevote", nil, false}, {"no-prevote", []string{"-prevote=false"}, true}} {
		t.Run(tc.name, func(t *testing.T) {
			c, fp, leader := startProxiedN(t, 3, tc.flags...)
			a := leader
			b, cc := a%3+1, (a+1)%3+1
			before := campaigns(t, c)
			keepOnly(c, fp, [][2]int{{a, b}, {b, cc}})
			end := time.Now().Add(3 * time.Second)
			writes, fails := 0, 0
			for time.Now().Before(end) {
				if writeVia(c, a, fmt.Sprint("chain-", writes, "-", fails)) {
					writes++
				} else {
					fails++
				}
				time.Sleep(20 * time.Millisecond)
			}
			raised := campaigns(t, c) - before
			t.Logf("chained, 3 replicas, %s: %d writes through the leader in 3 s, %d failed, %v ballots raised", tc.name, writes, fails, raised)
			if l, err := c.Status(a); err != nil || l.Role != "leader" || fails > 0 {
				t.Fatalf("the leader was disturbed: role %q (%v), %d writes failed", l.Role, err, fails)
			}
			if (raised > 0) != tc.wantRaised {
				t.Fatalf("%v ballots raised; want them only without pre-vote", raised)
			}
		})
	}
}

// Constrained election (5 replicas): the only replica still connected to a majority, C, is far
// behind (it was cut off while the others chose 300 slots), and the old leader is cut off from
// everyone. The others refuse C their pre-votes (a far-behind replica catches up before it
// campaigns), and they cannot reach a majority without C. C must catch up from them, then win.
func TestE2EPartialConnectivityConstrainedElection(t *testing.T) {
	c, fp, leader := startProxiedN(t, 5, "-prevote-behind-slots", "16")
	hub := leader%5 + 1
	for _, id := range c.IDs() {
		if id != hub {
			fp.SetBoth(hub, id, faultproxy.Faults{Refuse: true})
		}
	}
	conn := dial(t, c.ClientAddr(leader))
	for i := range 300 { // one slot each: C falls 300 slots behind
		expect(t, "put", do(t, conn, kv.OpPut, fmt.Sprint("k", i), "v"), wire.StatusOK, "")
	}
	before := campaigns(t, c)
	fp.Heal()
	var keep [][2]int
	for _, id := range c.IDs() {
		if id != hub && id != leader {
			keep = append(keep, [2]int{id, hub})
		}
	}
	keepOnly(c, fp, keep)
	took := firstWrite(t, c, []int{hub}, 20*time.Second, "a write through the far-behind, quorum-connected replica")
	t.Logf("constrained election, 5 replicas: first write %v after the cut, %v ballots raised", took.Round(time.Millisecond), campaigns(t, c)-before)
}

// WAN-like delay (3 replicas): 20 ms one way, plus up to 10 ms of jitter, on every link. Writes
// still commit, each paying about one round trip to a majority, and the leader stays: the
// election timeout (150-300 ms) is several round trips.
func TestE2EWANDelayOnEveryLink(t *testing.T) {
	c, fp, leader := startProxiedN(t, 3)
	for _, a := range c.IDs() {
		for _, b := range c.IDs() {
			if a != b {
				fp.Set(a, b, faultproxy.Faults{Delay: 20 * time.Millisecond, Jitter: 10 * time.Millisecond})
			}
		}
	}
	before := campaigns(t, c)
	conn := dial(t, c.ClientAddr(leader))
	var lat []time.Duration
	for i := range 50 {
		start := time.Now()
		expect(t, "put", do(t, conn, kv.OpPut, fmt.Sprint("wan-", i), "v"), wire.StatusOK, "")
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	p50 := lat[len(lat)/2]
	t.Logf("WAN delay, 3 replicas: write p50 %v, max %v; %v ballots raised", p50.Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond), campaigns(t, c)-before)
	if p50 < 40*time.Millisecond || p50 > 500*time.Millisecond {
		t.Errorf("write p50 %v with a 40-60 ms round trip to a majority: want at least 40 ms (the delay is real) and well under the election timeout", p50)
	}
	if raised := campaigns(t, c) - before; raised != 0 {
		t.Errorf("%v ballots raised under a steady delay", raised)
	}
}

// One-way loss out of the leader (3 replicas): 30 % of the frames the leader sends are lost
// (accepts, heartbeats, commit notices); what the followers send back all arrives. Resends and
// catch-up carry the writes through, and the leader stays.
func TestE2EOneWayLossOutOfTheLeader(t *testing.T) {
	c, fp, leader := startProxiedN(t, 3)
	for _, id := range c.IDs() {
		if id != leader {
			fp.Set(leader, id, faultproxy.Faults{Loss: 0.3})
		}
	}
	before := campaigns(t, c)
	conn := dial(t, c.ClientAddr(leader))
	start := time.Now()
	for i := range 200 {
		expect(t, "put", do(t, conn, kv.OpPut, fmt.Sprint("lossy-", i), "v"), wire.StatusOK, "")
	}
	t.Logf("30 %% loss out of the leader: 200 writes in %v, %v ballots raised, %d frames dropped",
		time.Since(start).Round(time.Millisecond), campaigns(t, c)-before, fp.Dropped.Load())
	if l, err := c.WaitLeader(5 * time.Second); err != nil || l != leader {
		t.Errorf("leader %d, then %d (%v): want it to stay", leader, l, err)
	}
	if _, err := c.WaitConverged(10 * time.Second); err != nil {
		t.Error(err)
	}
}
