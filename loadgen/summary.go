package loadgen

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// Dist is a latency distribution in nanoseconds, as summary.json reports it.
type Dist struct {
	Count   int64   `json:"count"`
	MinNs   int64   `json:"min_ns"`
	MeanNs  float64 `json:"mean_ns"`
	P50Ns   int64   `json:"p50_ns"`
	P90Ns   int64   `json:"p90_ns"`
	P99Ns   int64   `json:"p99_ns"`
	P999Ns  int64   `json:"p999_ns"`  // 99.9th percentile
	P9999Ns int64   `json:"p9999_ns"` // 99.99th percentile
	MaxNs   int64   `json:"max_ns"`
}

func distOf(h *hdr.Histogram) Dist {
	if h == nil || h.TotalCount() == 0 {
		return Dist{}
	}
	return Dist{Count: h.TotalCount(), MinNs: h.Min(), MeanNs: h.Mean(),
		P50Ns: h.ValueAtQuantile(50), P90Ns: h.ValueAtQuantile(90), P99Ns: h.ValueAtQuantile(99),
		P999Ns: h.ValueAtQuantile(99.9), P9999Ns: h.ValueAtQuantile(99.99), MaxNs: h.Max()}
}

// OpSummary is one operation type over the measured window. The latency percentiles of successes sit
// at the top level (p99_ns, ...); failures have their own distribution, so that fast failures cannot
// make the successes look faster and slow ones cannot hide.
type OpSummary struct {
	Dist                           // latency of successes: completion - intended send
	Sent          int64            `json:"sent"`
	Count         int64            `json:"count"` // successes, not_found included
	NotFound      int64            `json:"not_found"`
	Errors        int64            `json:"errors"`
	ErrorsByClass map[string]int64 `json:"errors_by_class"`
	Service       Dist             `json:"service"`       // completion - actual send, successes
	ErrorLatency  Dist             `json:"error_latency"` // completion - intended send, failures
}

func opSummaryOf(o *opStats) *OpSummary {
	s := &OpSummary{Dist: distOf(o.lat), Sent: o.issued, NotFound: o.class[ClassNotFound],
		ErrorsByClass: map[string]int64{}, Service: distOf(o.svc), ErrorLatency: distOf(o.errLat)}
	for k, n := range o.class {
		if Class(k).Success() {
			s.Count += n
		} else {
			s.Errors += n
			s.ErrorsByClass[Class(k).String()] = n
		}
	}
	return s
}

// Summary is summary.json: what was offered, what was achieved, how long it took, and whether the
// generator itself kept up. All durations are nanoseconds; rates are per second of measured window.
type Summary struct {
	Valid         bool     `json:"valid"`
	InvalidReason string   `json:"invalid_reason,omitempty"`
	Warnings      []string `json:"warnings"`

	TargetOpsPerSec    float64 `json:"target_ops_per_sec"`
	PlannedOpsPerSec   float64 `json:"planned_ops_per_sec"`   // what the seeded schedule offered: Poisson varies
	SentOpsPerSec      float64 `json:"sent_ops_per_sec"`      // achieved send rate
	CompletedOpsPerSec float64 `json:"completed_ops_per_sec"` // successes per second
	ErrorOpsPerSec     float64 `json:"error_ops_per_sec"`
	// Ended counts what completed inside the measured window, whenever it was due: under overload the
	// requests due in the window complete late (or are never sent), and what the system delivered
	// during the window is this, not Completed. Its latency percentiles are those of these successes.
	Ended          *OpSummary `json:"ended_in_window"`
	EndedOpsPerSec float64    `json:"ended_in_window_ops_per_sec"` // successes that completed in the window, per second

	Planned   int64 `json:"planned"`   // steps due in the window
	Sent      int64 `json:"sent"`      // of those, sent
	Unsent    int64 `json:"unsent"`    // due in the window, never sent: the generator ran out of time
	Completed int64 `json:"completed"` // successes
	Failed    int64 `json:"failed"`    // errors of every class
	Lost      int64 `json:"lost"`      // sent, never completed by the end of the drain

	LagP99Ns            int64 `json:"lag_p99_ns"`
	Lag                 Dist  `json:"lag"` // actual send - intended send
	InflightLimitHits   int64 `json:"inflight_limit_hits"`
	WorkerQueueFullHits int64 `json:"worker_queue_full_hits"` // dispatcher waits caused by workers behind
	TargetQueueWaits    int64 `json:"target_queue_waits"`     // calls that waited for a free connection (HTTP)
	PeakInflight        int64 `json:"peak_inflight"`
	MaxInflight         int   `json:"max_inflight"`
	HistogramOverflow   int64 `json:"histogram_overflow"`

	All          *OpSummary            `json:"all"`
	Ops          map[string]*OpSummary `json:"ops"`
	ErrorSamples map[string]string     `json:"error_samples,omitempty"`
	Manifest     Manifest              `json:"manifest"`
}

