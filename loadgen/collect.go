package loadgen

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// collect is the collector goroutine: at every interval boundary it takes each worker's interval
// set (handing it an empty one in exchange, so the worker never waits for a merge), merges them, and
// writes the interval log, the time series and, once a second, the progress line. It ends with the
// interval in which the last worker exits.
func (r *run) collect(workersDone <-chan struct{}) {
	iv, prog := new(recSet), new(recSet)
	var spare []*recSet
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	progStartNs := r.t0Ns
	var lastHits int64
	var okSoFar, failedSoFar int64
	for k := int64(0); ; k++ {
		startNs := r.t0Ns + k*int64(r.cfg.Interval)
		endNs := startNs + int64(r.cfg.Interval)
		final := r.waitBoundary(timer, endNs, workersDone)
		if final {
			endNs = max(r.clock.Now(), startNs+1)
		}
		spare = r.gather(iv, spare)
		hits := r.inflightHits.Load()
		r.emitInterval(startNs, endNs, iv, hits-lastHits)
		lastHits = hits
		prog.merge(iv)
		if r.cfg.FailFastAfter > 0 && okSoFar >= 0 {
			ok, failed := iv.outcomes()
			okSoFar, failedSoFar = okSoFar+ok, failedSoFar+failed
			if okSoFar > 0 {
				okSoFar = -1 // something succeeded: never check again
			} else if failedSoFar > 0 && endNs-r.t0Ns >= int64(r.cfg.FailFastAfter) {
				msg := fmt.Sprintf("no request succeeded in the first %v (%d failed): %s", r.cfg.FailFastAfter, failedSoFar, r.samples.first())
				r.noSuccess.Store(&msg)
				r.endDispatch()
			}
		}
		if final || endNs-progStartNs >= int64(time.Second) {
			r.printProgress(prog, progStartNs, endNs)
			prog.reset()
			progStartNs = endNs
		}
		iv.reset()
		if final {
			return
		}
	}
}

// waitBoundary sleeps until the clock reaches endNs and reports whether the workers finished first.
func (r *run) waitBoundary(timer *time.Timer, endNs int64, workersDone <-chan struct{}) (final bool) {
	if d := time.Duration(endNs - r.clock.Now()); d > 0 {
		timer.Reset(d)
		select {
		case <-timer.C:
		case <-workersDone:
			return true
		}
	}
	select {
	case <-workersDone:
		return true
	default:
		return false
	}
}

// gather moves every worker's interval set into iv. A worker that has exited no longer swaps: its
// last set is read directly, which is safe because its exit (closing exited) happens after its last
// write.
func (r *run) gather(iv *recSet, spare []*recSet) []*recSet {
	for _, w := range r.workers {
		var fresh *recSet
		if n := len(spare); n > 0 {
			fresh, spare = spare[n-1], spare[:n-1]
		} else {
			fresh = new(recSet)
		}
		select {
		case w.swap <- fresh:
			old := <-w.out
			iv.merge(old)
			old.reset()
			spare = append(spare, old)
		case <-w.exited:
			iv.merge(w.cur)
			w.cur.reset()
			spare = append(spare, fresh)
		}
	}
	return spare
}

// phaseOf names the part of the run an interval starting at startNs belongs to.
func (r *run) phaseOf(startNs int64) string {
	switch {
	case startNs < r.measureFromNs:
		return "warmup"
	case startNs < r.measureToNs:
		return "measure"
	}
	return "drain"
}

// printProgress writes one line about the calls completed between fromNs and toNs.
func (r *run) printProgress(s *recSet, fromNs, toNs int64) {
	if r.cfg.Progress == nil {
		return
	}
	secs := float64(toNs-fromNs) / 1e9
	var issued int64
	for i := range s.ops {
		issued += s.ops[i].issued
	}
	ok, failed := s.completed()
	p50, p99 := "-", "-"
	if all := s.allLatency(); all != nil {
		p50, p99 = fmtMs(all.ValueAtQuantile(50)), fmtMs(all.ValueAtQuantile(99))
	}
	lag := "-"
	if s.lag != nil && s.lag.TotalCount() > 0 {
		lag = fmtMs(s.lag.ValueAtQuantile(99))
	}
	fmt.Fprintf(r.cfg.Progress, "%6.1fs %-7s target %.0f/s  sent %.0f/s  ok %.0f/s  err %d  p50 %s  p99 %s  lag p99 %s  in flight %d\n",
		float64(toNs-r.t0Ns)/1e9, r.phaseOf(fromNs), r.cfg.RateOpsPerSec, float64(issued)/secs,
		float64(ok)/secs, failed, p50, p99, lag, r.inflight.Load())
}

func fmtMs(ns int64) string { return fmt.Sprintf("%.2fms", float64(ns)/1e6) }

// errorSamples keeps the first error message of each class, so a run that failed says why without
// logging every failure. The bitmask keeps the common case (class already sampled) lock-free.
type errorSamples struct {
	seen atomic.Uint32
	mu   sync.Mutex
	msgs map[string]string
}

// first is one error message and its class, for a one-line diagnosis.
func (e *errorSamples) first() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	for class, msg := range e.msgs {
		return class + ": " + msg
	}
	return "(no detail)"
}

func (e *errorSamples) note(c *Call) {
	bit := uint32(1) << c.Class
	if e.seen.Load()&bit != 0 {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.seen.Load()&bit != 0 {
		return
	}
	e.seen.Store(e.seen.Load() | bit)
	if e.msgs == nil {
		e.msgs = make(map[string]string)
	}
	msg := "(no detail)"
	if c.Err != nil {
		msg = c.Err.Error()
	}
	e.msgs[c.Class.String()] = msg
}

func (e *errorSamples) snapshot() map[string]string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[string]string, len(e.msgs))
	for k, v := range e.msgs {
		out[k] = v
	}
	return out
}
