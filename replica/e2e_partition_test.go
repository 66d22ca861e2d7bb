package replica_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sofadb/sofadb/bench/cluster"
	"github.com/sofadb/sofadb/faultproxy"
	"github.com/sofadb/sofadb/kv"
	"github.com/sofadb/sofadb/loadgen/sofaclient"
	"github.com/sofadb/sofadb/wire"
)

// startProxied starts a 3-replica cluster whose peer links all go through a fault proxy.
func startProxied(t *testing.T) (*cluster.Cluster, *faultproxy.Proxy, int) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: starts replica processes")
	}
	fp := faultproxy.New(1)
	c := cluster.StartT(t, cluster.Options{N: 3, Faults: fp})
	t.Cleanup(func() { fp.Close() }) // after the cluster's own cleanup, which StartT registered first
	leader, err := c.WaitLeader(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return c, fp, leader
}

// writeVia tries one PUT through replica id and reports whether it was acknowledged.
func writeVia(c *cluster.Cluster, id int, key string) bool {
	conn, err := sofaclient.Dial(c.ClientAddr(id), sofaclient.Options{Timeout: time.Second})
	if err != nil {
		return false
	}
	defer conn.Close()
	res, err := conn.Do(context.Background(), kv.OpPut, []byte(key), []byte("v"))
	return err == nil && res.Status == wire.StatusOK
}

// TestE2ELeaderPartitionedFromTheMajority (issue 14: symmetric partition of the leader with a
// minority, then heal): every link of the leader cut both ways. The two others elect one of them
// and serve writes; the old leader stops leading (it hears no majority); after the heal it
// follows the new leader and every replica applies the same log.
func TestE2ELeaderPartitionedFromTheMajority(t *testing.T) {
	c, fp, old := startProxied(t)
	if !writeVia(c, old, "before") {
		t.Fatal("no write before the partition")
	}
	cut := time.Now()
	for _, id := range c.IDs() {
		if id != old {
			fp.SetBoth(old, id, faultproxy.Faults{Refuse: true})
		}
	}
	var next int
	waitFor(t, 10*time.Second, "a write through the majority side", func() bool {
		for _, id := range c.IDs() {
			if id != old && writeVia(c, id, fmt.Sprint("during-", id)) {
				next = id
				return true
			}
		}
		return false
	})
	t.Logf("first write on the majority side %v after the cut", time.Since(cut).Round(time.Millisecond))
	waitFor(t, 5*time.Second, "the cut-off leader to stop leading", func() bool {
		st, err := c.Status(old)
		return err == nil && st.Role != "leader"
	})
	fp.Heal()
	healed := time.Now()
	leader, err := c.WaitLeader(10 * time.Second)
	if err != nil || leader == old {
		t.Fatalf("after the heal: leader %d (%v); want one of the majority side", leader, err)
	}
	if !writeVia(c, old, "after") {
		t.Fatal("no write through the old leader after the heal")
	}
	if _, err := c.WaitConverged(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("majority side served through %d; after the heal the cluster converged in %v", next, time.Since(healed).Round(time.Millisecond))
}

// TestE2ELeaderThatCannotHearItsFollowers (issue 14: one-way loss into the leader): the leader's
// heartbeats and accepts still reach the followers, but nothing they send reaches it. It can never
// gather a majority again, so it must step down, and the followers, which still hear it until it
// does, must then elect one of themselves and serve.
func TestE2ELeaderThatCannotHearItsFollowers(t *testing.T) {
	c, fp, old := startProxied(t)
	cut := time.Now()
	for _, id := range c.IDs() {
		if id != old {
			fp.Set(id, old, faultproxy.Faults{Blackhole: true})
		}
	}
	waitFor(t, 15*time.Second, "a write through a follower after the leader went deaf", func() bool {
		for _, id := range c.IDs() {
			if id != old && writeVia(c, id, fmt.Sprint("deaf-", id)) {
				return true
			}
		}
		return false
	})
	t.Logf("first write %v after the leader went deaf", time.Since(cut).Round(time.Millisecond))
	fp.Heal()
	if _, err := c.WaitConverged(10 * time.Second); err != nil {
		t.Fatal(err)
	}
}
