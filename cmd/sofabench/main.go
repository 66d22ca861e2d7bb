// Command sofabench runs SofaDB's benchmark scenarios on clusters it starts itself and publishes a
// report: `make bench` runs the default suite, `make bench-full` the full one, `make report DIR=...`
// regenerates a report's tables and plots from its raw files. See bench/scenarios/README.md for the
// scenario format.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/sofadb/sofadb/bench/cluster"
	"github.com/sofadb/sofadb/bench/report"
	"github.com/sofadb/sofadb/bench/runner"
	"github.com/sofadb/sofadb/bench/scenario"
	"github.com/sofadb/sofadb/internal/buildinfo"
)

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := flag.NewFlagSet("sofabench", flag.ContinueOnError)
	suite := fs.String("suite", "default", "scenario suite: default, full or smoke (bench/scenarios/<suite>/; full adds to default)")
	var files multi
	fs.Var(&files, "scenario", "run this scenario file instead of a suite (repeatable)")
	out := fs.String("out", "", "report directory; default results/<UTC date>-<commit>-<suite>")
	regen := fs.String("report", "", "regenerate the report in this directory from its raw files, and run nothing")
	compact := fs.Bool("compact", false, "with -report: first replace each run's history.jsonl by completions.csv.gz (what a run keeps; a run does this itself)")
	index := fs.String("index", "results", "directory whose README.md indexes every report (updated after a run or -report)")
	scale := fs.Float64("scale", 1, "multiply every warm-up, duration and fault time by this (a quick look: 0.3)")
	scenarios := fs.String("scenarios", "bench/scenarios", "directory of the suites")
	version := fs.Bool("version", false, "print the build (module version, commit, Go version) and exit")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: sofabench [-suite default|full|smoke | -scenario FILE...] [-out DIR] [-scale F]\n"+
			"       sofabench -report DIR\n\n"+
			"Runs benchmark scenarios against local clusters it starts (SofaDB, and etcd where it is\n"+
			"installed) and writes a report: README.md, plots/ and every raw file under raw/.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *version {
		fmt.Println(buildinfo.String("sofabench"))
		return 0
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "sofabench: unexpected arguments %q\n", fs.Args())
		fs.Usage()
		return 2
	}
	if *scale <= 0 || *scale > 10 {
		fmt.Fprintln(os.Stderr, "sofabench: -scale must be in (0, 10]")
		return 2
	}
	if *regen != "" {
		if *compact {
			if _, err := runner.CompactHistories(filepath.Join(*regen, "raw")); err != nil {
				fmt.Fprintln(os.Stderr, "sofabench:", err)
				return 1
			}
		}
		if err := regenerate(*regen, *index); err != nil {
			fmt.Fprintln(os.Stderr, "sofabench:", err)
			return 1
		}
		return 0
	}
	list, name, err := loadScenarios(*scenarios, *suite, files)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sofabench:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	defer cluster.RemoveBinary()
	if err := suiteRun(ctx, list, name, *out, *index, *scale, args); err != nil {
		fmt.Fprintln(os.Stderr, "sofabench:", err)
		if errors.Is(err, context.Canceled) {
			return 130
		}
		return 1
	}
	return 0
}

func loadScenarios(dir, suite string, files []string) ([]*scenario.Scenario, string, error) {
	if len(files) > 0 {
		var out []*scenario.Scenario
		for _, f := range files {
			s, err := scenario.Load(f)
			if err != nil {
				return nil, "", err
			}
			out = append(out, s)
		}
		return out, "custom", nil
	}
	dirs := map[string][]string{"default": {"default"}, "full": {"default", "full"}, "smoke": {"smoke"}}[suite]
	if dirs == nil {
		return nil, "", fmt.Errorf("unknown suite %q (want default, full or smoke)", suite)
	}
	var out []*scenario.Scenario
	for _, d := range dirs {
		ss, err := scenario.LoadDir(filepath.Join(dir, d))
		if err != nil {
			return nil, "", err
		}
		for _, s := range ss {
			replaced := false
			for i := range out {
				if out[i].Name == s.Name { // a later suite's file of the same name replaces it
					out[i], replaced = s, true
				}
			}
			if !replaced {
				out = append(out, s)
			}
		}
	}
	if len(out) == 0 {
		return nil, "", fmt.Errorf("suite %q: no scenario files under %s", suite, dir)
	}
	return out, suite, nil
}

