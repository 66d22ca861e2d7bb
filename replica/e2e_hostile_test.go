package replica_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sofadb/sofadb/bench/cluster"
	"github.com/sofadb/sofadb/kv"
	"github.com/sofadb/sofadb/loadgen/sofaclient"
	"github.com/sofadb/sofadb/paxos"
	"github.com/sofadb/sofadb/wire"
)

// dialFrom opens n silent TCP connections to addr from the loopback address src (127.0.0.2, ...:
// Linux routes all of 127/8 to lo), so that a test can play several source hosts.
func dialFrom(t *testing.T, src, addr string, n int) []net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 2 * time.Second}
	var cs []net.Conn
	for range n {
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial %s from %s: %v", addr, src, err)
		}
		cs = append(cs, c)
	}
	t.Cleanup(func() {
		for _, c := range cs {
			c.Close()
		}
	})
	return cs
}

// TestE2EIdleConnectionsLockNoClientOut (issue 12, item 4): 1,024 silent binary connections used
// to lock every new client out for as long as they were held. Now 2,000 silent connections from
// eight source hosts fill the table (each host under its cap of 256); a new client evicts the one
// idle longest and is served; one host alone cannot take more than its cap; and a connection idle
// past -client-idle-timeout is closed. The HTTP port keeps serving beside 2,000 silent connections.
func TestE2EIdleConnectionsLockNoClientOut(t *testing.T) {
	c, leader := startCluster(t, 3, "-client-idle-timeout", "3s")
	p := c.Replica(leader)
	for i := range 8 {
		dialFrom(t, fmt.Sprintf("127.0.0.%d", i+2), p.ClientAddr, 250)
		dialFrom(t, fmt.Sprintf("127.0.0.%d", i+2), p.HTTPAddr, 250)
	}
	time.Sleep(1500 * time.Millisecond) // idle past the eviction threshold (1 s)
	start := time.Now()
	for i := range 20 {
		key := fmt.Sprintf("after-flood-%d", i)
		expect(t, "put "+key, do(t, dial(t, p.ClientAddr), kv.OpPut, key, "v"), wire.StatusOK, "")
	}
	h := newHTTPClient(5 * time.Second)
	h.mustHTTP(t, "PUT", p.HTTPAddr, "/kv/http-after-flood", []byte("v"), 204, "")
	h.mustHTTP(t, "GET", p.HTTPAddr, "/kv/after-flood-3", nil, 200, "v")
	t.Logf("20 new binary clients and 2 HTTP requests served in %v beside 2,000 silent connections per port", time.Since(start))
	if n := metric(t, p, "sofadb_evicted_client_connections_total"); n < 20 {
		t.Errorf("sofadb_evicted_client_connections_total = %v, want an idle connection evicted for each new client", n)
	}
	// One source may not take more than its share: 300 from 127.0.0.20 leave 44 refused.
	refused0 := metric(t, p, "sofadb_refused_client_connections_total")
	flood := dialFrom(t, "127.0.0.20", p.ClientAddr, 300)
	waitFor(t, 5*time.Second, "the connections over the per-source cap to be refused", func() bool {
		return metric(t, p, "sofadb_refused_client_connections_total")-refused0 >= 44
	})
	// The idle timeout closes silent connections on its own.
	waitFor(t, 10*time.Second, "silent connections to be closed after the idle timeout", func() bool {
		return metric(t, p, "sofadb_idle_client_connections_closed_total") > 0
	})
	flood[0].SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := flood[0].Read(make([]byte, 1)); err == nil || strings.Contains(err.Error(), "timeout") {
		t.Errorf("a silent connection is still open 5 s past the 3 s idle timeout (read: %v)", err)
	}
	clusterServes(t, c, "after-idle-flood")
}

