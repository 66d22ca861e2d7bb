package cluster_test

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/valyala/fasthttp"

	"github.com/sofadb/sofadb/bench/cluster"
	"github.com/sofadb/sofadb/kv"
	"github.com/sofadb/sofadb/loadgen/sofaclient"
	"github.com/sofadb/sofadb/replica"
	"github.com/sofadb/sofadb/wire"
)

// Closed-loop measurements of a 3-replica cluster for issue 4's closing note. Run them together,
// so they share the machine's state:
//
//	go test -run '^$' -bench Cluster -benchtime 1x ./bench/cluster -v
//
// Each case starts its own cluster and runs for -cluster.duration after a warm-up; figures are
// reported as benchmark metrics and logged with the leader's group-commit and CPU numbers.
var (
	benchDuration  = flag.Duration("cluster.duration", 5*time.Second, "measured time of each throughput case")
	benchFailovers = flag.Int("cluster.failovers", 7, "leader SIGKILLs in the failover case")
	benchFlags     = flag.String("cluster.flags", "", "extra replica flags for every case, space separated (e.g. \"-tick=5ms\")")
)

const (
	benchKeys      = 100_000
	benchKeyBytes  = 16
	benchValBytes  = 128
	benchConns     = 4
	benchInflight  = 256
	benchHTTPConcy = 64
	benchWarmup    = time.Second
)

func benchKey(i int) []byte { return fmt.Appendf(nil, "k%0*d", benchKeyBytes-1, i%benchKeys) }

var benchValue = func() []byte {
	v := make([]byte, benchValBytes)
	for i := range v {
		v[i] = 'a' + byte(i%26)
	}
	return v
}()

// BenchmarkCluster measures write throughput through the binary protocol (pipelined) and HTTP,
// with fsync on and off, and the time from a leader SIGKILL to the first write acknowledged by
// its successor.
func BenchmarkCluster(b *testing.B) {
	if testing.Short() {
		b.Skip("starts replica processes")
	}
	for _, fsync := range []bool{true, false} {
		name := map[bool]string{true: "fsync", false: "nofsync"}[fsync]
		b.Run("binary/"+name, func(b *testing.B) { benchThroughput(b, fsync, binaryLoad) })
		b.Run("http/"+name, func(b *testing.B) { benchThroughput(b, fsync, httpLoad) })
	}
	b.Run("failover", benchFailover)
}

// loadFunc offers writes to addr until stop closes, recording each acknowledged write's latency
// (after the warm-up ends) in the histogram it returns; errs counts failures.
type loadFunc func(c *cluster.Cluster, leader int, warmEnd time.Time, stop <-chan struct{}, errs *atomic.Int64) *hdrhistogram.Histogram

// guardedHist is a histogram shared by one connection's reader and timeout goroutines.
type guardedHist struct {
	mu sync.Mutex
	h  *hdrhistogram.Histogram
}

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(1_000, 60_000_000_000, 3) }

// binaryLoad keeps benchInflight writes in flight on each of benchConns pipelined connections to
// the leader: every completion sends the next write.
func binaryLoad(c *cluster.Cluster, leader int, warmEnd time.Time, stop <-chan struct{}, errs *atomic.Int64) *hdrhistogram.Histogram {
	var wg sync.WaitGroup
	hists := make([]*guardedHist, benchConns)
	var next atomic.Int64
	for i := range benchConns {
		hists[i] = &guardedHist{h: newHist()}
		conn, err := sofaclient.Dial(c.ClientAddr(leader), sofaclient.Options{Timeout: 10 * time.Second})
		if err != nil {
			errs.Add(1)
			continue
		}
		var stopped atomic.Bool
		go func() { <-stop; stopped.Store(true) }()
		var send func()
		send = func() {
			if stopped.Load() {
				wg.Done()
				return
			}
			start := time.Now()
			conn.Go(kv.OpPut, benchKey(int(next.Add(1))), benchValue, func(resp *wire.Response, err error) {
				now := time.Now()
				if errors.Is(err, sofaclient.ErrClosed) { // a dead connection answers at once: end the chain
					errs.Add(1)
					wg.Done()
					return
				}
				if err != nil || resp.Status != wire.StatusOK {
					errs.Add(1)
				} else if start.After(warmEnd) {
					hists[i].mu.Lock()
					hists[i].h.RecordValue(int64(now.Sub(start)))
					hists[i].mu.Unlock()
				}
				send()
			})
		}
		wg.Add(benchInflight)
		for range benchInflight {
			send()
		}
		defer conn.Close()
	}
	wg.Wait()
	total := newHist()
	for _, h := range hists {
		total.Merge(h.h)
	}
	return total
}

