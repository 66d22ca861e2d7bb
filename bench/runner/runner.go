// Package runner runs benchmark scenarios (package scenario) against clusters it starts itself and
// writes every raw result a report is made from: the load generator's files for each run, the
// server-side counters and CPU around it, the faults it injected, and an index of the runs. It
// never writes a table or a figure: package report derives those from the raw files alone, so a
// report can be regenerated, and checked, without running anything again.
package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/sofadb/sofadb/bench/cluster"
	"github.com/sofadb/sofadb/bench/scenario"
	"github.com/sofadb/sofadb/loadgen"
)

// Options configure a suite run.
type Options struct {
	// Dir is the report directory; raw results go under Dir/raw.
	Dir string
	// Progress receives one line per run and per phase; nil discards them.
	Progress io.Writer
	// DurationScale multiplies every scenario's warm-up and duration (a smoke run uses a fraction).
	DurationScale float64
}

// RunRecord is one load-generator run: where its files are and what it was.
type RunRecord struct {
	Scenario string  `json:"scenario"`
	Repeat   int     `json:"repeat"`
	Step     int     `json:"step"`
	Phase    string  `json:"phase"` // fixed, list, coarse, bisect, from
	Rate     float64 `json:"rate_ops_per_sec"`
	Dir      string  `json:"dir"` // relative to the report directory
	Good     bool    `json:"good"`
	Why      string  `json:"why,omitempty"` // why a search step did not count as sustained
	Error    string  `json:"error,omitempty"`
}

// ScenarioRecord is raw/<scenario>/runs.json.
type ScenarioRecord struct {
	Scenario   *scenario.Scenario `json:"scenario"`
	Runs       []RunRecord        `json:"runs"`
	Saturation float64            `json:"saturation_ops_per_sec,omitempty"`
	// SaturationBound says the search reached rate.max still sustained: the saturation is at least it.
	SaturationBound bool    `json:"saturation_is_lower_bound,omitempty"`
	Skipped         string  `json:"skipped,omitempty"`
	System          string  `json:"system_version,omitempty"`
	WallSeconds     float64 `json:"wall_seconds"`
}

// ServerRecord is server.json beside each run's load-generator files.
type ServerRecord struct {
	Leader        int                           `json:"leader_at_start"`
	CPUSeconds    map[string]float64            `json:"cpu_seconds"` // per process: r1.., e1.., generator
	MachineBusy   float64                       `json:"machine_busy_fraction"`
	WallSeconds   float64                       `json:"wall_seconds"`
	CounterDeltas map[string]map[string]float64 `json:"counter_deltas"` // per member, counter name to delta
	CaughtUp      string                        `json:"caught_up,omitempty"`
	CaughtUpError string                        `json:"caught_up_error,omitempty"`
	Faults        []FaultEvent                  `json:"faults,omitempty"`
}

// FaultEvent is a fault as injected: when (ns after the run's zero), what, to which member.
type FaultEvent struct {
	AtNs   int64  `json:"at_ns"`
	Action string `json:"action"`
	ID     int    `json:"id,omitempty"`    // the member a process fault hit
	Shape  string `json:"shape,omitempty"` // a net fault's shape
	Detail string `json:"detail,omitempty"`
	Error  string `json:"error,omitempty"`
}

// Runner runs scenarios one after another; one at a time, since they share two cores.
type Runner struct {
	opts       Options
	saturation map[string]float64
	total      int // scenarios in the suite
	done       int
	began      time.Time
	left       []*scenario.Scenario // not yet finished, for the time-left estimate
}

// New prepares a runner writing under opts.Dir.
func New(opts Options) *Runner {
	if opts.Progress == nil {
		opts.Progress = io.Discard
	}
	if opts.DurationScale == 0 {
		opts.DurationScale = 1
	}
	return &Runner{opts: opts, saturation: map[string]float64{}}
}

func (r *Runner) progress(format string, args ...any) {
	elapsed := time.Since(r.began).Round(time.Second)
	var left time.Duration
	for _, s := range r.left {
		left += r.expected(s)
	}
	fmt.Fprintf(r.opts.Progress, "[%s, ~%s left, scenario %d/%d] %s\n", elapsed, left.Round(10*time.Second), min(r.done+1, r.total), r.total, fmt.Sprintf(format, args...))
}

