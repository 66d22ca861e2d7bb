package runner

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sofadb/sofadb/bench/scenario"
	"github.com/sofadb/sofadb/loadgen"
)

// TestSustained: the verdict that decides the saturation point refuses each way a run can fail to
// keep up, and accepts one that did.
func TestSustained(t *testing.T) {
	s := &scenario.Scenario{Rate: scenario.Rate{P99Bound: scenario.Duration{Duration: 50 * time.Millisecond}}}
	good := func() *loadgen.Summary {
		return &loadgen.Summary{Valid: true, CompletedOpsPerSec: 1000, Completed: 10000,
			All: &loadgen.OpSummary{Dist: loadgen.Dist{P99Ns: int64(10 * time.Millisecond)}}}
	}
	if ok, why := sustained(s, 1000, good(), nil); !ok {
		t.Fatalf("a good run is not sustained: %s", why)
	}
	// A Poisson schedule that planned 87/s for a nominal 100/s, all completed: sustained.
	lucky := good()
	lucky.CompletedOpsPerSec, lucky.PlannedOpsPerSec = 87, 87
	if ok, why := sustained(s, 100, lucky, nil); !ok {
		t.Errorf("a run that completed all its schedule planned is not sustained: %s", why)
	}
	for _, c := range []struct {
		name string
		mod  func(*loadgen.Summary)
		want string
	}{
		{"invalid", func(m *loadgen.Summary) { m.Valid, m.InvalidReason = false, "send lag" }, "invalid: send lag"},
		{"slow", func(m *loadgen.Summary) { m.All.P99Ns = int64(80 * time.Millisecond) }, "over the bound"},
		{"short", func(m *loadgen.Summary) { m.CompletedOpsPerSec = 850 }, "completed 850/s of 1000/s"},
		{"short of the plan", func(m *loadgen.Summary) { m.CompletedOpsPerSec, m.PlannedOpsPerSec = 950, 1100 }, "completed 950/s of 1100/s"},
		{"errors", func(m *loadgen.Summary) { m.Failed = 200 }, "errors"},
		{"empty", func(m *loadgen.Summary) { m.All = nil }, "no summary"},
	} {
		m := good()
		c.mod(m)
		if ok, why := sustained(s, 1000, m, nil); ok || !strings.Contains(why, c.want) {
			t.Errorf("%s: sustained %v (%q), want refused with %q", c.name, ok, why, c.want)
		}
	}
}

// TestParseMetrics: counters, gauges, labelled series (summed) and histograms (count and sum) from
// the Prometheus text format, as SofaDB and etcd export it.
func TestParseMetrics(t *testing.T) {
	text := `# TYPE sofadb_replies_total counter
sofadb_replies_total{status="ok"} 10
sofadb_replies_total{status="busy"} 2
# TYPE sofadb_commit_slot gauge
sofadb_commit_slot 42
# TYPE etcd_disk_wal_fsync_duration_seconds histogram
etcd_disk_wal_fsync_duration_seconds_bucket{le="0.001"} 3
etcd_disk_wal_fsync_duration_seconds_bucket{le="+Inf"} 5
etcd_disk_wal_fsync_duration_seconds_sum 0.01
etcd_disk_wal_fsync_duration_seconds_count 5
`
	m := parseMetrics(strings.NewReader(text))
	for k, want := range map[string]float64{"sofadb_replies_total": 12, "sofadb_commit_slot": 42,
		"etcd_disk_wal_fsync_duration_seconds_count": 5, "etcd_disk_wal_fsync_duration_seconds_sum": 0.01} {
		if m[k] != want {
			t.Errorf("%s = %v, want %v (all: %v)", k, m[k], want, m)
		}
	}
	if parseMetrics(strings.NewReader("garbage{")) != nil {
		t.Error("garbage parsed")
	}
}

// TestDiffRestartedMember: a member that restarted during a run has counters that went back; its
// delta counts from zero instead of going negative.
func TestDiffRestartedMember(t *testing.T) {
	a := snapshot{cpu: map[string]time.Duration{"r1": 5 * time.Second}, counters: map[string]map[string]float64{"r1": {"x": 100}}}
	b := snapshot{wall: a.wall.Add(time.Second), cpu: map[string]time.Duration{"r1": time.Second}, counters: map[string]map[string]float64{"r1": {"x": 7}}}
	srv := ServerRecord{CPUSeconds: map[string]float64{}, CounterDeltas: map[string]map[string]float64{}}
	diff(a, b, &srv)
	if srv.CPUSeconds["r1"] != 1 || srv.CounterDeltas["r1"]["x"] != 7 {
		t.Errorf("restarted member: cpu %v, x %v; want 1 and 7", srv.CPUSeconds["r1"], srv.CounterDeltas["r1"]["x"])
	}
}

// TestSearchRetriesAnInvalidStep: a step invalid for the generator's sake is run once more at the
// same rate; a step that is valid but not sustained is not.
func TestSearchRetriesAnInvalidStep(t *testing.T) {
	s := &scenario.Scenario{Name: "x", Rate: scenario.Rate{Plan: "search", Start: 100, Max: 800, Factor: 2,
		P99Bound: scenario.Duration{Duration: 50 * time.Millisecond}}}
	var rates []string
	calls := 0
	run := func(phase string, rate float64, _ bool) (RunRecord, *loadgen.Summary) {
		calls++
		rates = append(rates, fmt.Sprintf("%s@%.0f", phase, rate))
		sum := &loadgen.Summary{Valid: true, CompletedOpsPerSec: rate, Completed: 1000, PlannedOpsPerSec: rate,
			All: &loadgen.OpSummary{Dist: loadgen.Dist{P99Ns: int64(time.Millisecond)}}}
		switch {
		case rate == 200 && phase == "coarse": // the generator fell behind once
			sum.Valid, sum.InvalidReason = false, "lag"
		case rate >= 400: // the system saturates
			sum.All.P99Ns = int64(time.Second)
		}
		rr := RunRecord{Phase: phase, Rate: rate}
		rr.Good, rr.Why = sustained(s, rate, sum, nil)
		return rr, sum
	}
	r := New(Options{})
	rec := &ScenarioRecord{}
	r.search(context.Background(), s, rec, run)
	want := "coarse@100 coarse@200 coarse-retry@200 coarse@400"
	if got := strings.Join(rates, " "); got != want || rec.Saturation != 200 {
		t.Errorf("runs %q saturation %v; want %q and 200", got, rec.Saturation, want)
	}
}
