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
	if code := run([]string{"-h"}, &out); code != 0 {
		t.Fatalf("-h exited %d", code)
	}
	help := out.String()
	units := map[string]string{"rate": "ops/s", "key-size": "bytes", "value-size": "bytes",
		"connections": "per replica", "max-inflight": "requests", "duration": "Go syntax with a unit"}
	for _, name := range []string{"target", "rate", "arrival", "seed", "warmup", "duration", "interval",
		"workload", "keys", "key-dist", "zipf-theta", "key-size", "value-size", "preload", "connections",
		"max-inflight", "policy", "timeout", "workers", "max-lag-p99", "out", "history", "quiet"} {
		if !strings.Contains(help, "  -"+name+" ") && !strings.Contains(help, "  -"+name+"\n") {
			t.Errorf("-h does not document -%s", name)
		}
		if unit, ok := units[name]; ok && !strings.Contains(help, unit) {
			t.Errorf("-h does not give the unit of -%s (%s)", name, unit)
		}
	}
}

// TestRunWritesSummary: a short run against the instant fake exits 0 and leaves a valid summary.
func TestRunWritesSummary(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	code := run([]string{"--target", "fake://", "--rate", "1000", "--warmup", "0s", "--duration", "300ms",
		"--arrival", "uniform", "--max-lag-p99", "200ms", "--quiet", "--out", dir}, &out)
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
	if code := run([]string{"--target", "nope://x", "--rate", "10"}, &out); code != 2 {
		t.Fatalf("bad target exited %d, want 2", code)
	}
}
