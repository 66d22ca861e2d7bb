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
		"max-inflight", "policy", "timeout", "workers", "min-sleep", "max-lag-p99", "out", "history", "quiet", "check-history", "check-timeout", "fail-fast-after"} {
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