// httpLoad runs benchHTTPConcy closed-loop HTTP clients, each PUTting to the leader.
func httpLoad(c *cluster.Cluster, leader int, warmEnd time.Time, stop <-chan struct{}, errs *atomic.Int64) *hdrhistogram.Histogram {
	hc := &fasthttp.HostClient{Addr: c.HTTPAddr(leader), MaxConns: benchHTTPConcy, MaxIdemponentCallAttempts: 1,
		MaxConnWaitTimeout: 10 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second}
	hists := make([]*hdrhistogram.Histogram, benchHTTPConcy)
	var wg sync.WaitGroup
	var next atomic.Int64
	for g := range benchHTTPConcy {
		hists[g] = newHist()
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			for {
				select {
				case <-stop:
					return
				default:
				}
				req.Reset()
				req.Header.SetMethod("PUT")
				req.SetRequestURI(fmt.Sprintf("http://%s/kv/%s", c.HTTPAddr(leader), benchKey(int(next.Add(1)))))
				req.SetBody(benchValue)
				start := time.Now()
				err := hc.Do(req, resp)
				if err != nil || resp.StatusCode() != 204 {
					errs.Add(1)
				} else if start.After(warmEnd) {
					hists[g].RecordValue(int64(time.Since(start)))
				}
			}
		}()
	}
	wg.Wait()
	total := newHist()
	for _, h := range hists {
		total.Merge(h)
	}
	return total
}

// sample is what the leader's /status and the processes' CPU time say at one moment.
type sample struct {
	at      time.Time
	disk    replica.DiskStatus
	applied uint64
	cpu     []time.Duration // per replica, by id
	self    time.Duration   // this process (the load generator)
	machine cpuTimes        // the whole machine, every session on it included
}

// cpuTimes are the machine-wide counters of /proc/stat's "cpu" line, in USER_HZ ticks.
type cpuTimes struct{ total, idle, iowait uint64 }

// readCPUTimes reads /proc/stat; outside Linux it returns zeros and the report says nothing.
func readCPUTimes() cpuTimes {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	var ct cpuTimes
	for i, f := range strings.Fields(line)[1:] {
		v, _ := strconv.ParseUint(f, 10, 64)
		ct.total += v
		switch i {
		case 3:
			ct.idle = v
		case 4:
			ct.iowait = v
		}
	}
	return ct
}

// busy is the share of the machine's CPU time that was not idle between a and b, and the share
// spent waiting for IO.
func busy(a, b cpuTimes) (busyPct, iowaitPct float64) {
	total := float64(b.total - a.total)
	if total == 0 {
		return 0, 0
	}
	return 100 * (1 - float64((b.idle-a.idle)+(b.iowait-a.iowait))/total), 100 * float64(b.iowait-a.iowait) / total
}

func takeSample(c *cluster.Cluster, leader int) (sample, error) {
	st, err := c.Status(leader)
	if err != nil {
		return sample{}, err
	}
	s := sample{at: time.Now(), disk: st.Disk, applied: st.Applied}
	for _, id := range c.IDs() {
		d, err := c.Replica(id).CPUTime()
		if err != nil {
			return sample{}, err
		}
		s.cpu = append(s.cpu, d)
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return sample{}, err
	}
	s.self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	s.machine = readCPUTimes()
	return s, nil
}

func benchThroughput(b *testing.B, fsync bool, load loadFunc) {
	flags := append([]string{fmt.Sprintf("-fsync=%v", fsync), "-log-level=warn"}, strings.Fields(*benchFlags)...)
	c := cluster.StartT(b, cluster.Options{N: 3, Flags: flags})
	leader, err := c.WaitLeader(10 * time.Second)
	if err != nil {
		b.Fatal(err)
	}
	stop := make(chan struct{})
	var errs atomic.Int64
	warmEnd := time.Now().Add(benchWarmup)
	histc := make(chan *hdrhistogram.Histogram, 1)
	b.ResetTimer()
	go func() { histc <- load(c, leader, warmEnd, stop, &errs) }()
	time.Sleep(benchWarmup) // a fixed warm-up, not a wait for a condition
	s0, err0 := takeSample(c, leader)
	time.Sleep(*benchDuration)
	s1, err1 := takeSample(c, leader)
	close(stop)
	hist := <-histc
	b.StopTimer()
	if err := errors.Join(err0, err1); err != nil {
		b.Fatal(err)
	}
	secs := s1.at.Sub(s0.at).Seconds()
	// Acknowledged writes sent after the warm-up, per second of the measured window (the few sent
	// in the window's last moments and acknowledged after it are counted too).
	rate := float64(hist.TotalCount()) / secs
	syncs, records := s1.disk.Syncs-s0.disk.Syncs, s1.disk.Records-s0.disk.Records
	perSync := float64(records) / max(1, float64(syncs))
	b.ReportMetric(rate, "writes/s")
	b.ReportMetric(float64(hist.ValueAtQuantile(50))/1e6, "p50-ms")
	b.ReportMetric(float64(hist.ValueAtQuantile(99))/1e6, "p99-ms")
	b.ReportMetric(float64(s1.applied-s0.applied)/secs, "slots/s")
	var cpu []string
	for i := range s1.cpu {
		role := ""
		if i+1 == leader {
			role = " (leader)"
		}
		cpu = append(cpu, fmt.Sprintf("r%d%s %.0f%%", i+1, role, 100*(s1.cpu[i]-s0.cpu[i]).Seconds()/secs))
	}
	cpu = append(cpu, fmt.Sprintf("client %.0f%%", 100*(s1.self-s0.self).Seconds()/secs))
	busyPct, iowaitPct := busy(s0.machine, s1.machine)
	cpu = append(cpu, fmt.Sprintf("machine busy %.0f%% of all cores, iowait %.0f%%", busyPct, iowaitPct))
	b.Logf("%.0f writes/s over %.1fs (p50 %.2f ms, p99 %.2f ms, max %.1f ms, %d errors); leader: %.0f slots/s, %d syncs (%.0f/s), %.1f records/sync (p99 %d), sync p50 %.2f ms p99 %.2f ms; CPU (%% of one core): %v",
		rate, secs, float64(hist.ValueAtQuantile(50))/1e6, float64(hist.ValueAtQuantile(99))/1e6, float64(hist.Max())/1e6, errs.Load(),
		float64(s1.applied-s0.applied)/secs, syncs, float64(syncs)/secs, perSync, s1.disk.RecordsSyncP99,
		float64(s1.disk.SyncP50Ns)/1e6, float64(s1.disk.SyncP99Ns)/1e6, cpu)
}