// Manifest is what it takes to reproduce and compare a run.
type Manifest struct {
	Command     string    `json:"command"`
	GoVersion   string    `json:"go_version"`
	OS          string    `json:"os"`
	Arch        string    `json:"arch"`
	NumCPU      int       `json:"num_cpu"`
	GOMAXPROCS  int       `json:"gomaxprocs"`
	Hostname    string    `json:"hostname"`
	VCSRevision string    `json:"vcs_revision,omitempty"`
	Start       time.Time `json:"start"` // wall clock of the run's zero, on a whole second
	StartUnixMs int64     `json:"start_unix_ms"`

	Target      string  `json:"target"`
	Rate        float64 `json:"rate_ops_per_sec"`
	Arrival     string  `json:"arrival"`
	Seed        uint64  `json:"seed"`
	WarmupNs    int64   `json:"warmup_ns"`
	DurationNs  int64   `json:"duration_ns"`
	IntervalNs  int64   `json:"interval_ns"`
	Workload    string  `json:"workload"`
	ReadShare   float64 `json:"read_fraction"`
	KeyDist     string  `json:"key_dist"`
	ZipfTheta   float64 `json:"zipf_theta,omitempty"`
	Keys        uint64  `json:"keys"`
	KeyBytes    int     `json:"key_bytes"`
	ValueBytes  int     `json:"value_bytes"`
	Preload     bool    `json:"preload"`
	Connections int     `json:"connections_per_replica"`
	MaxInflight int     `json:"max_inflight"`
	Policy      string  `json:"policy"`
	TimeoutNs   int64   `json:"timeout_ns"`
	Workers     int     `json:"workers"`
	MaxLagP99Ns int64   `json:"max_lag_p99_ns"`
	MinSleepNs  int64   `json:"min_sleep_ns"`
	// PreloadSeconds is how long the preload took (0: none).
	PreloadSeconds float64 `json:"preload_seconds,omitempty"`
	// Servers is each replica's /status identity and settings, read before the run.
	Servers []ServerInfo `json:"servers,omitempty"`
}

func (r *run) manifest() Manifest {
	c := r.cfg
	host, _ := os.Hostname()
	m := Manifest{Command: strings.Join(c.Command, " "), GoVersion: runtime.Version(), OS: runtime.GOOS,
		Arch: runtime.GOARCH, NumCPU: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), Hostname: host,
		Start: r.wallStart.UTC(), StartUnixMs: r.wallStart.UnixMilli(),
		Target: c.TargetURL, Rate: c.RateOpsPerSec, Arrival: c.Arrival.String(), Seed: c.Seed,
		WarmupNs: int64(c.Warmup), DurationNs: int64(c.Duration), IntervalNs: int64(c.Interval),
		Workload: c.Workload.Mix.Name, ReadShare: c.Workload.Mix.ReadFraction,
		KeyDist: c.Workload.KeyDist.String(), Keys: c.Workload.Keys, KeyBytes: c.Workload.KeyBytes,
		ValueBytes: c.Workload.ValueBytes, Preload: c.Preload, Connections: c.Connections,
		MaxInflight: c.MaxInflight, Policy: c.Policy.String(), TimeoutNs: int64(c.Timeout),
		Workers: c.Workers, MaxLagP99Ns: int64(c.MaxLagP99), MinSleepNs: int64(c.MinSleep),
		PreloadSeconds: r.preloadSecs, Servers: r.servers}
	if c.Workload.KeyDist == KeysZipf {
		m.ZipfTheta = c.Workload.ZipfTheta
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				m.VCSRevision = s.Value
			}
		}
	}
	return m
}

