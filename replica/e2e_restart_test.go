package replica_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sofadb/sofadb/kv"
	"github.com/sofadb/sofadb/loadgen/sofaclient"
	"github.com/sofadb/sofadb/wire"
)

// kvState is what the test expects the cluster to hold; a missing key is absent.
type kvState map[string]string

// writeAll sends every put and delete of batch pipelined on one connection and fails the test
// unless every one is acknowledged, then records them in want.
func writeAll(t *testing.T, conn *sofaclient.Conn, want kvState, puts kvState, deletes []string) {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failed []string
	cb := func(what string) sofaclient.Callback {
		wg.Add(1)
		return func(resp *wire.Response, err error) {
			defer wg.Done()
			if err != nil || resp.Status != wire.StatusOK {
				mu.Lock()
				failed = append(failed, fmt.Sprintf("%s: %v %v", what, resp, err))
				mu.Unlock()
			}
		}
	}
	for k, v := range puts {
		conn.Go(kv.OpPut, []byte(k), []byte(v), cb("put "+k))
	}
	for _, k := range deletes {
		conn.Go(kv.OpDelete, []byte(k), nil, cb("delete "+k))
	}
	wg.Wait()
	if len(failed) > 0 {
		t.Fatalf("%d writes failed, e.g. %s", len(failed), failed[0])
	}
	for k, v := range puts {
		want[k] = v
	}
	for _, k := range deletes {
		delete(want, k)
	}
}

// checkAll reads every key of keys through conn and compares with want.
func checkAll(t *testing.T, conn *sofaclient.Conn, want kvState, keys []string, where string) {
	t.Helper()
	for _, k := range keys {
		res := do(t, conn, kv.OpGet, k, "")
		v, ok := want[k]
		switch {
		case ok && (res.Status != wire.StatusOK || string(res.Value) != v):
			t.Fatalf("%s: get %s = %v %q, want %q", where, k, res.Status, res.Value, v)
		case !ok && res.Status != wire.StatusNotFound:
			t.Fatalf("%s: get %s = %v %q, want not found", where, k, res.Status, res.Value)
		}
	}
}

// TestE2ERestart stops a follower with SIGTERM, writes more (overwrites, deletes, new keys),
// restarts it and checks it catches up (same applied slot and digest); then stops every replica
// with SIGTERM, restarts them all, and checks that every key reads back as written through both
// APIs: everything came back from the data directories. With -snapshot-every=50 the leader
// truncates its log while the follower is down, so catching up takes a snapshot.
func TestE2ERestart(t *testing.T) {
	t.Run("log", func(t *testing.T) { restart(t, false) })
	t.Run("snapshot", func(t *testing.T) { restart(t, true, "-snapshot-every=50", "-batch-bytes=0") })
}

