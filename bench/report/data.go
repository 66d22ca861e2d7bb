// Package report turns a bench run's raw files (bench/runner writes them) into the published
// report: README.md with the tables and headline numbers, and SVG plots drawn with gonum/plot. It
// reads nothing but the report directory, so `make report DIR=...` regenerates a report from its
// raw files alone, and a test checks that it reproduces the committed tables exactly.
package report

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/sofadb/sofadb/bench/runner"
	"github.com/sofadb/sofadb/loadgen"
	"github.com/sofadb/sofadb/loadgen/lincheck"
)

// Manifest is manifest.json: how the suite was run and on what.
type Manifest struct {
	Suite         string            `json:"suite"`
	Command       string            `json:"command"`
	Commit        string            `json:"commit"`
	Dirty         bool              `json:"dirty"`
	GoVersion     string            `json:"go_version"`
	GOMAXPROCS    int               `json:"gomaxprocs"`
	NumCPU        int               `json:"num_cpu"`
	CPUModel      string            `json:"cpu_model"`
	Kernel        string            `json:"kernel"`
	FileSystem    string            `json:"file_system"`
	Disk          string            `json:"disk"`
	MemoryBytes   uint64            `json:"memory_bytes"`
	StartedUTC    string            `json:"started_utc"`
	WallSeconds   float64           `json:"wall_seconds"`
	Scenarios     []string          `json:"scenarios"` // in the order they ran
	EtcdVersion   string            `json:"etcd_version,omitempty"`
	DurationScale float64           `json:"duration_scale"`
	Extra         map[string]string `json:"extra,omitempty"`
}

// Run is one load-generator run and what was measured around it.
type Run struct {
	Rec      runner.RunRecord
	Sum      *loadgen.Summary
	Srv      runner.ServerRecord
	Series   []Interval
	Spectrum []Point // latency-all.hgrm: x = 1/(1-p), y = latency ms
	Failover *Failover
}

// Point is one point of a curve.
type Point struct{ X, Y float64 }

// Interval is one row of timeseries.csv.
type Interval struct {
	StartS, LengthS float64
	Phase           string
	OK, Errors      int64
	P50Ns, P99Ns    int64
}

// Scenario is one scenario's runs.
type Scenario struct {
	Rec  runner.ScenarioRecord
	Runs []*Run
}

// Data is everything the report is made of.
type Data struct {
	Dir       string
	Manifest  Manifest
	Scenarios []*Scenario
}

// Load reads a report directory's raw files.
func Load(dir string) (*Data, error) {
	d := &Data{Dir: dir}
	if err := readJSON(filepath.Join(dir, "manifest.json"), &d.Manifest); err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	for _, name := range d.Manifest.Scenarios {
		s := &Scenario{}
		if err := readJSON(filepath.Join(dir, "raw", name, "runs.json"), &s.Rec); err != nil {
			return nil, fmt.Errorf("report: scenario %s: %w", name, err)
		}
		for _, rr := range s.Rec.Runs {
			r, err := loadRun(dir, rr)
			if err != nil {
				return nil, fmt.Errorf("report: %s: %w", rr.Dir, err)
			}
			s.Runs = append(s.Runs, r)
		}
		d.Scenarios = append(d.Scenarios, s)
	}
	return d, nil
}