func suiteRun(ctx context.Context, list []*scenario.Scenario, suite, out, index string, scale float64, args []string) error {
	m := manifest(suite, args, scale)
	if out == "" {
		out = filepath.Join("results", fmt.Sprintf("%s-%s-%s", time.Now().UTC().Format("2006-01-02"), shortCommit(m.Commit), suite))
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	for _, s := range list {
		m.Scenarios = append(m.Scenarios, s.Name)
	}
	fmt.Fprintf(os.Stderr, "sofabench: %d scenarios of suite %s into %s (2 cores shared by the generator and every replica)\n", len(list), suite, out)
	began := time.Now()
	r := runner.New(runner.Options{Dir: out, Progress: os.Stderr, DurationScale: scale})
	runErr := r.Run(ctx, list)
	m.WallSeconds = time.Since(began).Seconds()
	if v, err := exec.Command("etcd", "--version").Output(); err == nil {
		m.EtcdVersion = strings.TrimSpace(strings.SplitN(string(v), "\n", 2)[0])
	}
	if err := report.WriteManifest(out, m); err != nil {
		return err
	}
	cleanClusters(filepath.Join(out, "clusters"))
	if _, err := runner.CompactHistories(filepath.Join(out, "raw")); err != nil {
		return errors.Join(runErr, err)
	}
	if errors.Is(runErr, context.Canceled) {
		return runErr
	}
	if err := regenerate(out, index); err != nil {
		return errors.Join(runErr, err)
	}
	fmt.Fprintf(os.Stderr, "sofabench: report in %s/README.md (%s)\n", out, time.Since(began).Round(time.Second))
	return runErr
}

// cleanClusters keeps the replicas' logs and drops their data directories: a report keeps what
// explains it, not hundreds of megabytes of database files.
func cleanClusters(dir string) {
	filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || path == dir {
			return nil
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), "r") || strings.HasPrefix(d.Name(), "e")) && filepath.Dir(path) != dir {
			os.RemoveAll(path)
			return filepath.SkipDir
		}
		if !d.IsDir() && !strings.HasSuffix(d.Name(), ".log") {
			os.Remove(path)
		}
		return nil
	})
}

func regenerate(dir, index string) error {
	d, err := report.Load(dir)
	if err != nil {
		return err
	}
	if err := report.Write(d); err != nil {
		return err
	}
	if index != "" {
		return report.WriteIndex(index)
	}
	return nil
}

func shortCommit(c string) string {
	if len(c) > 7 {
		return c[:7]
	}
	if c == "" {
		return "nocommit"
	}
	return c
}

func output(name string, args ...string) string {
	b, err := exec.Command(name, args...).Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func manifest(suite string, args []string, scale float64) report.Manifest {
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = shellQuote(a)
	}
	m := report.Manifest{Suite: suite, Command: strings.TrimSpace("go run ./cmd/sofabench " + strings.Join(quoted, " ")),
		Commit: output("git", "rev-parse", "HEAD"), Dirty: output("git", "status", "--porcelain", "--untracked-files=no") != "",
		GoVersion: runtime.Version(), GOMAXPROCS: runtime.GOMAXPROCS(0), NumCPU: runtime.NumCPU(),
		StartedUTC: time.Now().UTC().Format(time.RFC3339), DurationScale: scale}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				m.CPUModel = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb uint64
		fmt.Sscanf(strings.SplitN(string(b), "\n", 2)[0], "MemTotal: %d kB", &kb)
		m.MemoryBytes = kb << 10
	}
	m.FileSystem = output("findmnt", "-no", "FSTYPE", "--target", ".")
	m.Disk = output("findmnt", "-no", "SOURCE", "--target", ".")
	return m
}

// shellQuote quotes a for a POSIX shell when it needs it.
func shellQuote(a string) string {
	if a != "" && strings.Trim(a, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_=./,:") == "" {
		return a
	}
	return "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
}