// expected is a rough time a scenario takes (a search is guessed at five coarse steps plus its
// bisection): enough for "time left" in the progress lines.
func (r *Runner) expected(s *scenario.Scenario) time.Duration {
	runs := 1
	switch s.Rate.Plan {
	case "list":
		runs = len(s.Rate.Rates)
	case "search":
		runs = min(5, 1+int(math.Ceil(math.Log(s.Rate.Max/s.Rate.Start)/math.Log(s.Rate.Factor)))) + s.Rate.Bisect
	}
	per := time.Duration(float64(s.Warmup.Duration+s.Duration.Duration)*r.opts.DurationScale) + 1500*time.Millisecond
	return time.Duration(s.Repeats) * (3*time.Second + time.Duration(runs)*per)
}

// Run runs every scenario in order. A scenario that fails is recorded with its error and the suite
// goes on; ctx ending (Ctrl-C) stops everything, and every process started is gone when Run returns.
func (r *Runner) Run(ctx context.Context, scenarios []*scenario.Scenario) error {
	r.total, r.began = len(scenarios), time.Now()
	var errs []error
	for i, s := range scenarios {
		r.done, r.left = i, scenarios[i:]
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err := r.runScenario(ctx, s); err != nil {
			r.progress("%s: %v", s.Name, err)
			errs = append(errs, fmt.Errorf("%s: %w", s.Name, err))
		}
	}
	r.done, r.left = len(scenarios), nil
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return errors.Join(errs...)
}

func (r *Runner) scaled(s *scenario.Scenario) *scenario.Scenario {
	c := *s
	c.Warmup.Duration = time.Duration(float64(s.Warmup.Duration) * r.opts.DurationScale)
	c.Duration.Duration = time.Duration(float64(s.Duration.Duration) * r.opts.DurationScale)
	c.Faults = nil
	for _, f := range s.Faults {
		f.At.Duration = time.Duration(float64(f.At.Duration) * r.opts.DurationScale)
		c.Faults = append(c.Faults, f)
	}
	return &c
}