func loadRun(dir string, rr runner.RunRecord) (*Run, error) {
	r := &Run{Rec: rr}
	rd := filepath.Join(dir, rr.Dir)
	if rr.Error != "" {
		return r, nil // a run that could not happen has no files; its error is in the table
	}
	var sum loadgen.Summary
	if err := readJSON(filepath.Join(rd, loadgen.SummaryFile), &sum); err != nil {
		return nil, err
	}
	r.Sum = &sum
	if err := readJSON(filepath.Join(rd, "server.json"), &r.Srv); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	var err error
	if r.Series, err = readSeries(filepath.Join(rd, loadgen.TimeseriesFile)); err != nil {
		return nil, err
	}
	if r.Spectrum, err = readHgrm(filepath.Join(rd, "latency-all.hgrm")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if len(r.Srv.Faults) > 0 {
		if r.Failover, err = failoverOf(rd, r); err != nil {
			return nil, err
		}
	}
	return r, nil
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// readSeries parses timeseries.csv by its header, so added columns do not break it.
func readSeries(path string) ([]Interval, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return nil, nil
	}
	col := map[string]int{}
	for i, name := range strings.Split(sc.Text(), ",") {
		col[name] = i
	}
	num := func(row []string, name string) float64 {
		i, ok := col[name]
		if !ok || i >= len(row) {
			return 0
		}
		v, _ := strconv.ParseFloat(row[i], 64)
		return v
	}
	var out []Interval
	for sc.Scan() {
		row := strings.Split(sc.Text(), ",")
		iv := Interval{StartS: num(row, "t_s"), LengthS: num(row, "interval_s"),
			OK: int64(num(row, "ok") + num(row, "not_found")), P50Ns: int64(num(row, "p50_ns")), P99Ns: int64(num(row, "p99_ns"))}
		if i, ok := col["phase"]; ok && i < len(row) {
			iv.Phase = row[i]
		}
		for _, c := range []string{"timeout", "not_leader", "connection", "busy", "unavailable", "rejected", "server"} {
			iv.Errors += int64(num(row, c))
		}
		out = append(out, iv)
	}
	return out, sc.Err()
}

// readHgrm parses the HdrHistogram plotter's format: value (ms), percentile, count, 1/(1-p).
func readHgrm(path string) ([]Point, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Point
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) != 4 || strings.HasPrefix(fs[0], "#") {
			continue
		}
		v, err1 := strconv.ParseFloat(fs[0], 64)
		x, err2 := strconv.ParseFloat(fs[3], 64)
		if err1 != nil || err2 != nil || math.IsInf(x, 0) {
			continue
		}
		out = append(out, Point{X: x, Y: v})
	}
	return out, sc.Err()
}

// Failover is what a run with a kill says about the failure.
type Failover struct {
	KillAtS       float64 // seconds after the run's zero
	RestartAtS    float64 // 0: no restart
	FirstAckS     float64 // kill to the first success of a write sent after it (so the new leader's)
	UnavailableS  float64 // the longest gap without any successful completion around the kill
	Failed        int64   // calls that failed or timed out, from one second before the kill on
	BaselineP99Ms float64 // median interval p99 before the kill
	RecoveryP99Ms float64 // the worst interval p99 from the kill until p99 is back
	RecoveredS    float64 // kill to the first interval from which 5 in a row are within 1.1x the baseline
	Recovered     bool
	CaughtUp      string
	// A network fault instead of a kill: Shape is the net fault's shape (the last one applied
	// before the first heal, which is the fault the figures are measured from; KillAtS is when),
	// RestartAtS the heal, and Ballots the campaigns all replicas started during the run.
	Shape   string
	Ballots float64
}