// summarize merges the workers' measured-window sets (they have all exited) and judges the run.
func (r *run) summarize() *Summary {
	total := new(recSet)
	for _, w := range r.workers {
		total.merge(w.sum)
	}
	r.total = total
	ended := new(recSet)
	for _, w := range r.workers {
		ended.merge(w.ended)
	}
	secs := r.cfg.Duration.Seconds()
	s := &Summary{TargetOpsPerSec: r.cfg.RateOpsPerSec, Planned: r.planned, Unsent: r.unsent,
		Lag: distOf(total.lag), InflightLimitHits: r.inflightHits.Load(),
		WorkerQueueFullHits: r.queueFullHits.Load(), TargetQueueWaits: r.targetQueueWaits(), PeakInflight: r.peakInflight.Load(),
		MaxInflight: r.cfg.MaxInflight, HistogramOverflow: total.overflow, Ops: map[string]*OpSummary{},
		ErrorSamples: r.samples.snapshot(), Manifest: r.manifest(), Warnings: []string{}}
	s.LagP99Ns = s.Lag.P99Ns
	s.All = opSummaryOf(total.all(func(i int, o *opStats) {
		if o.issued > 0 {
			s.Ops[opNames[i]] = opSummaryOf(o)
		}
	}))
	s.Ended = opSummaryOf(ended.all(nil))
	s.Ended.Sent = 0 // sends are counted by due time, in All
	s.Sent, s.Completed, s.Failed = s.All.Sent, s.All.Count, s.All.Errors
	s.Lost = s.Sent - s.Completed - s.Failed
	if secs > 0 {
		s.PlannedOpsPerSec = float64(s.Planned) / secs
		s.SentOpsPerSec = float64(s.Sent) / secs
		s.CompletedOpsPerSec = float64(s.Completed) / secs
		s.ErrorOpsPerSec = float64(s.Failed) / secs
		s.EndedOpsPerSec = float64(s.Ended.Count) / secs
	}
	r.judge(s)
	return s
}

// all merges the per-operation statistics of s into one, calling each (if set) for every operation.
func (s *recSet) all(each func(int, *opStats)) *opStats {
	all := &opStats{}
	for i := range s.ops {
		o := &s.ops[i]
		if each != nil {
			each(i, o)
		}
		mergeHist(&all.lat, o.lat)
		mergeHist(&all.svc, o.svc)
		mergeHist(&all.errLat, o.errLat)
		all.issued += o.issued
		for k := range all.class {
			all.class[k] += o.class[k]
		}
	}
	return all
}

// Validity thresholds besides MaxLagP99. A run may send 5 % fewer requests than its schedule planned
// for the window (compared with the plan, not with rate x duration: a Poisson schedule's count varies
// by itself, by 6 % at 10 ops/s over 30 s), and at most 1 % of its sends may have waited for an
// in-flight slot.
const (
	rateShortfallMax    = 0.05
	inflightHitShareMax = 0.01
)

