// Command sofachaos runs a local SofaDB cluster through a seeded schedule of network and process
// faults under a concurrent client workload, then checks what it did: the history is linearizable
// (porcupine: Ok only, Illegal and Unknown both fail), every replica applied the same log (digest),
// and a read of every key after the faults healed is part of the same linearizable history.
//
//	go run ./cmd/sofachaos -duration 60s -seed 7          # or: make chaos DURATION=60s SEED=7
//
// Faults, each held for a while and then healed, on a proxied 3- or 5-replica cluster: the leader
// cut off from everyone, the leader deaf (one way), one-way loss out of the leader, a WAN-like delay
// on every link, a chain (two replicas cut from each other), SIGKILL and restart of a random
// replica, and SIGSTOP/SIGCONT pauses of half, one and two election timeouts. The same seed gives
// the same schedule (which faults, when, on whom); what the cluster does under it is its own.
//
// With -power-cycles N it cuts the power instead (make powerloss CYCLES=N SEED=S): each replica's
// data directory is a powerfs mount (FUSE) that keeps only what was fsync'ed, and every 4 s the
// power goes on every replica or on a random majority at once; they are killed, restarted on what
// their disks kept, and the run checks that no acknowledged write is missing from any later read.
// -control runs the replicas with -fsync=false, which must be caught losing writes.
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/sofadb/sofadb/bench/cluster"
	"github.com/sofadb/sofadb/faultproxy"
	"github.com/sofadb/sofadb/kv"
	"github.com/sofadb/sofadb/loadgen"
	"github.com/sofadb/sofadb/loadgen/lincheck"
	"github.com/sofadb/sofadb/loadgen/sofaclient"
	"github.com/sofadb/sofadb/wire"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "sofachaos:", err)
		os.Exit(1)
	}
}

type options struct {
	duration time.Duration
	seed     uint64
	replicas int
	rate     float64
	keys     uint64
	out      string
	// tamper, in tests only, changes the records before they are checked: the checker's canary.
	tamper func([]lincheck.Record)
	// checkTimeout bounds porcupine; 0 means 5 minutes.
	checkTimeout time.Duration
	// power, when above 0, runs that many power-loss cycles instead of the network and process
	// faults (see power.go); cut says whom each cuts, control runs the replicas without fsync.
	power   int
	cut     string
	control bool
}

func run(args []string) error {
	fs := flag.NewFlagSet("sofachaos", flag.ContinueOnError)
	var o options
	fs.DurationVar(&o.duration, "duration", time.Minute, "how long faults are injected (the workload runs as long)")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the fault schedule and of the workload")
	fs.IntVar(&o.replicas, "replicas", 3, "cluster size: 3 or 5")
	fs.Float64Var(&o.rate, "rate", 300, "offered load, ops/s (half reads, half writes of unique values)")
	fs.Uint64Var(&o.keys, "keys", 128, "distinct keys: few, so that operations on one key overlap, but not so many per key that porcupine cannot decide")
	fs.StringVar(&o.out, "out", "", "directory for the history and the workload's results (default: a new temporary one)")
	fs.IntVar(&o.power, "power-cycles", 0, "instead of network and process faults, this many power losses: each replica's data directory on a file system that drops what was not fsync'ed (FUSE; -duration is then the cycles' length)")
	fs.StringVar(&o.cut, "cut", "mixed", "power losses cut: all (every replica at once), majority (a random majority), or mixed (either, at random)")
	fs.BoolVar(&o.control, "control", false, "the control run of -power-cycles: replicas without fsync (-fsync=false), which must be caught losing acknowledged writes")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.replicas != 3 && o.replicas != 5 {
		return fmt.Errorf("-replicas %d: want 3 or 5", o.replicas)
	}
	if o.power > 0 {
		o.duration = time.Duration(o.power)*powerCyclePeriod + 2*time.Second
	}
	if o.duration < 5*time.Second {
		return fmt.Errorf("-duration %v: want at least 5s", o.duration)
	}
	if o.cut != "all" && o.cut != "majority" && o.cut != "mixed" {
		return fmt.Errorf("-cut %q: want all, majority or mixed", o.cut)
	}
	if o.control && o.power == 0 {
		return fmt.Errorf("-control is the control run of -power-cycles: give both")
	}
	if o.out == "" {
		d, err := os.MkdirTemp("", "sofachaos-")
		if err != nil {
			return err
		}
		o.out = d
	}
	res, err := Chaos(o, os.Stderr)
	fmt.Println(res)
	return err
}

