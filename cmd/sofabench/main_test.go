package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSmokeSuite runs the smoke suite end to end (real clusters, real load, a leader kill and
// restart, etcd where it is installed) and checks what the report says, then that -report
// regenerates the same README from the raw files alone.
func TestSmokeSuite(t *testing.T) {
	if testing.Short() {
		t.Skip("starts clusters")
	}
	root := filepath.Join(t.TempDir(), "results")
	out := filepath.Join(root, "smoke")
	if code := run([]string{"-suite", "smoke", "-scenarios", "../../bench/scenarios", "-out", out, "-index", root}); code != 0 {
		t.Fatalf("sofabench exited %d", code)
	}
	readme := read(t, filepath.Join(out, "README.md"))
	for _, want := range []string{
		"**Saturation: ",                        // found (400 ops/s on a quiet machine, less when the generator falls behind)
		"| 1.1 coarse | 100 | ", "| 1.2 coarse", // one table row per run, sustained or not
		"## Headline numbers", "**smoke-failover**: kill to first acknowledged write",
		"all 3 replicas applied slot", // the killed replica restarted and caught up
		"![Failover timeline: smoke-failover (first repeat)](plots/failover-smoke-failover.svg)",
		"## Manifest", "| GOMAXPROCS / CPUs |", "**Validity bound changed:** a run is valid with a send lag p99 up to 1s",
	} {
		if !strings.Contains(readme, want) {
			t.Errorf("README.md lacks %q", want)
		}
	}
	if strings.Contains(readme, "**failed**") || strings.Contains(readme, "NOT caught up") {
		t.Errorf("a smoke run failed:\n%s", readme)
	}
	if _, err := exec.LookPath("etcd"); err == nil && !strings.Contains(readme, "| 1.1 fixed | 200 | ") {
		t.Errorf("etcd is installed but its smoke run is not in the report")
	} else if err != nil && !strings.Contains(readme, "**Skipped:** etcd is not installed") {
		t.Errorf("etcd is not installed and the report does not say it skipped it")
	}
	for _, f := range []string{"manifest.json", "plots/failover-smoke-failover.svg", "raw/smoke-search/runs.json",
		"raw/smoke-search/r1-s01-coarse-100/summary.json", "raw/smoke-search/r1-s01-coarse-100/server.json",
		"raw/smoke-failover/r1-s01-from-*/completions.csv.gz", "raw/smoke-search/r1-s01-coarse-100/metrics.jsonl"} {
		if m, _ := filepath.Glob(filepath.Join(out, f)); len(m) == 0 {
			t.Errorf("report lacks %s", f)
		}
	}
	// Each run's manifest names the servers it measured (issue 11): build, identity, settings.
	var sum struct {
		Manifest struct {
			Servers []struct {
				ID       int    `json:"id"`
				Identity string `json:"identity"`
				Build    string `json:"build"`
				Error    string `json:"error"`
				Settings struct {
					Fsync    bool `json:"fsync"`
					Replicas int  `json:"replicas"`
				} `json:"settings"`
			} `json:"servers"`
		} `json:"manifest"`
	}
	if err := json.Unmarshal([]byte(read(t, filepath.Join(out, "raw/smoke-search/r1-s01-coarse-100/summary.json"))), &sum); err != nil {
		t.Fatal(err)
	}
	if n := len(sum.Manifest.Servers); n != 3 {
		t.Errorf("the summary's manifest records %d servers, want 3", n)
	}
	for _, sv := range sum.Manifest.Servers {
		if sv.Error != "" || len(sv.Identity) != 32 || !strings.HasPrefix(sv.Build, "sofadb ") || !sv.Settings.Fsync || sv.Settings.Replicas != 3 {
			t.Errorf("manifest server %+v: want its identity, build and settings", sv)
		}
	}
	if idx := read(t, filepath.Join(root, "README.md")); !strings.Contains(idx, "[smoke](smoke/README.md)") || !strings.Contains(idx, "saturation **") {
		t.Errorf("results index does not list the report with its headline:\n%s", idx)
	}
	// Nothing is left running and the data directories are gone; the replicas' logs stay.
	logs, _ := filepath.Glob(filepath.Join(out, "clusters", "*", "r1", "*"))
	if len(logs) > 0 {
		t.Errorf("replica data left behind: %v", logs)
	}
	regenerated(t, out)
}

// TestCommittedReportsReproduce: every report committed under results/ regenerates, from its raw
// files alone, byte for byte the README.md that was published.
func TestCommittedReportsReproduce(t *testing.T) {
	manifests, _ := filepath.Glob("../../results/*/manifest.json")
	if len(manifests) == 0 {
		t.Skip("no report committed under results/")
	}
	for _, m := range manifests {
		src := filepath.Dir(m)
		t.Run(filepath.Base(src), func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "results", filepath.Base(src))
			if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
				t.Fatal(err)
			}
			regenerated(t, dst)
		})
	}
}

// regenerated removes dir's README.md and plots, runs `sofabench -report dir` and compares.
func regenerated(t *testing.T, dir string) {
	t.Helper()
	want := read(t, filepath.Join(dir, "README.md"))
	wantPlots, _ := filepath.Glob(filepath.Join(dir, "plots", "*.svg"))
	os.Remove(filepath.Join(dir, "README.md"))
	os.RemoveAll(filepath.Join(dir, "plots"))
	if code := run([]string{"-report", dir, "-index", ""}); code != 0 {
		t.Fatalf("sofabench -report exited %d", code)
	}
	if got := read(t, filepath.Join(dir, "README.md")); got != want {
		t.Errorf("regenerated README.md differs from the published one:\n%s", firstDiff(want, got))
	}
	gotPlots, _ := filepath.Glob(filepath.Join(dir, "plots", "*.svg"))
	if len(gotPlots) != len(wantPlots) {
		t.Errorf("regenerated %d plots, the report had %d", len(gotPlots), len(wantPlots))
	}
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func firstDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := range max(len(al), len(bl)) {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			return fmt.Sprintf("line %d:\n- %s\n+ %s", i+1, x, y)
		}
	}
	return "(same lines, different bytes)"
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{{"-suite", "nope"}, {"-scale", "0"}, {"extra"}, {"-scenario", "/nonexistent.toml"}} {
		if code := run(args); code != 2 {
			t.Errorf("sofabench %v exited %d, want 2", args, code)
		}
	}
}
