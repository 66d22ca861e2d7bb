package loadgen

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// TestIntervalLogReadsBack writes a run's intervals.hlog and reads it back with hdrhistogram-go's own
// reader: every tag's counts add up to the summary's, and every interval starts exactly where it was
// written, a whole number of intervals after the run's zero (which is on a whole second, because the
// log stores start and base times in whole seconds). It also checks the other files a run writes.
func TestIntervalLogReadsBack(t *testing.T) {
	dir := t.TempDir()
	s := fakeRun(t, Config{RateOpsPerSec: 1000, Duration: 1500 * time.Millisecond, Interval: 250 * time.Millisecond,
		OutDir: dir, History: true, MaxLagP99: noisyLagP99,
		Workload: Workload{Mix: MixYCSBA, Keys: 100, KeyBytes: 8, ValueBytes: 24}},
		func(f *Fake) { f.ServiceNs = 3 * ms })
	if s.Manifest.StartUnixMs%1000 != 0 {
		t.Fatalf("run zero %d ms is not on a whole second", s.Manifest.StartUnixMs)
	}
	counts, intervals := readHlog(t, filepath.Join(dir, IntervalsFile), s.Manifest.StartUnixMs, 250)
	for op, o := range s.Ops {
		if counts["latency-"+op] != o.Count || counts["service-"+op] != o.Count {
			t.Errorf("%s: log holds %d latency and %d service samples, summary %d", op,
				counts["latency-"+op], counts["service-"+op], o.Count)
		}
	}
	if counts["lag"] != s.Sent || s.Sent == 0 {
		t.Errorf("log holds %d lag samples, summary sent %d", counts["lag"], s.Sent)
	}
	if intervals < 2 {
		t.Errorf("%d intervals in 1.5 s of 250 ms", intervals) // fewer than 6 only when the machine stalls the collector
	}
	checkSummaryJSON(t, dir)
	checkHgrm(t, filepath.Join(dir, "latency-put.hgrm"), s.Ops["put"].Count)
	checkLines(t, filepath.Join(dir, TimeseriesFile), intervals+1)
	checkLines(t, filepath.Join(dir, HistoryFile), int(s.Sent))
}

// readHlog sums counts per tag and checks interval start times; it returns the counts and the number
// of intervals (lines tagged lag).
func readHlog(t *testing.T, path string, zeroMs, intervalMs int64) (map[string]int64, int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rd := hdr.NewHistogramLogReader(f)
	counts, intervals := map[string]int64{}, 0
	for {
		h, err := rd.NextIntervalHistogram()
		if err != nil {
			t.Fatal(err)
		}
		if h == nil {
			break
		}
		counts[h.Tag()] += h.TotalCount()
		if off := h.StartTimeMs() - zeroMs; off%intervalMs != 0 || off < 0 {
			t.Fatalf("interval %q starts %d ms after the zero, not on a %d ms boundary", h.Tag(), off, intervalMs)
		}
		if h.Tag() == "lag" {
			intervals++
		}
	}
	return counts, intervals
}

func checkSummaryJSON(t *testing.T, dir string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, SummaryFile))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	put, _ := m["ops"].(map[string]any)["put"].(map[string]any)
	for _, key := range []string{"count", "p50_ns", "p90_ns", "p99_ns", "p999_ns", "p9999_ns", "max_ns", "errors_by_class"} {
		if _, ok := put[key]; !ok {
			t.Errorf("summary.json ops.put has no %q", key)
		}
	}
	for _, key := range []string{"valid", "target_ops_per_sec", "sent_ops_per_sec", "lag_p99_ns", "manifest"} {
		if _, ok := m[key]; !ok {
			t.Errorf("summary.json has no %q", key)
		}
	}
}

// checkHgrm checks the plotter format: header, rows, and a footer whose total count is the summary's.
func checkHgrm(t *testing.T, path string, want int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	if !strings.HasPrefix(text, "       Value     Percentile TotalCount 1/(1-Percentile)") &&
		!strings.HasPrefix(text, " Value\tPercentile\tTotalCount\t1/(1-Percentile)") {
		t.Fatalf("%s: no plotter header: %.80q", path, text)
	}
	_, after, ok := strings.Cut(text, "Total count    =")
	if !ok {
		t.Fatalf("%s: no footer", path)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimRight(strings.SplitN(after, "]", 2)[0], " ")), 10, 64)
	if err != nil || n != want {
		t.Fatalf("%s: total count %d (%v), want %d", path, n, err, want)
	}
}

func checkLines(t *testing.T, path string, want int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		n++
		if strings.HasSuffix(path, ".jsonl") && !json.Valid(sc.Bytes()) {
			t.Fatalf("%s line %d is not JSON: %s", path, n, sc.Text())
		}
	}
	if n != want {
		t.Fatalf("%s has %d lines, want %d", path, n, want)
	}
}