// Chaos runs one seeded chaos run and returns its summary; the error says what check failed.
func Chaos(o options, progress *os.File) (summary string, err error) {
	logf := func(format string, a ...any) { fmt.Fprintf(progress, format+"\n", a...) }
	fp := faultproxy.New(o.seed)
	defer fp.Close()
	copts := cluster.Options{N: o.replicas, Faults: fp}
	var disks *powerDisks
	if o.power > 0 {
		if disks, err = newPowerDisks(); err != nil {
			return "", err
		}
		copts.DataDirs = disks
		if o.control {
			copts.Flags = append(copts.Flags, "-fsync=false")
		}
	}
	c, err := cluster.Start(copts)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if _, err := c.WaitLeader(15 * time.Second); err != nil {
		return "", err
	}
	mix, _ := loadgen.ParseMix("ycsb-a")
	cfg := loadgen.Config{TargetURL: "sofa://" + strings.Join(c.ClientAddrs(), ","), RateOpsPerSec: o.rate, Seed: o.seed,
		Duration: o.duration, Workload: loadgen.Workload{Mix: mix, Keys: o.keys, KeyBytes: 16, ValueBytes: 32},
		Connections: 2, Timeout: time.Second, OutDir: filepath.Join(o.out, "workload"), History: true,
		FailFastAfter: -1, MaxLagP99: time.Second, Command: []string{"sofachaos"}}
	t0c := make(chan time.Time, 1)
	cfg.OnStart = func(t0 time.Time) { t0c <- t0 }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	loadDone := make(chan error, 1)
	go func() { _, err := loadgen.Run(ctx, cfg); loadDone <- err }()

	var events map[string]int
	var injectErr error
	if o.power > 0 {
		events, injectErr = powerCycles(c, disks, o, logf)
	} else {
		events = inject(c, fp, o, logf)
	}

	if err := <-loadDone; err != nil {
		return "", fmt.Errorf("workload: %w", err)
	}
	if injectErr != nil {
		c.KeepOnClose()
		return "", injectErr
	}
	// Heal everything and bring every replica back, then check.
	fp.Heal()
	for _, id := range c.IDs() {
		if !c.Running(id) {
			if err := c.Restart(id); err != nil {
				return "", err
			}
		}
	}
	if _, err := c.WaitLeader(30 * time.Second); err != nil {
		return "", fmt.Errorf("after healing: %w", err)
	}
	f, err := os.Open(filepath.Join(cfg.OutDir, "history.jsonl"))
	if err != nil {
		return "", err
	}
	recs, err := lincheck.Read(f)
	f.Close()
	if err != nil {
		return "", err
	}
	final, err := finalReads(c, cfg.Workload, <-t0c)
	if err != nil {
		return "", err
	}
	recs = append(recs, final...)
	if o.tamper != nil {
		o.tamper(recs)
	}
	sts, convErr := c.WaitConverged(30 * time.Second)
	if o.checkTimeout == 0 {
		o.checkTimeout = 5 * time.Minute
	}
	verdict := lincheck.Check(recs, o.checkTimeout)
	appliedTo := uint64(0)
	if len(sts) > 0 {
		appliedTo = sts[0].Applied
	}
	var kinds []string
	kindList := faultKinds
	if o.power > 0 {
		kindList = powerKinds
	}
	for _, k := range kindList {
		kinds = append(kinds, fmt.Sprintf("%s %d", k, events[k]))
	}
	acked, lost := lostWrites(recs)
	summary = fmt.Sprintf("sofachaos: seed %d, %d replicas, %v: faults injected: %s; history %d operations (%d final reads); acknowledged writes %d, lost %d; porcupine: %v; converged: %v (applied %d)",
		o.seed, o.replicas, o.duration, strings.Join(kinds, ", "), len(recs), len(final), acked, len(lost), verdict, convErr == nil, appliedTo)
	if disks != nil {
		summary += "; " + disks.summary()
	}
	switch {
	case len(lost) > 0:
		return summary, fmt.Errorf("%d acknowledged writes lost (a later read of their key returned an older value, or none), first %s; the history is in %s",
			len(lost), lost[0], cfg.OutDir)
	case convErr != nil:
		return summary, convErr
	case verdict != porcupine.Ok:
		return summary, fmt.Errorf("the history is not proven linearizable (%v); it is in %s", verdict, cfg.OutDir)
	}
	return summary, nil
}

// faultKinds are what the schedule draws from, in the order the summary lists them.
var faultKinds = []string{"leader-partition", "leader-deaf", "loss-out-of-leader", "wan-delay", "chain", "kill", "pause"}

