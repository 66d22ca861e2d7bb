package loadgen

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sofadb/sofadb/kv"
)

// batchCallsMax bounds how many due calls the dispatcher hands a worker at once. Batches cut the
// channel traffic from one send per call to one per wake-up; the bound keeps one worker from taking
// a whole burst while another idles.
const batchCallsMax = 128

// batchQueuePerWorker sizes the dispatcher-to-workers queue. With sub-millisecond wake-ups a batch
// holds only a few calls, so the queue must cover a worker descheduled for a few milliseconds by a
// busy machine (the first version, 4 per worker, blocked the dispatcher several times a run at 10k
// ops/s); the in-flight bound, not this queue, limits what is outstanding.
const batchQueuePerWorker = 64

// drainGrace is how long after the last timeout the run waits for answers before calling the
// remaining calls lost. Targets time calls out themselves, so only a broken target gets this far.
const drainGrace = time.Second

// run is the state of one Run. Fields written once before the goroutines start are read freely;
// the rest say who owns them.
type run struct {
	cfg    *Config
	clock  *Clock
	target Target
	plan   *Plan // the dispatcher's

	t0Ns, measureFromNs, measureToNs int64 // absolute clock readings
	wallStart                        time.Time

	batches     chan []*Call // dispatcher -> workers, bounded
	workers     []*worker
	maxInflight int64

	// inflight counts calls dispatched and not yet recorded. Only the dispatcher increments it;
	// workers decrement it and, when they take it from the bound to one below, post on slotFreed
	// (capacity 1), so the dispatcher waiting for a slot cannot miss its wake-up.
	inflight      atomic.Int64
	slotFreed     chan struct{}
	inflightHits  atomic.Int64 // calls that waited for a slot held by calls at the target
	queueFullHits atomic.Int64 // waits caused by workers behind: a full queue, or slots held by it
	queued        atomic.Int64 // calls handed to the workers' queue and not yet taken
	peakInflight  atomic.Int64

	// dispatchOver is closed at the dispatch deadline: the end of the measured window plus MaxLagP99.
	// A step due before the window's end is still sent until then (late, which its lag records);
	// one that could only go out later would break the lag threshold anyway, so it is counted as
	// unsent instead of stretching the run.
	dispatchOver chan struct{}
	overOnce     sync.Once
	noSuccess    atomic.Pointer[string] // set by the collector when nothing succeeded in the first FailFastAfter
	dispatchToNs int64
	stop         <-chan struct{}

	// Written by the dispatcher, read after it has exited.
	planned, unsent int64

	callPool  sync.Pool
	batchPool sync.Pool
	history   *historyFile
	samples   errorSamples
	out       *outputs // nil without --out

	queueWaitsBase int64        // the target's connection waits before the run (preload)
	preloadSecs    float64      // how long the preload took
	servers        []ServerInfo // the replicas' /status, read before the run
	total          *recSet      // the measured window, merged after the workers exit
}

// Run performs one run: connect, optionally preload, wait for the next whole second, offer the
// planned load for warm-up plus duration, drain, and write the results. The summary says whether the
// run is valid; the error is for runs that could not happen at all.
func Run(ctx context.Context, cfg Config) (*Summary, error) {
	cfg.applyDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	r := &run{cfg: &cfg, clock: NewClock(time.Now()), maxInflight: int64(cfg.MaxInflight),
		slotFreed: make(chan struct{}, 1), dispatchOver: make(chan struct{}), stop: ctx.Done()}
	sched, err := NewSchedule(cfg.Arrival, cfg.RateOpsPerSec, cfg.Seed)
	if err != nil {
		return nil, err
	}
	if r.plan, err = NewPlan(sched, cfg.Workload, cfg.Seed); err != nil {
		return nil, err
	}
	if r.target, err = r.newTarget(); err != nil {
		return nil, err
	}
	defer r.target.Close()
	if urls := serverStatusURLs(&cfg); len(urls) > 0 {
		r.servers = fetchServers(ctx, urls, 2*time.Second)
	}
	if cfg.Preload {
		if err := r.preload(ctx); err != nil {
			return nil, err
		}
	}
	if err := r.openOutputs(); err != nil {
		return nil, err
	}
	defer r.closeOutputs()
	r.queueWaitsBase = r.targetQueueWaits()
	r.alignStart()
	if cfg.OnStart != nil {
		cfg.OnStart(r.wallStart)
	}
	r.writeLogHeader()
	r.execute(ctx)
	if msg := r.noSuccess.Load(); msg != nil {
		return nil, fmt.Errorf("%w: %s", ErrNoSuccess, *msg)
	}
	sum := r.summarize()
	if ctx.Err() != nil { // rates assume the whole window was run: say it was not
		sum.Valid = false
		sum.InvalidReason = strings.TrimPrefix(sum.InvalidReason+"; interrupted before the end of the run", "; ")
	}
	return sum, r.writeResults(sum)
}

