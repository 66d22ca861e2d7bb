package main

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"

	"github.com/sofadb/sofadb/loadgen"
)

const reportUsage = `Usage: loadgen report [-type text|json|csv|hdr] DIR

Re-reads a run's output directory (written with --out DIR) and prints its summary again:
  text  the summary the run printed (default)
  json  summary.json, as written
  csv   one row per operation: counts, rates and latency percentiles in ms (latency from the
        intended send time; service time from the actual send)
  hdr   the HdrHistogram percentile distributions (latency-<op>.hgrm), one after another
The run's files are only read.

Flags:
`

// runReport is "loadgen report": it prints a finished run again, the way Vegeta's report does.
func runReport(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("loadgen report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	typ := fs.String("type", "text", "output: text, json, csv or hdr")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), reportUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() != 1 {
		fail(stderr, fmt.Errorf("report: want one run directory, got %d arguments (loadgen report -h)", fs.NArg()))
		return 2
	}
	dir := fs.Arg(0)
	raw, err := os.ReadFile(filepath.Join(dir, loadgen.SummaryFile))
	if err != nil {
		fail(stderr, fmt.Errorf("report: %w (is %s a run's --out directory?)", err, dir))
		return 2
	}
	var s loadgen.Summary
	if err := json.Unmarshal(raw, &s); err != nil {
		fail(stderr, fmt.Errorf("report: %s: %w", filepath.Join(dir, loadgen.SummaryFile), err))
		return 2
	}
	switch *typ {
	case "text":
		printSummary(stdout, &s, dir)
	case "json":
		stdout.Write(raw)
	case "csv":
		err = writeCSV(stdout, &s)
	case "hdr":
		err = writeHdr(stdout, dir, &s)
	default:
		fail(stderr, fmt.Errorf("report: -type %q: want text, json, csv or hdr", *typ))
		return 2
	}
	if err != nil {
		fail(stderr, fmt.Errorf("report: %w", err))
		return 2
	}
	return 0
}

// sortedOps are the run's operations in name order, then "all".
func sortedOps(s *loadgen.Summary) []string {
	var ops []string
	for op := range s.Ops {
		ops = append(ops, op)
	}
	sort.Strings(ops)
	return append(ops, "all")
}

func writeCSV(w io.Writer, s *loadgen.Summary) error {
	cw := csv.NewWriter(w)
	secs := float64(s.Manifest.DurationNs) / 1e9
	ms := func(ns int64) string { return strconv.FormatFloat(float64(ns)/1e6, 'f', 3, 64) }
	cw.Write([]string{"op", "sent", "completed", "not_found", "errors", "completed_ops_per_sec",
		"p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms", "service_p50_ms", "service_p99_ms"})
	for _, op := range sortedOps(s) {
		o := s.Ops[op]
		if op == "all" {
			o = s.All
		}
		if o == nil {
			continue
		}
		rate := ""
		if secs > 0 {
			rate = strconv.FormatFloat(float64(o.Count)/secs, 'f', 1, 64)
		}
		cw.Write([]string{op, strconv.FormatInt(o.Sent, 10), strconv.FormatInt(o.Count, 10), strconv.FormatInt(o.NotFound, 10),
			strconv.FormatInt(o.Errors, 10), rate, ms(o.P50Ns), ms(o.P90Ns), ms(o.P99Ns), ms(o.P999Ns), ms(o.MaxNs),
			ms(o.Service.P50Ns), ms(o.Service.P99Ns)})
	}
	cw.Flush()
	return cw.Error()
}

func writeHdr(w io.Writer, dir string, s *loadgen.Summary) error {
	for _, op := range sortedOps(s) {
		b, err := os.ReadFile(filepath.Join(dir, "latency-"+op+".hgrm"))
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "# latency of %s, ms from the intended send time\n", op)
		w.Write(b)
	}
	return nil
}