// inject runs the seeded fault schedule for o.duration: a fault, held 0.5-2.5 s, healed, a quiet
// 0.5-1.5 s, and again. It returns how many of each kind it injected.
func inject(c *cluster.Cluster, fp *faultproxy.Proxy, o options, logf func(string, ...any)) map[string]int {
	rng := rand.New(rand.NewPCG(o.seed, 0xc4a05))
	events := map[string]int{}
	start := time.Now()
	end := start.Add(o.duration - 2*time.Second) // the last fault heals before the workload ends
	ms := func(lo, hi int) time.Duration { return time.Duration(lo+rng.IntN(hi-lo+1)) * time.Millisecond }
	for time.Now().Before(end) {
		kind := faultKinds[rng.IntN(len(faultKinds))]
		hold := ms(500, 2500)
		victim := c.IDs()[rng.IntN(c.N())]
		other := c.IDs()[rng.IntN(c.N())]
		leader := leaderOf(c, victim)
		events[kind]++
		at := time.Since(start).Round(time.Millisecond)
		var healKill bool
		switch kind {
		case "leader-partition":
			for _, id := range c.IDs() {
				if id != leader {
					fp.SetBoth(leader, id, faultproxy.Faults{Refuse: true})
				}
			}
			logf("%v: cut leader %d from everyone for %v", at, leader, hold)
		case "leader-deaf":
			for _, id := range c.IDs() {
				if id != leader {
					fp.Set(id, leader, faultproxy.Faults{Blackhole: true})
				}
			}
			logf("%v: leader %d hears nobody for %v", at, leader, hold)
		case "loss-out-of-leader":
			for _, id := range c.IDs() {
				if id != leader {
					fp.Set(leader, id, faultproxy.Faults{Loss: 0.3})
				}
			}
			logf("%v: 30%% of leader %d's frames lost for %v", at, leader, hold)
		case "wan-delay":
			for _, a := range c.IDs() {
				for _, b := range c.IDs() {
					if a != b {
						fp.Set(a, b, faultproxy.Faults{Delay: 20 * time.Millisecond, Jitter: 20 * time.Millisecond})
					}
				}
			}
			logf("%v: 20-40 ms one way on every link for %v", at, hold)
		case "chain":
			if other == victim {
				other = victim%c.N() + 1
			}
			fp.SetBoth(victim, other, faultproxy.Faults{Refuse: true})
			logf("%v: %d and %d cut from each other for %v", at, victim, other, hold)
		case "kill":
			if err := c.Kill(victim); err != nil {
				logf("%v: kill %d: %v", at, victim, err)
			}
			healKill = true
			logf("%v: SIGKILL %d, restart in %v", at, victim, hold)
		case "pause":
			hold = []time.Duration{75 * time.Millisecond, 150 * time.Millisecond, 300 * time.Millisecond}[rng.IntN(3)]
			if pid := c.Replica(victim).PID(); pid > 0 {
				syscall.Kill(pid, syscall.SIGSTOP)
				time.Sleep(hold)
				syscall.Kill(pid, syscall.SIGCONT)
			}
			logf("%v: SIGSTOP %d for %v", at, victim, hold)
			hold = 0
		}
		time.Sleep(hold)
		fp.Heal()
		if healKill && !c.Running(victim) {
			if err := c.Restart(victim); err != nil {
				logf("restart %d: %v", victim, err)
			}
		}
		time.Sleep(ms(500, 1500))
	}
	return events
}

// leaderOf is the replica that says it leads, or fallback when none does (mid-election).
func leaderOf(c *cluster.Cluster, fallback int) int {
	for _, id := range c.Live() {
		if st, err := c.Status(id); err == nil && st.Role == "leader" {
			return id
		}
	}
	return fallback
}

// finalReads reads every key once through the leader after the faults healed, as history records
// on the run's clock (t0), so the checker holds them to the same linearizable order.
func finalReads(c *cluster.Cluster, w loadgen.Workload, t0 time.Time) ([]lincheck.Record, error) {
	leader, err := c.WaitLeader(30 * time.Second)
	if err != nil {
		return nil, err
	}
	conn, err := sofaclient.Dial(c.ClientAddr(leader), sofaclient.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	var recs []lincheck.Record
	for i := range w.Keys {
		key := string(w.AppendKey(nil, i))
		call := time.Since(t0).Nanoseconds()
		res, err := conn.Do(context.Background(), kv.OpGet, []byte(key), nil)
		if err != nil {
			return nil, fmt.Errorf("final read of %s: %w", key, err)
		}
		r := lincheck.Record{ID: 1<<62 + i, Worker: 1 << 20, Op: "get", Key: key, CallNs: call, ReturnNs: time.Since(t0).Nanoseconds()}
		switch res.Status {
		case wire.StatusOK:
			r.Class, r.Found, r.Output = "ok", true, string(res.Value[:min(len(res.Value), 16)])
		case wire.StatusNotFound:
			r.Class = "not_found"
		default:
			return nil, fmt.Errorf("final read of %s: %v", key, res.Status)
		}
		recs = append(recs, r)
	}
	return recs, nil
}
