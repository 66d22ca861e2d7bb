package replica_test

import (
	"context"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sofadb/sofadb/bench/cluster"
	"github.com/sofadb/sofadb/kv"
	"github.com/sofadb/sofadb/loadgen/sofaclient"
	"github.com/sofadb/sofadb/wire"
)

// TestE2EPausedLeaderServesNoStaleLeaseReads: a leader stopped (SIGSTOP) for longer than its lease
// is replaced; the new leader acknowledges a newer write; when the old leader resumes with reads
// queued, none of them may return the old value. Its clock must count the time it was stopped,
// not the ticks it slept through. (Found by review: 4 of 6 trials read stale values before the fix.)
func TestE2EPausedLeaderServesNoStaleLeaseReads(t *testing.T) {
	for trial := range 2 {
		c := cluster.StartT(t, cluster.Options{N: 3, Flags: []string{"-fsync=false"}})
		old, err := c.WaitLeader(10 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		oc, err := sofaclient.Dial(c.ClientAddr(old), sofaclient.Options{Timeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		ctx, key := context.Background(), []byte("k")
		if r, err := oc.Do(ctx, kv.OpPut, key, []byte("v1")); err != nil || r.Status != wire.StatusOK {
			t.Fatalf("put v1: %v %v", r, err)
		}
		if r, err := oc.Do(ctx, kv.OpGet, key, nil); err != nil || string(r.Value) != "v1" {
			t.Fatalf("get v1: %v %v", r, err)
		}
		pid := c.Replica(old).PID()
		syscall.Kill(pid, syscall.SIGSTOP)
		newLeader := 0
		deadline := time.Now().Add(10 * time.Second)
		for newLeader == 0 && time.Now().Before(deadline) {
			for _, id := range c.IDs() {
				if st, err := c.Status(id); id != old && err == nil && st.Role == "leader" {
					newLeader = id
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
		if newLeader == 0 {
			syscall.Kill(pid, syscall.SIGCONT)
			t.Fatal("no new leader while the old one was stopped")
		}
		nc, err := sofaclient.Dial(c.ClientAddr(newLeader), sofaclient.Options{Timeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		for {
			if r, err := nc.Do(ctx, kv.OpPut, key, []byte("v2")); err == nil && r.Status == wire.StatusOK {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		// v2 is acknowledged: queue reads at the stopped leader, then let it run.
		var mu sync.Mutex
		var wg sync.WaitGroup
		stale := 0
		for range 200 {
			wg.Add(1)
			oc.Go(kv.OpGet, key, nil, func(r *wire.Response, err error) {
				defer wg.Done()
				mu.Lock()
				defer mu.Unlock()
				if err == nil && r.Status == wire.StatusOK && string(r.Value) == "v1" {
					stale++
				}
			})
		}
		time.Sleep(50 * time.Millisecond)
		syscall.Kill(pid, syscall.SIGCONT)
		wg.Wait()
		oc.Close()
		nc.Close()
		if stale > 0 {
			t.Fatalf("trial %d: %d of 200 reads at the resumed old leader returned v1 after v2 was acknowledged", trial, stale)
		}
		c.Close()
	}
}
