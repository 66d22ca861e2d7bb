package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestHelpDocumentsEveryFlag: -h exits 0 and describes every flag, and every flag that takes a
// quantity names its unit.
func TestHelpDocumentsEveryFlag(t *testing.T) {
	var out bytes.Buffer
	if code := run([]string{"-h"}, &out, &out); code != 0 {
		t.Fatalf("-h exited %d", code)
	}
	help := out.String()
	units := map[string]string{"rate": "ops/s", "key-size": "bytes", "value-size": "bytes",
		"connections": "per replica", "max-inflight": "requests", "duration": "Go syntax with a unit"}
	for _, name := range []string{"target", "rate", "arrival", "seed", "warmup", "duration", "interval",
		"workload", "keys", "key-dist", "zipf-theta", "key-size", "value-size", "preload", "connections",
		"max-inflight", "policy", "timeout", "workers", "min-sleep", "max-lag-p99", "out", "history", "quiet", "check-history", "check-timeout", "check-html", "fail-fast-after", "server-status"} {
		if !strings.Contains(help, "  -"+name+" ") && !strings.Contains(help, "  -"+name+"\n") {
			t.Errorf("-h does not document -%s", name)
		}
		if unit, ok := units[name]; ok && !strings.Contains(help, unit) {
			t.Errorf("-h does not give the unit of -%s (%s)", name, unit)
		}
	}
}

// TestCheckHistory: a run's history checks as linearizable (exit 0).
func TestCheckHistory(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	if code := run([]string{"--target", "fake://", "--rate", "500", "--warmup", "0s", "--duration", "200ms",
		"--workload", "write", "--keys", "10", "--quiet", "--history", "--max-lag-p99", "200ms", "--out", dir}, &out, &out); code != 0 {
		t.Fatalf("run exited %d: %s", code, out.String())
	}
	if code := run([]string{"--check-history", filepath.Join(dir, "history.jsonl")}, &out, &out); code != 0 {
		t.Fatalf("check exited %d: %s", code, out.String())
	}
	if !strings.Contains(out.String(), "Ok") {
		t.Fatalf("check output %q does not say Ok", out.String())
	}
}

// TestRunWritesSummary: a short run against the instant fake exits 0 and leaves a valid summary.
func TestRunWritesSummary(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	code := run([]string{"--target", "fake://", "--rate", "1000", "--warmup", "0s", "--duration", "300ms",
		"--arrival", "uniform", "--max-lag-p99", "200ms", "--quiet", "--out", dir}, &out, &out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, out.String())
	}
	b, err := os.ReadFile(filepath.Join(dir, "summary.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s struct {
		Valid bool  `json:"valid"`
		Sent  int64 `json:"sent"`
	}
	if err := json.Unmarshal(b, &s); err != nil || !s.Valid || s.Sent != 300 {
		t.Fatalf("summary %+v (%v), want valid with 300 sent", s, err)
	}
	if code := run([]string{"--check-history", filepath.Join(dir, "history.jsonl")}, &out, &out); code != 2 {
		t.Fatalf("checking a history the run did not write exited %d, want 2", code)
	}
	if code := run([]string{"--target", "nope://x", "--rate", "10"}, &out, &out); code != 2 {
		t.Fatalf("bad target exited %d, want 2", code)
	}
}

// TestBadConfigBeforeBanner (issue 11, frictions): a configuration the generator would refuse is
// refused before the banner announces a run, in one line per problem without a doubled prefix, and
// the summary of a run goes to stdout while progress stays on stderr.
func TestBadConfigBeforeBanner(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"--target", "fake://", "--rate", "100", "--interval", "100us"}, &stdout, &stderr); code != 2 {
		t.Fatalf("--interval 100us exited %d, want 2", code)
	}
	msg := stderr.String()
	if strings.Contains(msg, "at 100 ops/s") || strings.Contains(msg, "loadgen: loadgen:") || !strings.Contains(msg, "--interval") {
		t.Errorf("refusal printed %q: want the flag named, no banner, no doubled prefix", msg)
	}
	stdout.Reset()
	stderr.Reset()
	if code := run([]string{"--target", "fake://", "--rate", "500", "--warmup", "0s", "--duration", "200ms", "--max-lag-p99", "200ms"},
		&stdout, &stderr); code != 0 {
		t.Fatalf("run exited %d: %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "valid: true") || strings.Contains(stderr.String(), "valid: true") {
		t.Errorf("summary on stdout %q / stderr %q: want it on stdout only", stdout.String(), stderr.String())
	}
	if !strings.Contains(stderr.String(), "at 500 ops/s") {
		t.Errorf("banner missing from stderr: %q", stderr.String())
	}
}

