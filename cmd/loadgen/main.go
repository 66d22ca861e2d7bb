// Command loadgen offers an open-loop load to a SofaDB cluster (or etcd, or an in-process fake) and
// writes what it measured. It is a thin shell over package loadgen: flags in, Run, exit status out.
//
// Exit status: 0 for a valid run, 1 when the run happened but its summary says valid: false (the
// generator could not offer the load it claims), 2 for a configuration error or a failed run.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/sofadb/sofadb/internal/buildinfo"
	"github.com/sofadb/sofadb/loadgen"
	"github.com/sofadb/sofadb/loadgen/lincheck"
)

const usageHead = `loadgen: an open-loop load generator. Requests are due on a fixed schedule whatever the
service does, and latency is measured from when each request was due, so a stall shows in the
percentiles (no coordinated omission).

Usage: loadgen --target URL --rate OPS [flags]
       loadgen --check-history DIR/history.jsonl [--check-timeout 60s] [--check-html FILE]
       loadgen report [-type text|json|csv|hdr] DIR     (prints a finished run again)

Targets:
  sofa://host:port,host:port,...       SofaDB binary protocol (pipelined TCP)
  sofa-http://host:port,...            SofaDB HTTP API (PUT/GET/DELETE /kv/{key})
  etcd://host:port,...                 etcd v3 JSON gateway (/v3/kv/put, /v3/kv/range)
  etcd-grpc://host:port,...            etcd's gRPC API through go.etcd.io/etcd/client/v3
  fake://?service=1ms&stall=200ms&stall-every=1s
                                       in-process fake; no query = instant answers
                                       (measures the generator's own ceiling)

Output (--out DIR): summary.json, latency-<op>.hgrm, service-<op>.hgrm, lag.hgrm,
intervals.hlog, timeseries.csv, history.jsonl (with --history). Durations are in ns,
.hgrm files in ms. Exit status: 0 valid run, 1 run done but invalid, 2 error.
Duration flags take Go syntax with a unit: 500us, 100ms, 30s, 2m. Sizes are bytes.

Flags:
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// fail prints err once prefixed: the library's errors carry their own "loadgen: ", and a joined
// error carries one per line.
func fail(stderr io.Writer, err error) {
	for _, line := range strings.Split(err.Error(), "\n") {
		fmt.Fprintln(stderr, "loadgen:", strings.TrimPrefix(line, "loadgen: "))
	}
}

// run is the command: the summary goes to stdout, progress and errors to stderr.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "report" {
		return runReport(args[1:], stdout, stderr)
	}
	cfg, quiet, check, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err == nil && check.path == "" {
		err = cfg.Check() // every flag is checked before the banner says what will run
	}
	if err != nil {
		fail(stderr, err)
		return 2
	}
	if check.path != "" {
		return checkHistory(check.path, check.html, check.timeout, stderr)
	}
	if !quiet {
		cfg.Progress = stderr
		fmt.Fprintf(stderr, "loadgen: %s at %.0f ops/s (%s, seed %d), warm-up %s, duration %s\n",
			cfg.TargetURL, cfg.RateOpsPerSec, cfg.Arrival, cfg.Seed, cfg.Warmup, cfg.Duration)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sum, err := loadgen.Run(ctx, cfg)
	if err != nil {
		fail(stderr, err)
		return 2
	}
	printSummary(stdout, sum, cfg.OutDir)
	if !sum.Valid {
		return 1
	}
	return 0
}

// checkFlags are the flags of the history-checking mode.
type checkFlags struct {
	path    string
	html    string
	timeout time.Duration
}

func parseFlags(args []string, stderr io.Writer) (loadgen.Config, bool, checkFlags, error) {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usageHead)
		fs.PrintDefaults()
	}
	var c loadgen.Config
	var arrival, workload, keyDist, policy string
	var keys uint64
	var quiet bool
	var check checkFlags
	fs.StringVar(&c.TargetURL, "target", "", "system under test: sofa://, sofa-http://, etcd://, etcd-grpc:// or fake:// URL (required)")
	fs.Func("server-status", "comma-separated HTTP addresses of the SofaDB replicas whose /status (build, identity, settings) the summary's manifest records; default: a sofa-http target's own", func(v string) error {
		c.ServerStatus = nil
		for _, a := range strings.Split(v, ",") {
			if a = strings.TrimSpace(a); a != "" {
				c.ServerStatus = append(c.ServerStatus, a)
			}
		}
		return nil
	})
	fs.Float64Var(&c.RateOpsPerSec, "rate", 0, "offered load in ops/s, all operations together (required)")
	fs.StringVar(&arrival, "arrival", "poisson", "arrival process: poisson or uniform")
	fs.Uint64Var(&c.Seed, "seed", 1, "seed of the arrival and workload streams; the same seed replays the same plan")
	fs.DurationVar(&c.Warmup, "warmup", 5*time.Second, "warm-up before the measured window: sent and logged, excluded from the summary")
	fs.DurationVar(&c.Duration, "duration", loadgen.DefaultDuration, "measured window")
	fs.DurationVar(&c.Interval, "interval", loadgen.DefaultInterval, "length of each interval histogram in intervals.hlog and row in timeseries.csv (100ms for failover runs)")
	fs.StringVar(&workload, "workload", "write", "operation mix: write (100% put), read (100% get), ycsb-a (50/50 get/put), ycsb-b (95/5), ycsb-c (100% get)")
	fs.Uint64Var(&keys, "keys", 100_000, "number of distinct keys")
	fs.StringVar(&keyDist, "key-dist", "uniform", "key popularity: uniform or zipf")
	fs.Float64Var(&c.Workload.ZipfTheta, "zipf-theta", 0.99, "Zipf exponent for --key-dist zipf, in (0, 1) (YCSB: 0.99)")
	fs.IntVar(&c.Workload.KeyBytes, "key-size", 16, "key size in bytes")
	fs.IntVar(&c.Workload.ValueBytes, "value-size", 128, "value size in bytes (>= 16 keeps every written value unique for --history)")
	fs.BoolVar(&c.Preload, "preload", false, "write every key once before the run (closed loop, unmeasured) so reads find values")
	fs.IntVar(&c.Connections, "connections", 0, fmt.Sprintf("connections per replica; HTTP carries one request per connection, so for sofa-http:// and etcd:// this bounds the requests in flight per replica (default %d for sofa://, %d for HTTP targets)", loadgen.DefaultConnections, loadgen.DefaultHTTPConnections))
	fs.IntVar(&c.MaxInflight, "max-inflight", loadgen.DefaultMaxInflight, "bound on requests sent and not completed; a request due when it is reached waits (counted, shown in latency)")
	fs.StringVar(&policy, "policy", "leader", "replica choice: leader (follow redirects and hints), round-robin, or random")
	fs.DurationVar(&c.Timeout, "timeout", loadgen.DefaultTimeout, "per-request timeout; a request not answered by then is recorded as a timeout")
	fs.IntVar(&c.Workers, "workers", 0, "goroutines issuing requests and recording completions (default: GOMAXPROCS, here "+fmt.Sprint(runtime.GOMAXPROCS(0))+")")
	fs.DurationVar(&c.MinSleep, "min-sleep", loadgen.DefaultMinSleep, "dispatcher's shortest sleep between sends: lower keeps send times closer to the schedule for more CPU (1ns: as close as the kernel allows, about 0.1 ms)")
	fs.DurationVar(&c.MaxLagP99, "max-lag-p99", loadgen.DefaultMaxLagP99, "validity threshold: the run is invalid if the p99 of (actual - intended send time) exceeds it")
	fs.StringVar(&c.OutDir, "out", "", "directory for the result files (created); empty: summary on stderr only")
	fs.BoolVar(&c.History, "history", false, "also write history.jsonl (every call's send and return time, input and output) for linearizability checking; needs --out")
	fs.BoolVar(&quiet, "quiet", false, "no progress lines on stderr")
	fs.StringVar(&check.path, "check-history", "", "instead of a run: check this history.jsonl for linearizability (porcupine); exit 0 if linearizable, 1 if not or undecided")
	fs.DurationVar(&c.FailFastAfter, "fail-fast-after", 5*time.Second, "end the run with exit status 2 when no request has succeeded this long after it started (and some failed); a negative value (-1s) disables")
	fs.DurationVar(&check.timeout, "check-timeout", time.Minute, "time budget of --check-history; running out counts as a failure")
	fs.StringVar(&check.html, "check-html", "", "with --check-history: when the history is not linearizable, write porcupine's interactive visualization of it to this HTML file")
	version := fs.Bool("version", false, "print the build (module version, commit, Go version) and exit")
	if err := fs.Parse(args); err != nil {
		return c, false, check, err
	}
	if *version {
		fmt.Println(buildinfo.String("loadgen"))
		os.Exit(0)
	}
	if fs.NArg() > 0 {
		return c, false, check, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if check.path != "" {
		return c, quiet, check, nil
	}
	var err error
	var errs []error
	c.Arrival, err = loadgen.ParseArrival(arrival)
	errs = append(errs, err)
	c.Workload.Mix, err = loadgen.ParseMix(workload)
	errs = append(errs, err)
	c.Workload.KeyDist, err = loadgen.ParseKeyDist(keyDist)
	errs = append(errs, err)
	c.Policy, err = loadgen.ParsePolicy(policy)
	errs = append(errs, err)
	c.Workload.Keys = keys
	c.Command = append([]string{"loadgen"}, args...)
	if c.TargetURL == "" || c.RateOpsPerSec == 0 {
		errs = append(errs, errors.New("--target and --rate are required (loadgen -h for help)"))
	}
	return c, quiet, check, errors.Join(errs...)
}

// checkHistory runs the linearizability check on a history file.
func checkHistory(path, html string, timeout time.Duration, stderr io.Writer) int {
	f, err := os.Open(path)
	if err != nil {
		fail(stderr, err)
		return 2
	}
	defer f.Close()
	recs, err := lincheck.Read(f)
	if err != nil {
		fail(stderr, err)
		return 2
	}
	start := time.Now()
	res, info := lincheck.CheckVerbose(lincheck.Model, recs, timeout)
	fmt.Fprintf(stderr, "%s: %d operations, %s in %s\n", path, len(recs), res, time.Since(start).Round(time.Millisecond))
	if res == porcupine.Ok {
		return 0
	}
	if html != "" {
		if err := porcupine.VisualizePath(lincheck.Model, info, html); err != nil {
			fail(stderr, fmt.Errorf("--check-html: %w", err))
			return 2
		}
		fmt.Fprintf(stderr, "%s: porcupine's visualization of the history (open it in a browser)\n", html)
	}
	return 1
}

// nonZero lists the error classes that occurred, " (timeout 3, not_leader 1)", or "" when none did.
func nonZero(byClass map[string]int64) string {
	var parts []string
	for class, n := range byClass {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", class, n))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	sort.Strings(parts)
	return " (" + strings.Join(parts, ", ") + ")"
}

func printSummary(w io.Writer, s *loadgen.Summary, outDir string) {
	ms := func(ns int64) string {
		if ns <= 0 {
			return "-" // nothing measured: never a 0 that reads like a figure
		}
		return fmt.Sprintf("%.3fms", float64(ns)/1e6)
	}
	fmt.Fprintf(w, "\ntarget %.0f ops/s  sent %.1f ops/s  completed %.1f ops/s  errors %.1f ops/s  lost %d  (of the requests due in the window)\n",
		s.TargetOpsPerSec, s.SentOpsPerSec, s.CompletedOpsPerSec, s.ErrorOpsPerSec, s.Lost)
	if e := s.Ended; e != nil {
		fmt.Fprintf(w, "ended in the window, whenever due: %.1f ops/s ok, %d errors; latency p50 %s p99 %s\n",
			s.EndedOpsPerSec, e.Errors, ms(e.P50Ns), ms(e.P99Ns))
	}
	fmt.Fprintf(w, "lag p50 %s p99 %s max %s  in-flight peak %d of %d, limit hits %d\n",
		ms(s.Lag.P50Ns), ms(s.Lag.P99Ns), ms(s.Lag.MaxNs), s.PeakInflight, s.MaxInflight, s.InflightLimitHits)
	for name, o := range s.Ops {
		fmt.Fprintf(w, "%-4s n=%d  latency p50 %s p90 %s p99 %s p99.9 %s max %s  service p99 %s  errors %d%s\n",
			name, o.Count, ms(o.P50Ns), ms(o.P90Ns), ms(o.P99Ns), ms(o.P999Ns), ms(o.MaxNs), ms(o.Service.P99Ns),
			o.Errors, nonZero(o.ErrorsByClass))
	}
	for _, warn := range s.Warnings {
		fmt.Fprintln(w, "warning:", warn)
	}
	if s.Valid {
		fmt.Fprintln(w, "valid: true")
	} else {
		fmt.Fprintln(w, "valid: false:", s.InvalidReason)
	}
	if outDir != "" {
		fmt.Fprintln(w, "results in", outDir)
	}
}