func (r *run) newTarget() (Target, error) {
	if r.cfg.NewTarget != nil {
		return r.cfg.NewTarget(r.clock)
	}
	spec, err := ParseTarget(r.cfg.TargetURL)
	if err != nil {
		return nil, err
	}
	return spec.Open(r.clock, TargetOptions{Connections: r.cfg.Connections, Timeout: r.cfg.Timeout,
		Policy: r.cfg.Policy, MaxInflight: r.cfg.MaxInflight})
}

// alignStart puts the run's zero on the next whole wall-clock second (at least 100 ms away, to start
// the goroutines): the interval log stores its start and base time in whole seconds, so an unaligned
// start would shift every interval on read-back. It also lines the time series up with server logs.
func (r *run) alignStart() {
	wall, now := time.Now(), r.clock.Now()
	aligned := wall.Truncate(time.Second).Add(time.Second)
	if aligned.Sub(wall) < 100*time.Millisecond {
		aligned = aligned.Add(time.Second)
	}
	r.wallStart = aligned
	r.t0Ns = now + int64(aligned.Sub(wall))
	r.measureFromNs = r.t0Ns + int64(r.cfg.Warmup)
	r.measureToNs = r.measureFromNs + int64(r.cfg.Duration)
	r.dispatchToNs = r.measureToNs + int64(r.cfg.MaxLagP99)
}

// execute runs the dispatcher, the workers and the collector to the end of the drain.
// over reports whether dispatch has been ended early (see endDispatch).
func (r *run) over() bool {
	select {
	case <-r.dispatchOver:
		return true
	default:
		return false
	}
}

// endDispatch stops sending: at the dispatch deadline, or early when the run is hopeless.
func (r *run) endDispatch() { r.overOnce.Do(func() { close(r.dispatchOver) }) }

func (r *run) execute(ctx context.Context) {
	r.batches = make(chan []*Call, batchQueuePerWorker*r.cfg.Workers)
	quit := make(chan struct{})
	var wg sync.WaitGroup
	for i := range r.cfg.Workers {
		w := r.newWorker(i)
		r.workers = append(r.workers, w)
		wg.Add(1)
		go func() { defer wg.Done(); w.loop(quit) }()
	}
	workersDone := make(chan struct{})
	go func() { wg.Wait(); close(workersDone) }()
	collected := make(chan struct{})
	go func() { defer close(collected); r.collect(workersDone) }()

	deadline := time.AfterFunc(time.Until(r.clock.At(r.dispatchToNs)), r.endDispatch)
	defer deadline.Stop()
	r.dispatch()

	drain := time.NewTimer(r.cfg.Timeout + drainGrace)
	select {
	case <-workersDone:
	case <-drain.C:
		close(quit)
	case <-ctx.Done():
		close(quit)
	}
	drain.Stop()
	<-workersDone
	<-collected
}

