package report

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sofadb/sofadb/bench/runner"
	"github.com/sofadb/sofadb/bench/scenario"
	"github.com/sofadb/sofadb/loadgen"
)

// TestFailoverFigures: the failover table's figures from a synthetic history and timeline: a kill
// at 2 s, successes every 10 ms before it, none for 300 ms, a write sent after the kill acknowledged
// at 2.25 s, failures in between.
func TestFailoverFigures(t *testing.T) {
	dir := t.TempDir()
	var b strings.Builder
	id := 0
	line := func(op string, call, ret int64, class string) {
		id++
		fmt.Fprintf(&b, `{"id":%d,"op":%q,"key":"k","call_ns":%d,"return_ns":%d,"class":%q,"unknown":false}`+"\n", id, op, call, ret, class)
	}
	ms := int64(1e6)
	for at := int64(0); at < 2000; at += 10 {
		line("put", at*ms, at*ms+ms, "ok")
	}
	line("put", 1995*ms, 2100*ms, "connection")
	line("get", 2050*ms, 2150*ms, "timeout")
	line("put", 1990*ms, 2200*ms, "ok") // sent before the kill: not the new leader's first write
	line("get", 2210*ms, 2240*ms, "ok")
	line("put", 2230*ms, 2250*ms, "ok")
	for at := int64(2300); at < 5000; at += 10 {
		line("put", at*ms, at*ms+ms, "ok")
	}
	if err := os.WriteFile(filepath.Join(dir, "history.jsonl"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	var series []Interval
	for i := range 50 {
		iv := Interval{StartS: float64(i) / 10, LengthS: 0.1, Phase: "measure", OK: 10, P99Ns: 2 * ms}
		switch {
		case i >= 20 && i < 22:
			iv.OK, iv.P99Ns = 0, 0
		case i >= 22 && i < 30:
			iv.P99Ns = 40 * ms
		}
		series = append(series, iv)
	}
	r := &Run{Series: series, Srv: runner.ServerRecord{CaughtUp: "all 3 replicas applied slot 9",
		Faults: []runner.FaultEvent{{AtNs: 2000 * ms, Action: "kill", ID: 1}, {AtNs: 3000 * ms, Action: "restart", ID: 1}}}}
	fo, err := failoverOf(dir, r)
	if err != nil {
		t.Fatal(err)
	}
	check := func(name string, got, want float64) {
		t.Helper()
		if got < want-1e-9 || got > want+1e-9 {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	check("kill at", fo.KillAtS, 2)
	check("restart at", fo.RestartAtS, 3)
	check("kill to first write acknowledged", fo.FirstAckS, 0.25)
	check("unavailable", fo.UnavailableS, 2.2-1.991)
	check("baseline p99", fo.BaselineP99Ms, 2)
	check("worst p99 in recovery", fo.RecoveryP99Ms, 40)
	check("recovered after", fo.RecoveredS, 1.0)
	if fo.Failed != 2 || !fo.Recovered || fo.CaughtUp != r.Srv.CaughtUp {
		t.Errorf("failed %d recovered %v caught up %q", fo.Failed, fo.Recovered, fo.CaughtUp)
	}
	// What the runner keeps (completions.csv.gz instead of the history) gives the same figures.
	if n, err := runner.CompactHistories(dir); err != nil || n != 1 {
		t.Fatalf("compacted %d histories: %v", n, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "history.jsonl")); err == nil {
		t.Error("history.jsonl still there after compaction")
	}
	again, err := failoverOf(dir, r)
	if err != nil {
		t.Fatal(err)
	}
	if *again != *fo {
		t.Errorf("from completions.csv.gz: %+v\nfrom history.jsonl: %+v", again, fo)
	}
}

// TestNeverRecovered: a p99 that never comes back within 1.1x is reported as such, not as a time.
func TestNeverRecovered(t *testing.T) {
	var series []Interval
	for i := range 40 {
		p99 := int64(2e6)
		if i >= 20 {
			p99 = 3e6
		}
		series = append(series, Interval{StartS: float64(i) / 10, LengthS: 0.1, Phase: "measure", OK: 10, P99Ns: p99})
	}
	fo := &Failover{KillAtS: 2}
	fo.recovery(series)
	if fo.Recovered || fo.RecoveryP99Ms != 3 {
		t.Errorf("recovered %v after %v s, worst %v ms; want not recovered, worst 3 ms", fo.Recovered, fo.RecoveredS, fo.RecoveryP99Ms)
	}
}

func TestFormatting(t *testing.T) {
	for _, c := range []struct {
		ns   int64
		want string
	}{{0, "-"}, {-1, "-"}, {123456, "0.123"}, {4_560_000, "4.56"}, {1_234_000_000, "1234"}} {
		if got := ms(c.ns); got != c.want {
			t.Errorf("ms(%d) = %q, want %q", c.ns, got, c.want)
		}
	}
}

// TestGeneratorBoundSaturation: a search that ended only because the generator fell behind is
// published as a lower bound, and so is a ratio built on it; one that ended on the system's own
// shortfall (p99 over the bound) is not.
func TestGeneratorBoundSaturation(t *testing.T) {
	run := func(rate float64, good, valid bool) *Run {
		return &Run{Rec: runner.RunRecord{Rate: rate, Good: good},
			Sum: &loadgen.Summary{Valid: valid, All: &loadgen.OpSummary{Dist: loadgen.Dist{P50Ns: 1e6, P99Ns: 2e6}}}}
	}
	scenario := func(name string, runs ...*Run) *Scenario {
		return &Scenario{Rec: runner.ScenarioRecord{Scenario: &scenario.Scenario{Name: name}, Saturation: 1000}, Runs: runs}
	}
	genBound := scenario("etcd-grpc", run(1000, true, true), run(2000, false, false), run(1500, false, false))
	sysBound := scenario("leader-stable-binary", run(1000, true, true), run(2000, false, false), run(1500, false, true))
	if !generatorBound(genBound) {
		t.Error("a search stopped only by invalid runs is not reported as a lower bound")
	}
	if generatorBound(sysBound) {
		t.Error("a search stopped by a valid run that fell short is reported as a lower bound")
	}
	lines := strings.Join(headlines(&Data{Scenarios: []*Scenario{sysBound, genBound}}), "\n")
	for _, want := range []string{"saturation **1000 ops/s** (at least: every run above it was invalid",
		"**1.00x** (at most: etcd-grpc's figure is a lower bound"} {
		if !strings.Contains(lines, want) {
			t.Errorf("headlines lack %q:\n%s", want, lines)
		}
	}
}