// judge decides valid and invalid_reason, and adds warnings. The rules are about the generator, not
// the system under test: a run full of errors is valid if the generator offered the load it claims.
func (r *run) judge(s *Summary) {
	var reasons []string
	maxLag := int64(r.cfg.MaxLagP99)
	if s.Sent == 0 {
		reasons = append(reasons, "nothing was sent")
	}
	if s.LagP99Ns > maxLag {
		reasons = append(reasons, fmt.Sprintf("generator fell behind its schedule: send lag p99 %s > %s (%s)",
			time.Duration(s.LagP99Ns), r.cfg.MaxLagP99, r.lagCause(s)))
	}
	if float64(s.Sent) < (1-rateShortfallMax)*float64(s.Planned) {
		reasons = append(reasons, fmt.Sprintf("achieved send rate %.0f ops/s is more than %.0f%% under the planned %.0f ops/s (target %.0f; %d due requests never sent)",
			s.SentOpsPerSec, rateShortfallMax*100, s.PlannedOpsPerSec, s.TargetOpsPerSec, s.Unsent))
	}
	if s.Sent > 0 && float64(s.InflightLimitHits) > inflightHitShareMax*float64(s.Sent) {
		reasons = append(reasons, fmt.Sprintf("in-flight bound %d reached by %d sends (%.1f%%): they waited for a slot; raise --max-inflight",
			r.cfg.MaxInflight, s.InflightLimitHits, 100*float64(s.InflightLimitHits)/float64(s.Sent)))
	}
	if s.Lost > 0 {
		reasons = append(reasons, fmt.Sprintf("%d calls never completed (the target did not time them out)", s.Lost))
	}
	s.Valid = len(reasons) == 0
	s.InvalidReason = strings.Join(reasons, "; ")
	s.Warnings = append(s.Warnings, r.warnings(s)...)
}

// lagCause says which part of the generator was short when it fell behind.
func (r *run) lagCause(s *Summary) string {
	switch {
	case s.InflightLimitHits > 0:
		return "sends waited for in-flight slots"
	case float64(s.TargetQueueWaits) > inflightHitShareMax*float64(s.Sent):
		return "sends waited for a free connection (HTTP carries one request per connection): raise --connections"
	case s.WorkerQueueFullHits > 0:
		return "every worker was busy: the generator is short of CPU or --workers"
	}
	return "the dispatcher woke late: the generator is short of CPU"
}

// targetQueueWaits asks the target how many calls of the run waited for a connection, if it can tell.
func (r *run) targetQueueWaits() int64 {
	if q, ok := r.target.(interface{ QueueWaits() int64 }); ok {
		return q.QueueWaits() - r.queueWaitsBase // the preload's waits are not the run's
	}
	return 0
}

// warnings flags what does not invalidate a run but may explain it.
func (r *run) warnings(s *Summary) []string {
	var out []string
	worstNs := max(s.All.P99Ns, s.All.ErrorLatency.P99Ns)
	need := s.TargetOpsPerSec * float64(worstNs) / 1e9 // Little's law: L = lambda * W
	if float64(r.cfg.MaxInflight) < need {
		out = append(out, fmt.Sprintf("Little's law: --max-inflight %d is below rate x p99 latency = %.0f; at that latency the bound, not the service, holds requests back",
			r.cfg.MaxInflight, need))
	}
	if cc, ok := r.target.(interface{ Concurrency() int }); ok && cc.Concurrency() > 0 && float64(cc.Concurrency()) < need {
		out = append(out, fmt.Sprintf("Little's law: the target can carry %d requests at once (connections x replicas), below rate x p99 latency = %.0f; raise --connections",
			cc.Concurrency(), need))
	}
	if s.WorkerQueueFullHits > 0 {
		out = append(out, fmt.Sprintf("every worker was busy %d times when calls were due: consider --workers", s.WorkerQueueFullHits))
	}
	if s.HistogramOverflow > 0 {
		out = append(out, fmt.Sprintf("%d values above the histogram's 1 h range were clamped", s.HistogramOverflow))
	}
	if s.Unsent > 0 {
		out = append(out, fmt.Sprintf("%d requests due in the window were never sent", s.Unsent))
	}
	return out
}