// dispatch walks the plan: every step whose time has come is given an in-flight slot and a call, and
// handed to the workers in batches. It sleeps only when nothing is due, and then once, until the next
// step (see fineSleep): even with a sleep that wakes 70 us late, sleeping per request would cap the
// rate and turn the generator's own overhead into lag. It sends every step due before the end of the measured window, until the
// dispatch deadline; steps still unsent then are counted.
func (r *run) dispatch() {
	defer close(r.batches)
	batch := r.getBatch()
	step := r.shift(r.plan.Next())
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for step.DueNs < r.measureToNs {
		now := r.clock.Now()
		if step.DueNs > now {
			if !r.flush(&batch) || r.sleepUntil(timer, step.DueNs) || r.over() {
				break
			}
			continue
		}
		if now >= r.dispatchToNs || !r.acquireSlot(&batch) {
			break
		}
		batch = append(batch, r.newCall(step))
		if len(batch) == batchCallsMax && !r.flush(&batch) {
			break
		}
		step = r.shift(r.plan.Next())
	}
	r.flush(&batch)
	for ; step.DueNs < r.measureToNs; step = r.shift(r.plan.Next()) {
		r.unsent++
	}
}

// shift moves a plan step from run-relative to absolute clock time, and counts the steps that fall
// in the measured window: the plan, not rate x duration, is what the achieved rate is judged against.
func (r *run) shift(s Step) Step {
	s.DueNs += r.t0Ns
	if s.DueNs >= r.measureFromNs && s.DueNs < r.measureToNs {
		r.planned++
	}
	return s
}

// fineSleepMax is the longest wait the dispatcher sleeps with fineSleep; a longer one first sleeps on
// a timer (which a stop can interrupt) until this close to the wake-up time.
const fineSleepMax = 2 * time.Millisecond

// sleepUntil sleeps once, until dueNs but at least MinSleep, and reports whether the run was stopped
// meanwhile. MinSleep bounds the dispatcher's wake-ups per second, and so its CPU: each costs a
// syscall and a hand-over of the runtime's P.
func (r *run) sleepUntil(timer *time.Timer, dueNs int64) (stopped bool) {
	now := r.clock.Now()
	if dueNs <= now {
		return false
	}
	wakeNs := max(dueNs, now+int64(r.cfg.MinSleep))
	if d := time.Duration(wakeNs - now); d > fineSleepMax {
		timer.Reset(d - fineSleepMax)
		select {
		case <-timer.C:
		case <-r.stop:
			return true
		}
	}
	if d := time.Duration(wakeNs - r.clock.Now()); d > 0 {
		fineSleep(d)
	}
	select {
	case <-r.stop:
		return true
	default:
		return false
	}
}

// acquireSlot takes an in-flight slot for the next call, waiting when the bound is reached. The wait
// is the point of the bound: the call is sent late, its latency (from the intended time) includes the
// wait, and the hit is counted so the summary can blame the bound rather than the service.
func (r *run) acquireSlot(batch *[]*Call) bool {
	if r.inflight.Load() >= r.maxInflight {
		// Slots held mostly by calls the workers have not even issued mean the workers are behind,
		// not the target: count the wait as theirs, so the summary blames the right part.
		if 2*r.queued.Load() >= r.maxInflight {
			r.queueFullHits.Add(1)
		} else {
			r.inflightHits.Add(1)
		}
		if !r.flush(batch) { // calls that already hold slots go out before we wait
			return false
		}
		for r.inflight.Load() >= r.maxInflight {
			select {
			case <-r.slotFreed:
			case <-r.dispatchOver:
				return false
			case <-r.stop:
				return false
			}
		}
	}
	if n := r.inflight.Add(1); n > r.peakInflight.Load() {
		r.peakInflight.Store(n) // only the dispatcher stores it
	}
	return true
}

// releaseSlot is the workers' half of acquireSlot.
func (r *run) releaseSlot() {
	if r.inflight.Add(-1) == r.maxInflight-1 {
		select {
		case r.slotFreed <- struct{}{}:
		default:
		}
	}
}

// flush hands the batch to a worker, blocking while every worker is busy (which shows as lag).
func (r *run) flush(batch *[]*Call) bool {
	if len(*batch) == 0 {
		return true
	}
	n := int64(len(*batch))
	r.queued.Add(n)
	select {
	case r.batches <- *batch:
	default:
		r.queueFullHits.Add(1)
		select {
		case r.batches <- *batch:
		case <-r.stop:
			r.queued.Add(-n)
			return false
		}
	}
	*batch = r.getBatch()
	return true
}