// failoverOf reads history.jsonl for exact completion times around the first kill.
func failoverOf(rd string, r *Run) (*Failover, error) {
	fo := &Failover{CaughtUp: r.Srv.CaughtUp}
	if r.Srv.CaughtUpError != "" {
		fo.CaughtUp = "NOT caught up: " + r.Srv.CaughtUpError
	}
	killNs := int64(-1)
	for _, f := range r.Srv.Faults {
		switch {
		case (f.Action == "kill" || f.Action == "pause") && killNs < 0:
			killNs = f.AtNs
			fo.KillAtS = float64(f.AtNs) / 1e9
		case f.Action == "net" && fo.RestartAtS == 0 && (killNs < 0 || fo.Shape != ""):
			// the last shape applied before the first heal: isolate-hub then constrained is
			// measured from the constrained election
			killNs, fo.Shape = f.AtNs, f.Shape
			fo.KillAtS = float64(f.AtNs) / 1e9
		case (f.Action == "restart" || f.Action == "resume" || f.Action == "heal") && fo.RestartAtS == 0:
			fo.RestartAtS = float64(f.AtNs) / 1e9
		}
	}
	for _, c := range r.Srv.CounterDeltas {
		fo.Ballots += c["sofadb_campaigns_total"]
	}
	if killNs < 0 {
		return nil, nil
	}
	calls, err := readCalls(rd)
	if err != nil {
		return nil, err
	}
	var okTimes []int64
	firstWrite := int64(math.MaxInt64)
	for _, h := range calls {
		if h.class == "ok" || h.class == "not_found" {
			okTimes = append(okTimes, h.returnNs)
			if h.op != "get" && h.callNs > killNs && h.returnNs < firstWrite {
				firstWrite = h.returnNs
			}
		} else if h.returnNs >= killNs-int64(time.Second) {
			fo.Failed++
		}
	}
	sort.Slice(okTimes, func(i, j int) bool { return okTimes[i] < okTimes[j] })
	if firstWrite != math.MaxInt64 {
		fo.FirstAckS = float64(firstWrite-killNs) / 1e9
	}
	i := sort.Search(len(okTimes), func(i int) bool { return okTimes[i] > killNs })
	if i > 0 && i < len(okTimes) {
		fo.UnavailableS = float64(okTimes[i]-okTimes[i-1]) / 1e9
	}
	fo.recovery(r.Series)
	return fo, nil
}

type call struct {
	op, class        string
	callNs, returnNs int64
}

// readCalls reads a run's calls from completions.csv.gz (what the runner keeps) or, failing that,
// from the load generator's history.jsonl.
func readCalls(rd string) ([]call, error) {
	var out []call
	if f, err := os.Open(filepath.Join(rd, runner.CompletionsFile)); err == nil {
		defer f.Close()
		zr, err := gzip.NewReader(f)
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(zr)
		sc.Scan() // header: op,call_delta_us,service_us,class
		var at int64
		for sc.Scan() {
			fs := strings.Split(sc.Text(), ",")
			if len(fs) != 4 {
				return nil, fmt.Errorf("%s: bad row %q", runner.CompletionsFile, sc.Text())
			}
			d, err1 := strconv.ParseInt(fs[1], 10, 64)
			svc, err2 := strconv.ParseInt(fs[2], 10, 64)
			if err1 != nil || err2 != nil {
				return nil, fmt.Errorf("%s: bad row %q", runner.CompletionsFile, sc.Text())
			}
			at += d
			out = append(out, call{op: fs[0], callNs: at * 1000, returnNs: (at + svc) * 1000, class: fs[3]})
		}
		return out, sc.Err()
	}
	hf, err := os.Open(filepath.Join(rd, loadgen.HistoryFile))
	if err != nil {
		return nil, err
	}
	defer hf.Close()
	recs, err := lincheck.Read(hf)
	if err != nil {
		return nil, err
	}
	for _, h := range recs {
		out = append(out, call{op: h.Op, class: h.Class, callNs: h.CallNs, returnNs: h.ReturnNs})
	}
	return out, nil
}

// recovery compares interval p99s after the kill with the ones before it.
func (fo *Failover) recovery(series []Interval) {
	var before []float64
	for _, iv := range series {
		if iv.Phase == "measure" && iv.StartS+iv.LengthS <= fo.KillAtS && iv.OK > 0 {
			before = append(before, float64(iv.P99Ns)/1e6)
		}
	}
	if len(before) == 0 {
		return
	}
	sort.Float64s(before)
	fo.BaselineP99Ms = before[len(before)/2]
	limit := 1.1 * fo.BaselineP99Ms
	run := 0
	for k, iv := range series {
		if iv.StartS+iv.LengthS <= fo.KillAtS {
			continue
		}
		p99 := float64(iv.P99Ns) / 1e6
		if iv.OK == 0 {
			p99 = math.Inf(1)
		}
		if p99 <= limit {
			run++
		} else {
			run = 0
			if !math.IsInf(p99, 1) {
				fo.RecoveryP99Ms = math.Max(fo.RecoveryP99Ms, p99)
			}
		}
		if run == 5 {
			fo.Recovered = true
			fo.RecoveredS = series[k-4].StartS - fo.KillAtS
			return
		}
	}
}