// benchFailover SIGKILLs the leader while two writers (one per follower, a write every
// millisecond each, pipelined) keep writing, and measures the time from the kill to the first
// acknowledgement of a write sent after it: necessarily chosen under the new leader. The killed
// replica restarts and catches up before the next round.
func benchFailover(b *testing.B) {
	c := cluster.StartT(b, cluster.Options{N: 3, Flags: append([]string{"-log-level=warn"}, strings.Fields(*benchFlags)...)})
	var gaps []time.Duration
	for round := range *benchFailovers {
		leader, err := c.WaitLeader(10 * time.Second)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.WaitConverged(15 * time.Second); err != nil {
			b.Fatal(err)
		}
		var killNs, firstNs, acks atomic.Int64
		t0 := time.Now()
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for _, id := range c.IDs() {
			if id == leader {
				continue
			}
			conn, err := sofaclient.Dial(c.ClientAddr(id), sofaclient.Options{Timeout: 10 * time.Second})
			if err != nil {
				b.Fatal(err)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				tick := time.NewTicker(time.Millisecond)
				defer tick.Stop()
				for n := 0; ; n++ {
					select {
					case <-stop:
						return
					case <-tick.C:
					}
					sent := int64(time.Since(t0))
					conn.Go(kv.OpPut, benchKey(id*1_000_000+n), benchValue, func(resp *wire.Response, err error) {
						if err != nil || resp.Status != wire.StatusOK {
							return
						}
						acks.Add(1)
						if k := killNs.Load(); k != 0 && sent > k {
							done := int64(time.Since(t0))
							for {
								f := firstNs.Load()
								if (f != 0 && f <= done) || firstNs.CompareAndSwap(f, done) {
									break
								}
							}
						}
					})
				}
			}()
		}
		waitUntil(b, 10*time.Second, func() bool { return acks.Load() > 100 })
		killNs.Store(int64(time.Since(t0)))
		if err := c.Kill(leader); err != nil {
			b.Fatal(err)
		}
		waitUntil(b, 10*time.Second, func() bool { return firstNs.Load() != 0 })
		close(stop)
		wg.Wait()
		gap := time.Duration(firstNs.Load() - killNs.Load())
		gaps = append(gaps, gap)
		b.Logf("round %d: killed leader %d; first write sent after the kill acknowledged %v later", round+1, leader, gap.Round(time.Millisecond))
		if err := c.Restart(leader); err != nil {
			b.Fatal(err)
		}
	}
	slices.Sort(gaps)
	med := gaps[len(gaps)/2]
	b.ReportMetric(float64(gaps[0])/1e6, "min-ms")
	b.ReportMetric(float64(med)/1e6, "median-ms")
	b.ReportMetric(float64(gaps[len(gaps)-1])/1e6, "max-ms")
	b.Logf("SIGKILL to first acknowledged write, %d rounds: min %v, median %v, max %v", len(gaps),
		gaps[0].Round(time.Millisecond), med.Round(time.Millisecond), gaps[len(gaps)-1].Round(time.Millisecond))
}

func waitUntil(b *testing.B, timeout time.Duration, cond func() bool) {
	b.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatalf("condition not met within %v", timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