func (r *run) getBatch() []*Call {
	if b, ok := r.batchPool.Get().(*[]*Call); ok {
		return (*b)[:0]
	}
	return make([]*Call, 0, batchCallsMax)
}

func (r *run) putBatch(b []*Call) {
	clear(b)
	b = b[:0]
	r.batchPool.Put(&b)
}

func (r *run) newCall(s Step) *Call {
	c, _ := r.callPool.Get().(*Call)
	if c == nil {
		c = new(Call)
	}
	c.reset()
	c.Step = s
	return c
}

// inWindow reports whether a call belongs to the summary: it was due inside the measured window.
func (r *run) inWindow(c *Call) bool {
	return c.DueNs >= r.measureFromNs && c.DueNs < r.measureToNs
}

// preloadRounds bounds how often preload retries the keys whose write failed. Preload is setup, not
// measurement, so unlike the run it retries: a first write that meets a follower or a busy leader
// must not fail the run.
const preloadRounds = 5

// preload writes every key once, closed loop and unmeasured, so that a read-heavy run does not
// measure misses. It keeps up to MaxInflight writes outstanding.
func (r *run) preload(ctx context.Context) error {
	keys := make([]uint64, r.cfg.Workload.Keys)
	for i := range keys {
		keys[i] = uint64(i)
	}
	var lastErr error
	start := time.Now()
	for round := range preloadRounds {
		if round > 0 {
			time.Sleep(redialBackoff)
		}
		var err error
		if keys, lastErr, err = r.preloadRound(ctx, keys, round, start); err != nil {
			return err
		}
		if len(keys) == 0 {
			r.preloadSecs = time.Since(start).Seconds()
			if r.cfg.Progress != nil {
				fmt.Fprintf(r.cfg.Progress, "preload: %d keys written in %.1f s (%.0f keys/s)\n", r.cfg.Workload.Keys,
					r.preloadSecs, float64(r.cfg.Workload.Keys)/r.preloadSecs)
			}
			return nil
		}
	}
	return fmt.Errorf("%w: %d of %d keys still failing after %d rounds, last: %v", ErrPreload, len(keys),
		r.cfg.Workload.Keys, preloadRounds, lastErr)
}

// preloadRound writes keys and returns those whose write failed, printing progress once a second.
func (r *run) preloadRound(ctx context.Context, keys []uint64, round int, start time.Time) (failed []uint64, lastErr, err error) {
	w := &r.cfg.Workload
	done := make(chan *Call, r.cfg.MaxInflight)
	filler := makeFiller(r.cfg.Seed)
	outstanding, finished := 0, 0
	nextReport := time.Now().Add(time.Second)
	wait := func() {
		c := <-done
		outstanding--
		finished++
		if !c.Class.Success() {
			failed = append(failed, c.KeyIndex)
			lastErr = fmt.Errorf("%v: %v", c.Class, c.Err)
		}
		if now := time.Now(); r.cfg.Progress != nil && now.After(nextReport) {
			nextReport = now.Add(time.Second)
			fmt.Fprintf(r.cfg.Progress, "preload: round %d, %d/%d keys, %d failed, %.0f s\n",
				round+1, finished, len(keys), len(failed), now.Sub(start).Seconds())
		}
	}
	for _, k := range keys {
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		if outstanding == r.cfg.MaxInflight {
			wait()
		}
		c := &Call{Step: Step{ID: 1<<63 | k, Op: kv.OpPut, KeyIndex: k}}
		c.Key = w.AppendKey(nil, k)
		c.Value = w.AppendValue(nil, c.ID, filler)
		outstanding++
		r.target.Go(c, done)
	}
	for outstanding > 0 {
		wait()
	}
	return failed, lastErr, nil
}

// makeFiller draws the filler that pads values, printable so that history lines stay readable.
func makeFiller(seed uint64) []byte {
	const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	rng := rand.New(rand.NewPCG(seed, 0xf111e7))
	b := make([]byte, 4096)
	for i := range b {
		b[i] = letters[rng.IntN(len(letters))]
	}
	return b
}
