// Command paxsim runs the deterministic Paxos simulator over many seeds: the long randomized runs
// behind `make sim` and the seed budget of `make test`. Each failing seed is printed with the command
// that replays it; the last line summarises the run, and the exit status is 0 only when no seed
// violated anything and every mutation canary was caught.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sofadb/sofadb/internal/buildinfo"
	"github.com/sofadb/sofadb/paxos/sim"
)

func main() {
	seeds := flag.Int("seeds", 500, "number of seeds to run")
	start := flag.Uint64("start", 1, "first seed")
	events := flag.Int("events", 20000, "events in each seed's fault phase (then it heals and must converge)")
	replicas := flag.Int("replicas", 0, "replicas per run: 3 or 5; 0 lets each seed choose")
	canarySeeds := flag.Int("canary-seeds", 200, "seeds each mutation canary may take to be caught; 0 skips canaries")
	canaryRate := flag.Int("canary-rate", 0, "instead of the normal run: run every canary on seeds start..start+N-1 and report\n"+
		"how many catch it, the first that does, and which checkers fired")
	workers := flag.Int("workers", runtime.GOMAXPROCS(0), "seeds run in parallel")
	verbose := flag.Bool("v", false, "print parameters, faults and violations of every seed (use with -seeds 1)")
	trace := flag.Bool("trace", false, "with -v: also print every message delivered")
	version := flag.Bool("version", false, "print the build (module version, commit, Go version) and exit")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: paxsim -seeds N [-start S] [-events E] [-replicas R]\n\n"+
			"Runs N seeded simulations of a Multi-Paxos cluster of the real core with message loss,\n"+
			"duplication, reordering, delay, partitions and crash-restart, then heals and checks that\n"+
			"everything converges. Then it plants each known bug (mutation canary) and checks the\n"+
			"checkers catch it within -canary-seeds seeds.\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *version {
		fmt.Println(buildinfo.String("paxsim"))
		return
	}
	if *seeds < 0 || *events <= 0 || (*replicas != 0 && *replicas != 3 && *replicas != 5) || *workers <= 0 {
		fmt.Fprintln(os.Stderr, "paxsim: need -seeds >= 0, -events > 0, -replicas 0, 3 or 5, -workers > 0")
		os.Exit(2)
	}
	run := runner{events: *events, replicas: *replicas, workers: *workers, verbose: *verbose, trace: *trace}
	if *canaryRate > 0 {
		if !run.canaryRates(*start, *canaryRate) {
			os.Exit(1)
		}
		return
	}
	began := time.Now()
	violations, total := run.seeds(*start, *seeds, sim.Canary{}, true)
	caught, canaries := 0, 0
	if *canarySeeds > 0 {
		for _, m := range sim.Canaries() {
			canaries++
			seed, ok := run.canary(*start, *canarySeeds, m)
			switch test, scripted := sim.ScenarioCanaries[m.Name()]; {
			case ok:
				caught++
				fmt.Printf("canary %-30s caught by seed %d\n", m.Name(), seed)
			case scripted:
				caught++
				fmt.Printf("canary %-30s not caught in %d random seeds; its gate is the scenario test %s\n", m.Name(), *canarySeeds, test)
			default:
				fmt.Printf("canary %-30s NOT CAUGHT in %d seeds\n", m.Name(), *canarySeeds)
			}
		}
	}
	elapsed := time.Since(began)
	fmt.Printf("paxsim: seeds=%d events=%d violations=%d canaries=%d/%d (simulated %d events in %.1fs, %.0f events/s)\n",
		*seeds, *events, violations, caught, canaries, total, elapsed.Seconds(), float64(total)/elapsed.Seconds())
	if violations > 0 || caught != canaries {
		os.Exit(1)
	}
}

type runner struct {
	events, replicas, workers int
	verbose, trace            bool
	noOracles                 bool
}