func restart(t *testing.T, snapshot bool, flags ...string) {
	c, leader := startCluster(t, 3, flags...)
	follower := leader%3 + 1
	want := kvState{}
	var keys []string
	puts := kvState{}
	for i := range 300 {
		k := fmt.Sprintf("k%03d", i)
		keys = append(keys, k)
		if i < 200 {
			puts[k] = fmt.Sprintf("first-%d", i)
		}
	}
	writeAll(t, dial(t, c.ClientAddr(leader)), want, puts, nil)

	// Converged first, so the follower's applied slot does not move after it is sampled.
	if _, err := c.WaitConverged(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	stopped, err := c.Status(follower)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(follower); err != nil {
		t.Fatal(err)
	}
	puts = kvState{}
	for i := range 100 {
		puts[keys[i]] = fmt.Sprintf("second-%d", i) // overwrite
		puts[keys[200+i]] = fmt.Sprintf("new-%d", i)
	}
	// Through the live follower (forwarded). With -batch-bytes=0 each command gets its own slot,
	// so the log grows well past the snapshot interval while the stopped follower is away.
	other := 6 - leader - follower
	writeAll(t, dial(t, c.ClientAddr(other)), want, puts, keys[150:200])
	if snapshot {
		// The leader keeps its log for a peer it heard from lately (10 election timeouts); after
		// that it truncates past what the stopped follower has.
		waitFor(t, 10*time.Second, "the leader to truncate its log past the stopped follower", func() bool {
			st, err := c.Status(leader)
			return err == nil && st.LogBase > stopped.Applied
		})
	}
	before, err := c.Status(leader)
	if err != nil {
		t.Fatal(err)
	}

	if err := c.Restart(follower); err != nil {
		t.Fatal(err)
	}
	sts, err := c.WaitConverged(15 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.Status(follower)
	if err != nil {
		t.Fatal(err)
	}
	if st.Applied < before.Applied {
		t.Fatalf("follower applied %d, leader had applied %d before it restarted", st.Applied, before.Applied)
	}
	t.Logf("follower %d caught up to slot %d (leader's log base %d; snapshots installed %d, catch-up entries %d)",
		follower, st.Applied, before.LogBase, st.Core.SnapshotsIn, st.Core.CatchupEntries)
	if snapshot && st.Core.SnapshotsIn == 0 {
		t.Errorf("the leader truncated its log to %d past the follower's %d, yet the follower installed no snapshot", before.LogBase, stopped.Applied)
	}

	// Everyone down, everyone up: the data comes from the data directories alone.
	var wg sync.WaitGroup
	errs := make([]error, c.N()+1)
	for _, id := range c.IDs() {
		wg.Add(1)
		go func() { defer wg.Done(); errs[id] = c.Stop(id) }()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range c.IDs() {
		if err := c.Restart(id); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.WaitLeader(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	after, err := c.WaitConverged(15 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if after[0].Applied < sts[0].Applied || after[0].Keys != len(want) {
		t.Fatalf("after a full restart: applied %d (was %d), %d keys (want %d)", after[0].Applied, sts[0].Applied, after[0].Keys, len(want))
	}
	for _, id := range c.IDs() {
		checkAll(t, dial(t, c.ClientAddr(id)), want, keys, fmt.Sprintf("binary at replica %d", id))
	}
	h := newHTTPClient(5 * time.Second)
	for _, k := range []string{"k000", "k120", "k160", "k250"} {
		if v, ok := want[k]; ok {
			h.mustHTTP(t, "GET", c.HTTPAddr(follower), "/kv/"+k, nil, 200, v)
		} else {
			h.mustHTTP(t, "GET", c.HTTPAddr(follower), "/kv/"+k, nil, 404, "")
		}
	}
	clusterServes(t, c, "after-restart")
}

// TestE2EStopWithOpenConnections stops every replica with SIGTERM while clients hold idle
// connections to both APIs: a clean shutdown must not wait for clients to hang up.
func TestE2EStopWithOpenConnections(t *testing.T) {
	c, leader := startCluster(t, 3)
	h := newHTTPClient(5 * time.Second)
	for _, id := range c.IDs() {
		expect(t, "put", do(t, dial(t, c.ClientAddr(id)), kv.OpPut, fmt.Sprint(id), "v"), wire.StatusOK, "")
		h.mustHTTP(t, "GET", c.HTTPAddr(id), fmt.Sprintf("/kv/%d", id), nil, 200, "v")
	}
	for _, id := range append([]int{leader}, c.IDs()...) {
		if !c.Running(id) {
			continue
		}
		start := time.Now()
		if err := c.Stop(id); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("replica %d took %v to stop", id, d)
		}
	}
}

// TestE2EStopUnderLoad stops the leader with SIGTERM while 64 HTTP clients keep it busy, three
// times: requests caught by the shutdown must be answered (503: outcome unknown) or cut off, not
// keep the process alive until their timeout.
func TestE2EStopUnderLoad(t *testing.T) {
	c, _ := startCluster(t, 3)
	h := newHTTPClient(15 * time.Second)
	for round := 1; round <= 3; round++ {
		leader, err := c.WaitLeader(10 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var ok atomic.Int64
		for g := range 64 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := 0; ; n++ {
					select {
					case <-stop:
						return
					default:
					}
					r, err := h.do("PUT", c.HTTPAddr(leader), fmt.Sprintf("/kv/h%d", g), fmt.Appendf(nil, "%d", n))
					if err == nil && r.code == 204 {
						ok.Add(1)
					}
				}
			}()
		}
		waitFor(t, 10*time.Second, "HTTP writes under way", func() bool { return ok.Load() >= 200 })
		start := time.Now()
		err = c.Stop(leader)
		d := time.Since(start)
		close(stop)
		wg.Wait()
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if d > 3*time.Second {
			t.Errorf("round %d: the leader took %v to stop under load", round, d)
		}
		if err := c.Restart(leader); err != nil {
			t.Fatal(err)
		}
	}
}