// TestCheckHTMLShowsAFailingHistory (issue 11, frictions): a history that is not linearizable (a
// read that misses an acknowledged write, then finds a value never written) exits 1 and, with
// --check-html, leaves porcupine's visualization of it.
func TestCheckHTMLShowsAFailingHistory(t *testing.T) {
	dir := t.TempDir()
	hist := filepath.Join(dir, "history.jsonl")
	lines := `{"id":1,"worker":0,"op":"put","key":"k","value":"1","call_ns":0,"return_ns":10,"class":"ok"}
{"id":2,"worker":1,"op":"get","key":"k","call_ns":20,"return_ns":30,"class":"ok","found":true,"output":"1"}
{"id":3,"worker":1,"op":"get","key":"k","call_ns":40,"return_ns":50,"class":"ok","found":true,"output":"7"}
`
	if err := os.WriteFile(hist, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	html := filepath.Join(dir, "viz.html")
	var out bytes.Buffer
	if code := run([]string{"--check-history", hist, "--check-html", html}, &out, &out); code != 1 {
		t.Fatalf("a non-linearizable history exited %d, want 1: %s", code, out.String())
	}
	b, err := os.ReadFile(html)
	if err != nil || !bytes.Contains(b, []byte("<html")) || !bytes.Contains(b, []byte("get(k)")) {
		t.Fatalf("--check-html wrote %d bytes (%v), want porcupine's page describing the operations", len(b), err)
	}
}

// TestReportReprintsARun (issue 11, frictions): "loadgen report DIR" prints a finished run again,
// as text, JSON, CSV or HdrHistogram percentiles, from its files alone.
func TestReportReprintsARun(t *testing.T) {
	dir := t.TempDir()
	var runOut, runErr bytes.Buffer
	if code := run([]string{"--target", "fake://?service=1ms", "--rate", "500", "--warmup", "0s", "--duration", "400ms",
		"--workload", "ycsb-b", "--keys", "20", "--max-lag-p99", "200ms", "--out", dir}, &runOut, &runErr); code != 0 {
		t.Fatalf("run exited %d: %s", code, runErr.String())
	}
	report := func(args ...string) string {
		var out, errOut bytes.Buffer
		if code := run(append([]string{"report"}, args...), &out, &errOut); code != 0 {
			t.Fatalf("report %q exited %d: %s", args, code, errOut.String())
		}
		return out.String()
	}
	if got := report(dir); got != runOut.String() {
		t.Errorf("report DIR printed\n%s\nthe run printed\n%s", got, runOut.String())
	}
	if got := report("-type", "json", dir); !strings.Contains(got, `"manifest"`) {
		t.Errorf("report -type json: %.200s", got)
	}
	csvOut := report("-type", "csv", dir)
	if rows := strings.Split(strings.TrimSpace(csvOut), "\n"); len(rows) != 4 || !strings.HasPrefix(rows[0], "op,sent,completed") ||
		!strings.HasPrefix(rows[1], "get,") || !strings.HasPrefix(rows[3], "all,") {
		t.Errorf("report -type csv: want a header and get, put, all rows:\n%s", csvOut)
	}
	if got := report("-type", "hdr", dir); !strings.Contains(got, "# latency of put") || !strings.Contains(got, "Percentile") {
		t.Errorf("report -type hdr: %.300s", got)
	}
	var out bytes.Buffer
	if code := run([]string{"report", t.TempDir()}, &out, &out); code != 2 || !strings.Contains(out.String(), "summary.json") {
		t.Errorf("report of a directory with no run: exit %d %q, want 2 naming summary.json", code, out.String())
	}
	if code := run([]string{"report", "-type", "xml", dir}, &out, &out); code != 2 {
		t.Errorf("report -type xml exited %d, want 2", code)
	}
}