// seeds runs n seeds from start on the workers and prints each failure (in seed order of discovery).
// It returns how many seeds violated something and how many events were simulated.
func (r runner) seeds(start uint64, n int, mut sim.Canary, report bool) (int, int64) {
	var next atomic.Uint64
	next.Store(start)
	end := start + uint64(n)
	var failed, total atomic.Int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	lastProgress := time.Now()
	for range r.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seed := next.Add(1) - 1; seed < end; seed = next.Add(1) - 1 {
				res := r.one(seed, mut)
				total.Add(int64(res.Events))
				mu.Lock()
				if res.Failed() {
					failed.Add(1)
					if report {
						fmt.Printf("FAIL seed=%d: %s\n  params: %s\n  replay: go run ./cmd/paxsim -seeds 1 -start %d -events %d -replicas %d -canary-seeds 0 -v\n",
							seed, res.Violations[0], res.Params, seed, r.events, r.replicas)
					}
				}
				if report && time.Since(lastProgress) > 10*time.Second {
					lastProgress = time.Now()
					fmt.Fprintf(os.Stderr, "paxsim: seed %d of %d, %d violations so far\n", seed-start+1, n, failed.Load())
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return int(failed.Load()), total.Load()
}

func (r runner) one(seed uint64, mut sim.Canary) sim.Result {
	p := sim.Choose(seed, r.replicas, r.events)
	mut.Plant(&p)
	p.TraceMessages = r.trace
	p.NoOracles = r.noOracles
	if !r.verbose {
		return sim.Run(p, nil)
	}
	fmt.Println(p)
	res := sim.Run(p, os.Stdout)
	s := res.Stats
	fmt.Printf("seed=%d digest=%016x events=%d chosen=%d acked=%d/%d crashes=%d partitions=%d campaigns=%d preempted=%d lease-reads=%d log-reads=%d converged=%v heal=%dus\n",
		seed, res.Digest, res.Events, s.ChosenSlots, s.Acked, s.Proposed, s.Crashes, s.Partitions, s.Campaigns, s.Preempted, s.LeaseReads, s.LogReads, s.Converged, s.HealUs)
	for _, v := range res.Violations {
		fmt.Println("VIOLATION", v)
	}
	return res
}

// canary runs seeds with a planted bug until one catches it, returning that seed.
func (r runner) canary(start uint64, budget int, m sim.Canary) (uint64, bool) {
	quiet := r
	quiet.verbose = false
	const batch = 16
	for from := start; from < start+uint64(budget); from += batch {
		n := min(batch, int(start+uint64(budget)-from))
		found := make([]bool, n)
		var wg sync.WaitGroup
		sem := make(chan struct{}, r.workers)
		for i := range n {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				found[i] = quiet.one(from+uint64(i), m).Failed()
			}()
		}
		wg.Wait()
		for i, f := range found {
			if f {
				return from + uint64(i), true
			}
		}
	}
	return 0, false
}

// canaryRates runs every canary on n seeds, twice: with every checker, and without the oracles that
// look inside replicas (so only what clients, the durable state and the protocol's messages show
// can catch it). Per canary it prints how many seeds catch it, the first that does, and how often
// each checker was the first to fire. It reports false when a canary is never caught.
func (r runner) canaryRates(start uint64, n int) bool {
	all := true
	for _, m := range sim.Canaries() {
		with := r.rate(start, n, m, false)
		without := r.rate(start, n, m, true)
		if with.count == 0 {
			all = false
			fmt.Printf("canary %-30s NOT CAUGHT in %d seeds\n", m.Name(), n)
			continue
		}
		fmt.Printf("canary %-30s first seed %-4d caught by %3d of %d seeds (%3d without oracles); first checker:%s; without oracles:%s\n",
			m.Name(), with.first, with.count, n, without.count, with.kinds, without.kinds)
	}
	return all
}

type rateResult struct {
	count int
	first uint64
	kinds string
}

func (r runner) rate(start uint64, n int, m sim.Canary, noOracles bool) rateResult {
	quiet := r
	quiet.verbose, quiet.noOracles = false, noOracles
	caught := make([]bool, n)
	kinds := make([]string, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range r.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				if res := quiet.one(start+uint64(i), m); res.Failed() {
					caught[i], kinds[i] = true, res.Kinds[0]
				}
			}
		}()
	}
	wg.Wait()
	var out rateResult
	byKind := map[string]int{}
	for i, c := range caught {
		if c {
			if out.count == 0 {
				out.first = start + uint64(i)
			}
			out.count++
			byKind[kinds[i]]++
		}
	}
	names := make([]string, 0, len(byKind))
	for k := range byKind {
		names = append(names, k)
	}
	sort.Slice(names, func(i, j int) bool {
		return byKind[names[i]] > byKind[names[j]] || byKind[names[i]] == byKind[names[j]] && names[i] < names[j]
	})
	for _, k := range names {
		out.kinds += fmt.Sprintf(" %s=%d", k, byKind[k])
	}
	if out.kinds == "" {
		out.kinds = " -"
	}
	return out
}