func (r *Runner) runScenario(ctx context.Context, s *scenario.Scenario) error {
	s = r.scaled(s)
	began := time.Now()
	dir := filepath.Join(r.opts.Dir, "raw", s.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if b, err := s.Encode(); err == nil {
		os.WriteFile(filepath.Join(dir, "scenario.toml"), b, 0o644)
	}
	rec := &ScenarioRecord{Scenario: s}
	defer func() {
		rec.WallSeconds = time.Since(began).Seconds()
		writeJSON(filepath.Join(dir, "runs.json"), rec)
	}()
	r.progress("%s: %d %s replicas, %s, %s, rate plan %s", s.Name, s.Replicas, s.System, s.Protocol, s.Workload, s.Rate.Plan)
	for rep := 1; rep <= s.Repeats; rep++ {
		if err := r.runRepeat(ctx, s, rec, rep); err != nil {
			if errors.Is(err, ErrNoEtcd) {
				rec.Skipped = err.Error()
				r.progress("%s: skipped: %v", s.Name, err)
				return nil
			}
			return err
		}
	}
	if rec.Saturation > 0 {
		r.saturation[s.Name] = rec.Saturation
	}
	return nil
}

// runRepeat starts a fresh cluster and runs the scenario's rate plan against it.
func (r *Runner) runRepeat(ctx context.Context, s *scenario.Scenario, rec *ScenarioRecord, rep int) error {
	clusterDir := filepath.Join(r.opts.Dir, "clusters")
	if err := os.MkdirAll(clusterDir, 0o755); err != nil {
		return err
	}
	var sys system
	var err error
	switch s.System {
	case "etcd":
		dir, derr := os.MkdirTemp(clusterDir, "etcd-"+s.Name+"-")
		if derr != nil {
			return derr
		}
		sys, err = startEtcd(s, dir)
	default:
		sys, err = startSofa(s, clusterDir)
	}
	if err != nil {
		return err
	}
	defer sys.Close()
	rec.System = sys.Version()
	if s.Mode == "duel" {
		// Dueling proposers elect no leader: every replica proposes its own clients' commands.
		// bench/cluster.Start has already waited until each one answers.
	} else if _, err := sys.Leader(20 * time.Second); err != nil {
		return err
	}
	step := 0
	run := func(phase string, rate float64, preload bool) (RunRecord, *loadgen.Summary) {
		step++
		rr := RunRecord{Scenario: s.Name, Repeat: rep, Step: step, Phase: phase, Rate: rate,
			Dir: filepath.Join("raw", s.Name, fmt.Sprintf("r%d-s%02d-%s-%.0f", rep, step, phase, rate))}
		sum, err := r.runOne(ctx, sys, s, rr, preload)
		if err != nil {
			rr.Error = err.Error()
		}
		rr.Good, rr.Why = sustained(s, rate, sum, err)
		rec.Runs = append(rec.Runs, rr)
		r.report(s, rr, sum)
		return rr, sum
	}
	switch s.Rate.Plan {
	case "fixed":
		run("fixed", s.Rate.Rates[0], s.Preload)
	case "list":
		for i, rate := range s.Rate.Rates {
			if ctx.Err() != nil {
				break
			}
			run("list", rate, s.Preload && i == 0)
		}
	case "from":
		rate := s.Rate.Rates[0]
		if sat, ok := r.saturation[s.Rate.From]; ok {
			rate = math.Round(sat * s.Rate.Fraction)
		} else {
			r.progress("%s: %s found no saturation in this suite; running at the fallback rate %.0f/s", s.Name, s.Rate.From, rate)
		}
		run("from", rate, s.Preload)
	case "search":
		r.search(ctx, s, rec, run)
	}
	return ctx.Err()
}

// search finds the highest sustained rate: a coarse sweep multiplying by Factor from Start, then
// Bisect steps between the last sustained rate and the first that was not (mutilate's search).
func (r *Runner) search(ctx context.Context, s *scenario.Scenario, rec *ScenarioRecord,
	run func(string, float64, bool) (RunRecord, *loadgen.Summary)) {
	// A step the generator itself could not keep to (invalid: it fell behind its schedule, short of
	// CPU on a shared machine) says nothing about the system: it stays in the table, and the same
	// rate is run once more before the search moves on.
	orig := run
	run = func(phase string, rate float64, preload bool) (RunRecord, *loadgen.Summary) {
		rr, sum := orig(phase, rate, preload)
		if !rr.Good && rr.Error == "" && sum != nil && sum.All != nil && !sum.Valid && ctx.Err() == nil {
			r.progress("%s: the generator fell behind at %.0f/s; running that rate once more", s.Name, rate)
			rr, sum = orig(phase+"-retry", rate, false)
		}
		return rr, sum
	}
	good, bad := 0.0, 0.0
	for rate := s.Rate.Start; rate <= s.Rate.Max && ctx.Err() == nil; rate *= s.Rate.Factor {
		rr, _ := run("coarse", math.Round(rate), s.Preload && good == 0 && bad == 0)
		if !rr.Good {
			bad = rate
			break
		}
		good = rate
	}
	if bad == 0 {
		rec.Saturation, rec.SaturationBound = good, true
		return
	}
	for range s.Rate.Bisect {
		if ctx.Err() != nil || good == 0 {
			break
		}
		mid := math.Round((good + bad) / 2)
		if mid <= good || mid >= bad {
			break
		}
		if rr, _ := run("bisect", mid, false); rr.Good {
			good = mid
		} else {
			bad = mid
		}
	}
	rec.Saturation = good
}

// sustained says whether a run kept up: valid (the generator kept to its schedule), p99 under the
// bound, at least 90 % of what the schedule offered completed, at most 1 % errors.
func sustained(s *scenario.Scenario, rate float64, sum *loadgen.Summary, err error) (bool, string) {
	switch {
	case err != nil:
		return false, "the run failed: " + err.Error()
	case sum == nil || sum.All == nil:
		return false, "no summary"
	case !sum.Valid:
		return false, "invalid: " + sum.InvalidReason
	case time.Duration(sum.All.P99Ns) > s.Rate.P99Bound.Duration:
		return false, fmt.Sprintf("p99 %v over the bound %v", time.Duration(sum.All.P99Ns).Round(time.Microsecond), s.Rate.P99Bound.Duration)
	case sum.CompletedOpsPerSec < 0.9*planned(sum, rate):
		return false, fmt.Sprintf("completed %.0f/s of %.0f/s offered", sum.CompletedOpsPerSec, planned(sum, rate))
	case sum.Completed > 0 && float64(sum.Failed) > 0.01*float64(sum.Completed+sum.Failed):
		return false, fmt.Sprintf("%d errors (%.1f%%)", sum.Failed, 100*float64(sum.Failed)/float64(sum.Completed+sum.Failed))
	}
	return true, ""
}

// planned is what the seeded schedule offered in the window: a Poisson schedule's count varies by
// itself (by 10 % at 100 ops/s over one second), so completions are judged against it, not against
// the nominal rate.
func planned(sum *loadgen.Summary, rate float64) float64 {
	if sum.PlannedOpsPerSec > 0 {
		return sum.PlannedOpsPerSec
	}
	return rate
}

func (r *Runner) report(s *scenario.Scenario, rr RunRecord, sum *loadgen.Summary) {
	if sum == nil || sum.All == nil {
		r.progress("%s step %d (%s) at %.0f/s: %s", s.Name, rr.Step, rr.Phase, rr.Rate, rr.Error)
		return
	}
	verdict := "sustained"
	if !rr.Good {
		verdict = "not sustained: " + rr.Why
	}
	pct := func(ns int64) string {
		if ns <= 0 {
			return "-" // nothing succeeded: no percentile, not a zero
		}
		return time.Duration(ns).Round(time.Microsecond).String()
	}
	r.progress("%s step %d (%s, repeat %d) at %.0f/s: completed %.0f/s, p50 %s p99 %s, %d errors; %s",
		s.Name, rr.Step, rr.Phase, rr.Repeat, rr.Rate, sum.CompletedOpsPerSec, pct(sum.All.P50Ns), pct(sum.All.P99Ns),
		sum.Failed, verdict)
}

// runOne is one load-generator run against sys, with the scenario's faults, and the server-side
// figures around it.
func (r *Runner) runOne(ctx context.Context, sys system, s *scenario.Scenario, rr RunRecord, preload bool) (*loadgen.Summary, error) {
	dir := filepath.Join(r.opts.Dir, rr.Dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	target, err := sys.Target(s.Protocol)
	if err != nil {
		return nil, err
	}
	cfg, err := loadConfig(s, rr, target, dir, preload)
	if err != nil {
		return nil, err
	}
	cfg.ServerStatus = sys.StatusAddrs()
	srv := ServerRecord{CPUSeconds: map[string]float64{}, CounterDeltas: map[string]map[string]float64{}}
	if s.Mode != "duel" {
		srv.Leader, _ = sys.Leader(10 * time.Second)
	}
	before := sample(sys)
	t0 := make(chan time.Time, 1)
	cfg.OnStart = func(t time.Time) { t0 <- t }
	g, gctx := errgroup.WithContext(ctx)
	var sum *loadgen.Summary
	runDone := make(chan struct{})
	g.Go(func() error {
		defer close(runDone)
		var err error
		sum, err = loadgen.Run(gctx, cfg)
		return err
	})
	t0s := make(chan time.Time, 1)
	g.Go(func() error {
		srv.Faults = injectFaults(gctx, sys, s.Faults, t0, runDone, t0s)
		return nil
	})
	g.Go(func() error {
		return scrape(gctx, sys, filepath.Join(dir, "metrics.jsonl"), t0s, runDone)
	})
	err = g.Wait()
	after := sample(sys)
	srv.WallSeconds = after.wall.Sub(before.wall).Seconds()
	diff(before, after, &srv)
	if len(s.Faults) > 0 && err == nil {
		if msg, cerr := sys.CaughtUp(30 * time.Second); cerr != nil {
			srv.CaughtUpError = cerr.Error()
		} else {
			srv.CaughtUp = msg
		}
	}
	writeJSON(filepath.Join(dir, "server.json"), srv)
	return sum, err
}

// loadConfig is the load generator's configuration for one run of s.
func loadConfig(s *scenario.Scenario, rr RunRecord, target, dir string, preload bool) (loadgen.Config, error) {
	mix, err := loadgen.ParseMix(s.Workload)
	if err != nil {
		return loadgen.Config{}, err
	}
	dist, err := loadgen.ParseKeyDist(s.KeyDist)
	if err != nil {
		return loadgen.Config{}, err
	}
	policy, err := loadgen.ParsePolicy(s.Policy)
	if err != nil {
		return loadgen.Config{}, err
	}
	cfg := loadgen.Config{TargetURL: target, RateOpsPerSec: rr.Rate, Seed: s.Seed + uint64(rr.Repeat),
		Warmup: s.Warmup.Duration, Duration: s.Duration.Duration, Interval: s.Interval.Duration,
		Workload: loadgen.Workload{Mix: mix, Keys: s.Keys, KeyDist: dist, KeyBytes: s.KeyBytes, ValueBytes: s.ValueBytes},
		Preload:  preload || (mix.ReadFraction > 0 && rr.Step == 1), Connections: s.Connections, MaxInflight: s.MaxInflight,
		Policy: policy, Timeout: s.Timeout.Duration, MaxLagP99: s.MaxLagP99.Duration, OutDir: dir, History: len(s.Faults) > 0,
		Command: []string{"sofabench", "-scenario", s.Name},
		// A run with no success at all is a result here (dueling proposers without backoff), not a
		// reason to stop early.
		FailFastAfter: -1}
	if dist == loadgen.KeysZipf {
		cfg.Workload.ZipfTheta = 0.99
	}
	return cfg, nil
}

// injectFaults fires the schedule, timed from the run's zero, until the run ends. It passes the
// run's zero on to the scraper.
func injectFaults(ctx context.Context, sys system, faults []scenario.Fault, t0c <-chan time.Time, done <-chan struct{}, fwd chan<- time.Time) []FaultEvent {
	var t0 time.Time
	select {
	case t0 = <-t0c:
		fwd <- t0
	case <-done:
		return nil
	case <-ctx.Done():
		return nil
	}
	if len(faults) == 0 {
		return nil
	}
	var events []FaultEvent
	last := 0
	for _, f := range faults {
		wait := time.Until(t0.Add(f.At.Duration))
		select {
		case <-time.After(wait):
		case <-done:
			return events
		case <-ctx.Done():
			return events
		}
		var id int
		var err error
		if f.Action != "net" && f.Action != "heal" {
			id, err = pick(sys, f.Target, last)
		}
		ev := FaultEvent{Action: f.Action, ID: id}
		if err == nil {
			switch f.Action {
			case "net":
				ev.Shape = f.Target
				ev.Detail, err = sys.Net(f.Target)
			case "heal":
				err = sys.Heal()
			case "kill":
				err = sys.Kill(id)
			case "pause":
				err = sys.Pause(id)
			case "resume":
				err = sys.Resume(id)
			case "restart":
				err = sys.Restart(id)
			}
		}
		ev.AtNs = time.Since(t0).Nanoseconds()
		if err != nil {
			ev.Error = err.Error()
		}
		events = append(events, ev)
		if id != 0 {
			last = id
		}
	}
	return events
}

// scrapeEvery is how often the runner reads every member's /metrics during a run.
const scrapeEvery = time.Second

// scrapedSeries are the counters kept in metrics.jsonl, per member and scrape: enough to follow
// leadership, progress, fsyncs and preemptions through a run without storing every series.
var scrapedSeries = []string{"sofadb_is_leader", "sofadb_commit_slot", "sofadb_applied_slot", "sofadb_fsync_seconds_count",
	"sofadb_ballots_preempted_total", "sofadb_campaigns_total", "sofadb_queued_commands", "go_memstats_heap_alloc_bytes",
	"etcd_server_is_leader", "etcd_server_proposals_committed_total", "etcd_server_leader_changes_seen_total",
	"etcd_disk_wal_fsync_duration_seconds_count"}

// scrape reads every member's /metrics once a second during the run and appends one JSON line per
// member to path: {"t_s": seconds after the run's zero, "member": "r1", "up": false when it did not
// answer (killed, paused), and the scrapedSeries it exports}.
func scrape(ctx context.Context, sys system, path string, t0c <-chan time.Time, done <-chan struct{}) error {
	var t0 time.Time
	select {
	case t0 = <-t0c:
	case <-done:
		return nil
	case <-ctx.Done():
		return nil
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	tick := time.NewTicker(scrapeEvery)
	defer tick.Stop()
	enc := json.NewEncoder(f)
	for {
		select {
		case <-tick.C:
		case <-done:
			return nil
		case <-ctx.Done():
			return nil
		}
		at := time.Since(t0).Seconds()
		for _, id := range sys.IDs() {
			line := map[string]any{"t_s": math.Round(at*1000) / 1000, "member": memberName(sys, id)}
			c := sys.Counters(id)
			line["up"] = c != nil
			for _, k := range scrapedSeries {
				if v, ok := c[k]; ok {
					line[k] = v
				}
			}
			if err := enc.Encode(line); err != nil {
				return err
			}
		}
	}
}

func memberName(sys system, id int) string {
	if _, ok := sys.(*etcdSystem); ok {
		return fmt.Sprintf("e%d", id)
	}
	return fmt.Sprintf("r%d", id)
}

// pick resolves a fault's target: leader, follower, last (the previous fault's) or an id.
func pick(sys system, target string, last int) (int, error) {
	switch target {
	case "last":
		if last == 0 {
			return 0, errors.New("target last: no earlier fault")
		}
		return last, nil
	case "leader", "follower":
		leader, err := sys.Leader(2 * time.Second)
		if err != nil {
			return 0, err
		}
		if target == "leader" {
			return leader, nil
		}
		for _, id := range sys.IDs() {
			if id != leader {
				return id, nil
			}
		}
		return 0, errors.New("no follower")
	}
	var id int
	if _, err := fmt.Sscan(target, &id); err != nil || id < 1 || id > len(sys.IDs()) {
		return 0, fmt.Errorf("fault target %q: want leader, follower, last or a member id", target)
	}
	return id, nil
}

// snapshot is what sample reads around a run.
type snapshot struct {
	wall     time.Time
	cpu      map[string]time.Duration
	counters map[string]map[string]float64
	busy     [2]uint64 // machine busy and total jiffies
}

func sample(sys system) snapshot {
	sn := snapshot{wall: time.Now(), cpu: map[string]time.Duration{}, counters: map[string]map[string]float64{}}
	for _, id := range sys.IDs() {
		name := memberName(sys, id)
		if pid := sys.PID(id); pid != 0 {
			if d, err := cluster.ProcessCPUTime(pid); err == nil {
				sn.cpu[name] = d
			}
		}
		if c := sys.Counters(id); c != nil {
			sn.counters[name] = c
		}
	}
	if d, err := cluster.ProcessCPUTime(os.Getpid()); err == nil {
		sn.cpu["generator"] = d
	}
	sn.busy = machineJiffies()
	return sn
}

// diff fills the record with the changes between two samples. A member that restarted during the
// run has counters that went back: its delta counts from zero.
func diff(a, b snapshot, srv *ServerRecord) {
	for name, d := range b.cpu {
		if prev, ok := a.cpu[name]; ok && d >= prev {
			srv.CPUSeconds[name] = (d - prev).Seconds()
		} else {
			srv.CPUSeconds[name] = d.Seconds()
		}
	}
	for name, c := range b.counters {
		delta := map[string]float64{}
		for k, v := range c {
			if prev, ok := a.counters[name][k]; ok && v >= prev {
				delta[k] = v - prev
			} else {
				delta[k] = v
			}
		}
		srv.CounterDeltas[name] = delta
	}
	if total := b.busy[1] - a.busy[1]; total > 0 {
		srv.MachineBusy = float64(b.busy[0]-a.busy[0]) / float64(total)
	}
}

// machineJiffies reads /proc/stat's cpu line: busy (all but idle and iowait) and total.
func machineJiffies() [2]uint64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return [2]uint64{}
	}
	line := strings.SplitN(string(b), "\n", 2)[0]
	f := strings.Fields(line)
	var total, idle uint64
	for i, v := range f[1:] {
		var n uint64
		fmt.Sscan(v, &n)
		total += n
		if i == 3 || i == 4 { // idle, iowait
			idle += n
		}
	}
	return [2]uint64{total - idle, total}
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