// TestE2EPeerPortJamFromOneSourceKeepsPeersIn (issue 12, item 5): 64 silent connections to a peer
// port used to fill its 32 handshake slots and keep a restarted follower isolated for the whole
// flood. One source now holds at most 4 of them: a follower restarted during the flood connects
// and catches up.
func TestE2EPeerPortJamFromOneSourceKeepsPeersIn(t *testing.T) {
	c, leader := startCluster(t, 3)
	follower := leader%3 + 1
	id1 := identityOf(t, c.Replica(1))
	if err := c.Stop(follower); err != nil {
		t.Fatal(err)
	}
	conn := dial(t, c.ClientAddr(leader))
	for i := range 50 {
		key := fmt.Sprintf("while-away-%d", i)
		expect(t, "put "+key, do(t, conn, kv.OpPut, key, "v"), wire.StatusOK, "")
	}
	// Jam every live peer port from one source: 64 silent connections each, every one redialled
	// as soon as the replica drops it (the handshake timeout), as a real jammer would.
	stop := make(chan struct{})
	defer close(stop)
	for _, id := range c.IDs() {
		if id == follower {
			continue
		}
		for range 64 {
			go func(addr string) {
				d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.9")}, Timeout: time.Second}
				buf := make([]byte, 64)
				for {
					select {
					case <-stop:
						return
					default:
					}
					nc, err := d.Dial("tcp", addr)
					if err != nil {
						time.Sleep(10 * time.Millisecond)
						continue
					}
					go func() { <-stop; nc.Close() }()
					for {
						if _, err := nc.Read(buf); err != nil {
							break
						}
					}
					nc.Close()
				}
			}(c.PeerAddr(id))
		}
	}
	time.Sleep(500 * time.Millisecond) // the jam is in place
	// A key holder from another host still gets a handshake slot at once, every time: the jammer
	// holds at most its per-source share of them.
	key, err := os.ReadFile(c.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	to := 3
	if follower == 3 {
		to = 2
	}
	for range 5 {
		nc, ok := peerHandshake(t, c.PeerAddr(to), 1, paxos.ReplicaID(to), id1, bytes.TrimSpace(key))
		nc.Close()
		if !ok {
			t.Fatal("the challenge during the jam does not prove the key")
		}
	}
	if err := c.Restart(follower); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitConverged(15 * time.Second); err != nil {
		t.Fatalf("the restarted follower did not catch up during the flood: %v", err)
	}
	// Every link of every replica is up, those into the jammed ports included.
	waitFor(t, 10*time.Second, "every peer link up during the flood", func() bool { return allPeerLinksUp(c) })
	if n := metric(t, c.Replica(leader), refusedMetric); n < 60 {
		t.Errorf("the leader refused %v peer connections during the flood, want the jam refused", n)
	}
}

// TestE2EBadConnectionFloodLogsBoundedLines (issue 12, item 6): every refused or broken connection
// was a WARN line (230 KB/s at 1,000 a second fills a disk). Now each distinct reason is logged
// once per interval and the rest counted: 500 garbage connections write a handful of lines, and
// the counter still counts all 500.
func TestE2EBadConnectionFloodLogsBoundedLines(t *testing.T) {
	c, _ := startCluster(t, 3)
	p := c.Replica(2)
	bad0 := metric(t, p, "sofadb_bad_client_connections_total")
	lines0 := strings.Count(p.Log(), "closing client connection")
	for range 500 {
		nc, err := net.DialTimeout("tcp", p.ClientAddr, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		nc.Write([]byte("GET / HTTP/1.1\r\n\r\n")) // not the binary protocol
		expectClosed(t, nc, 5*time.Second, "garbage")
		nc.Close()
	}
	waitFor(t, 5*time.Second, "500 bad connections to be counted", func() bool {
		return metric(t, p, "sofadb_bad_client_connections_total")-bad0 >= 500
	})
	if lines := strings.Count(p.Log(), "closing client connection") - lines0; lines > 3 {
		t.Errorf("500 garbage connections wrote %d log lines, want at most a few", lines)
	}
}

// TestE2EReplicaFencesOnLowDiskSpace (issue 12, item 3): a full file system killed the replica
// with SIGBUS. The replica now reads its file system's free space (statfs) and fences itself below
// -disk-headroom, saying why in its log and /status; the others carry on. Here one replica is told
// to keep an exabyte free, which no disk has, so the real statfs path fences it at start.
func TestE2EReplicaFencesOnLowDiskSpace(t *testing.T) {
	if testing.Short() {
		t.Skip("starts replica processes")
	}
	c := cluster.StartT(t, cluster.Options{N: 3, ReplicaFlags: map[int][]string{3: {"-disk-headroom", "1152921504606846976"}}})
	waitLog(t, c.Replica(3), "low disk", "DISK NEARLY FULL")
	waitFor(t, 5*time.Second, "the fence in /status", func() bool {
		st, err := c.Status(3)
		return err == nil && strings.Contains(st.DiskError, "disk nearly full")
	})
	leader := 0 // the fenced replica follows no one: find the leader among the healthy two
	waitFor(t, 10*time.Second, "a healthy replica to lead", func() bool {
		for _, id := range []int{1, 2} {
			if st, err := c.Status(id); err == nil && st.Role == "leader" {
				leader = id
				return true
			}
		}
		return false
	})
	conn := dial(t, c.ClientAddr(leader))
	for i := range 20 {
		key := fmt.Sprintf("low-disk-%d", i)
		expect(t, "put "+key, do(t, conn, kv.OpPut, key, "v"), wire.StatusOK, "")
	}
	h := newHTTPClient(5 * time.Second)
	if r, err := h.do("PUT", c.HTTPAddr(3), "/kv/on-the-fenced", []byte("v")); err != nil || r.code != 503 {
		t.Errorf("PUT to the fenced replica: %v %v, want 503", r.code, err)
	}
}

// TestE2ERequestBytesAreBounded (issue 12, item 1, in part): four connections pipelining 60 KB
// PUTs grew a leader to 4-5 GB (requests were bounded in number, 65,536, not in bytes). The bytes
// of requests taken and not yet answered are now bounded (-max-request-bytes); beyond it a request
// is refused Busy at once, and what was taken is answered.
func TestE2ERequestBytesAreBounded(t *testing.T) {
	skipUnderRaceBuild(t)
	c, leader := startCluster(t, 3, "-max-request-bytes", "1048576")
	p := c.Replica(leader)
	conn := dial(t, p.ClientAddr)
	value := strings.Repeat("v", 60_000)
	type result struct {
		status wire.Status
		err    error
	}
	results := make(chan result, 400)
	for i := range 400 { // 24 MB at once against a 1 MiB budget
		conn.Go(kv.OpPut, fmt.Appendf(nil, "big-%d", i%50), []byte(value), func(resp *wire.Response, err error) {
			r := result{err: err}
			if resp != nil {
				r.status = resp.Status
			}
			results <- r
		})
	}
	busy, ok := 0, 0
	for range 400 {
		r := <-results
		switch {
		case r.err != nil:
			t.Fatalf("a pipelined PUT failed: %v", r.err)
		case r.status == wire.StatusBusy:
			busy++
		case r.status == wire.StatusOK:
			ok++
		default:
			t.Errorf("a pipelined PUT got %v", r.status)
		}
	}
	t.Logf("400 pipelined 60 KB PUTs against a 1 MiB budget: %d ok, %d busy", ok, busy)
	if busy == 0 || ok == 0 {
		t.Errorf("%d ok, %d busy: want the budget to refuse some at once and the rest to succeed", ok, busy)
	}
	if n := metric(t, p, "sofadb_busy_bytes_total"); n == 0 || n > float64(busy) {
		t.Errorf("sofadb_busy_bytes_total = %v, want the budget's refusals among the %d Busy", n, busy)
	}
	waitFor(t, 5*time.Second, "the request bytes to drain", func() bool {
		return metric(t, p, "sofadb_client_inflight_bytes") == 0
	})
}

// TestE2EClusterLeadsAgainAfterALargeValueBurst (issue 12, item 1, in part): four connections
// pipelining PUTs of values just under the 64 KiB limit left the cluster without a leader for
// good: every leader change shipped the whole in-flight window (64 MiB of votes) in promises and
// re-proposals, which took longer than the election timeout, so the next election began before
// the last one ended. With a window of 8 MiB (1 MiB now) a leader is back, and writes succeed,
// soon after the burst.
//
// And beside the burst, a light client (100 writes/s, open loop, on its own connection to the
// leader) keeps its writes: every one succeeds with p99 under lightP99Max, measured from when each
// was due, and the leader neither changes nor steps down. With one FIFO for everybody and an 8 MiB
// window, the light writes waited behind the burst's backlog (p99 1.2-5.7 s and timeouts in
// scripts/overload.sh); per-client batches and a 1 MiB window keep them moving.
func TestE2EClusterLeadsAgainAfterALargeValueBurst(t *testing.T) {
	skipUnderRaceBuild(t)
	const lightP99Max, afterBurstMax = time.Second, 2 * time.Second
	c, leader := startCluster(t, 3)
	value := []byte(strings.Repeat("x", 60_000))
	light := dial(t, c.ClientAddr(leader))
	lightDone := make(chan []time.Duration)
	go func() { // 100 writes/s for the 5 s of the burst, each timed from when it was due
		var lat []time.Duration
		results := make(chan time.Duration, 600)
		start := time.Now()
		for i := range 500 {
			due := start.Add(time.Duration(i) * 10 * time.Millisecond)
			time.Sleep(time.Until(due))
			light.Go(kv.OpPut, fmt.Appendf(nil, "light-%d", i), []byte("v"), func(resp *wire.Response, err error) {
				if err != nil || resp.Status != wire.StatusOK {
					results <- -1
					return
				}
				results <- time.Since(due)
			})
		}
		for range 500 {
			lat = append(lat, <-results)
		}
		lightDone <- lat
	}()
	stop := make(chan struct{})
	done := make(chan struct{})
	var conns []*sofaclient.Conn
	var burstMu sync.Mutex
	var burstLat []time.Duration
	for range 4 { // every session opens before the burst begins
		conns = append(conns, dial(t, c.ClientAddr(leader)))
	}
	rssDone := make(chan []int64)
	go func() { // the peak anonymous memory of each replica, every 100 ms, until the burst stops
		peak := make([]int64, 3)
		for {
			for i := range peak {
				peak[i] = max(peak[i], rssAnonBytes(t, c.Replica(i+1).PID()))
			}
			select {
			case <-stop:
				rssDone <- peak
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	for _, conn := range conns {
		go func() {
			sem := make(chan struct{}, 64) // 64 in flight per connection
			for i := 0; ; i++ {
				select {
				case <-stop:
					done <- struct{}{}
					return
				case sem <- struct{}{}:
				}
				sent := time.Now()
				conn.Go(kv.OpPut, fmt.Appendf(nil, "burst-%d", i%500), value, func(resp *wire.Response, err error) {
					if err == nil && resp.Status == wire.StatusOK {
						burstMu.Lock()
						burstLat = append(burstLat, time.Since(sent))
						burstMu.Unlock()
					}
					<-sem
				})
			}
		}()
	}
	time.Sleep(5 * time.Second)
	close(stop)
	for range 4 {
		<-done
	}
	left := time.Now()
	peakRSS := <-rssDone
	for i, rss := range peakRSS {
		snap := metric(t, c.Replica(i+1), "sofadb_snapshot_bytes")
		limit := metric(t, c.Replica(i+1), "sofadb_memory_limit_bytes")
		bound := int64(memoryBudgetDefault + 2*snap)
		t.Logf("replica %d: anonymous memory peak %d MiB during the burst; memory limit %.0f MiB, snapshot %.0f MiB", i+1, rss>>20, limit/(1<<20), snap/(1<<20))
		if rss > bound {
			t.Errorf("replica %d: anonymous memory peaked at %d MiB during the burst: want it under the default budget and twice the state, %d MiB", i+1, rss>>20, bound>>20)
		}
	}
	lat := <-lightDone
	failed := 0
	for _, d := range lat {
		if d < 0 {
			failed++
		}
	}
	slices.Sort(lat)
	p99 := lat[len(lat)*99/100]
	t.Logf("light client beside the burst: %d of %d failed, p50 %v, p99 %v, max %v", failed, len(lat),
		lat[len(lat)/2].Round(time.Millisecond), p99.Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond))
	if failed > 0 || p99 > lightP99Max {
		t.Errorf("light client beside the burst: %d of %d writes failed, p99 %v: want none failed and p99 under %v", failed, len(lat), p99, lightP99Max)
	}
	// Not queued behind the burst: the light writes wait a fraction of what the burst's own do.
	// (One FIFO and an 8 MiB window: light p50 139-156 ms beside a burst p50 of 236-263 ms, 0.59 of
	// it; per-client batches and a 1 MiB window: 40-43 ms beside 225-238 ms, under 0.2.)
	burstMu.Lock()
	slices.Sort(burstLat)
	burstP50 := burstLat[len(burstLat)/2]
	burstMu.Unlock()
	t.Logf("the burst's own writes: %d OK, p50 %v (from sending)", len(burstLat), burstP50.Round(time.Millisecond))
	if lightP50 := lat[len(lat)/2]; 3*lightP50 > burstP50 {
		t.Errorf("light p50 %v against the burst's %v: want under a third, the light client served beside the burst, not behind it", lightP50, burstP50)
	}
	if l, err := c.WaitLeader(time.Second); err != nil || l != leader {
		t.Errorf("leader %d before the burst, %d (%v) after it: want it to stay", leader, l, err)
	}
	if n := metric(t, c.Replica(leader), "sofadb_step_downs_total"); n != 0 {
		t.Errorf("the leader stepped down %v times during the burst", n)
	}
	waitFor(t, 20*time.Second, "a write to succeed after the burst", func() bool {
		l, err := c.WaitLeader(time.Second)
		if err != nil {
			return false
		}
		conn, err := sofaclient.Dial(c.ClientAddr(l), sofaclient.Options{Timeout: 2 * time.Second})
		if err != nil {
			return false
		}
		defer conn.Close()
		res, err := conn.Do(context.Background(), kv.OpPut, []byte("after-burst"), []byte("v"))
		return err == nil && res.Status == wire.StatusOK
	})
	// Service does not wait for an election: the leader stayed, so a new write waits only for what
	// the burst left in flight to drain (126-307 ms measured; leaderless for good before issue 12).
	after := time.Since(left)
	t.Logf("a write succeeded %v after the burst ended", after.Round(time.Millisecond))
	if after > afterBurstMax {
		t.Errorf("the first write after the burst succeeded %v after it ended: want under %v", after.Round(time.Millisecond), afterBurstMax)
	}
}

// TestE2EOneConnectionCannotTakeTheRequestBudget (issue 12): a connection pipelining large values
// used to take the replica-wide request budget, so every other client got Busy, and the replica
// spent its CPU reading and refusing what it could not take. Each binary connection now holds at
// most -max-conn-request-bytes in flight; beyond it the replica stops reading it (TCP pushes back),
// so the pipelining client is slowed, not refused, and a small client beside it is never Busy.
func TestE2EOneConnectionCannotTakeTheRequestBudget(t *testing.T) {
	skipUnderRaceBuild(t)
	c, leader := startCluster(t, 3, "-max-request-bytes", "4194304", "-max-conn-request-bytes", "1048576")
	p := c.Replica(leader)
	big, small := dial(t, p.ClientAddr), dial(t, p.ClientAddr)
	value := strings.Repeat("v", 60_000)
	statuses := make(chan wire.Status, 500)
	put := func(conn *sofaclient.Conn, key string, v []byte) {
		conn.Go(kv.OpPut, []byte(key), v, func(resp *wire.Response, err error) {
			switch {
			case err != nil:
				t.Errorf("PUT %s: %v", key, err)
				statuses <- wire.StatusUnavailable
			default:
				statuses <- resp.Status
			}
		})
	}
	for i := range 400 { // 24 MB at once: six times the replica's whole budget
		put(big, fmt.Sprintf("big-%d", i%50), []byte(value))
	}
	for i := range 100 {
		put(small, fmt.Sprintf("small-%d", i), []byte("v"))
	}
	counts := map[wire.Status]int{}
	for range 500 {
		counts[<-statuses]++
	}
	if counts[wire.StatusOK] != 500 {
		t.Errorf("statuses %v: want all 500 PUTs OK, the large ones slowed by back-pressure, not refused", counts)
	}
	if n := metric(t, p, "sofadb_conn_bytes_waits_total"); n == 0 {
		t.Error("the pipelining connection never waited for its byte budget")
	}
	if n := metric(t, p, "sofadb_busy_bytes_total"); n != 0 {
		t.Errorf("sofadb_busy_bytes_total = %v: one connection took the replica-wide budget", n)
	}
}

// skipUnderRaceBuild skips a test that moves tens of megabytes of large values within client
// timeouts: replicas built with the race detector run several times slower, so under them it
// measures the detector. make unit runs these against normal builds.
func skipUnderRaceBuild(t *testing.T) {
	t.Helper()
	if strings.Contains(os.Getenv("SOFADB_BUILD_FLAGS"), "-race") {
		t.Skip("large values within time bounds; run against replicas built without -race (make unit does)")
	}
}

// memoryBudgetDefault is sofadb's -memory-limit default: what a replica may use besides its state.
const memoryBudgetDefault = 512 << 20

// rssAnonBytes is the anonymous resident memory of process pid (its heap and stacks, not the
// files it maps), 0 when it cannot be read (the process is gone).
func rssAnonBytes(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "RssAnon:" && f[2] == "kB" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				t.Fatalf("/proc/%d/status: %q: %v", pid, line, err)
			}
			return kb << 10
		}
	}
	return 0
}
