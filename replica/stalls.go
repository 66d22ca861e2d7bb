package replica

import (
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/sofadb/sofadb/driver"
)

// What woke the loop: each kind of wake-up has its own work histogram.
const (
	wakeTick = iota
	wakePeer
	wakeRequest
	wakeDurable
	wakeBackground
	wakeKinds
)

var wakeNames = [wakeKinds]string{"tick", "peer", "request", "durable", "background"}

// stallInterval is how often at most the loop logs that it stalled.
const stallInterval = 10 * time.Second

// loopWatch measures the loop, which is what keeps a replica in the cluster: how long each
// wake-up's work took, by what woke it, and how late the ticker's wake-ups came (a late tick is a
// loop that was busy, descheduled or stopped by the garbage collector). A follower whose loop
// stalls past the election timeout stops hearing its leader; a leader whose loop stalls stops
// heartbeating. Both are exported in /metrics, and a stall longer than half an election timeout is
// logged, at most once per stallInterval with a count of the others.
type loopWatch struct {
	work     [wakeKinds]driver.LatencyHistogram
	tickLate driver.LatencyHistogram
	lastTick time.Time
	tick     time.Duration
	warn     time.Duration // a stall at least this long is logged

	log    *slog.Logger
	mu     sync.Mutex // the loop writes, a test may read
	since  time.Time  // start of the logging interval
	stalls int        // stalls in this interval
	worst  time.Duration
	what   string
}

func newLoopWatch(log *slog.Logger, tick time.Duration, electionTicks int) *loopWatch {
	return &loopWatch{log: log, tick: tick, warn: tick * time.Duration(electionTicks) / 2}
}

// ticked notes a ticker wake-up at now: anything later than one tick after the previous one is
// lateness.
func (w *loopWatch) ticked(now time.Time) {
	if !w.lastTick.IsZero() {
		late := now.Sub(w.lastTick) - w.tick
		w.tickLate.Observe(int64(late))
		if late >= w.warn {
			w.stalled(now, late, "the ticker woke late")
		}
	}
	w.lastTick = now
}

// worked notes a wake-up of the given kind that started at start and ended at now.
func (w *loopWatch) worked(kind int, start, now time.Time) {
	d := now.Sub(start)
	w.work[kind].Observe(int64(d))
	if d >= w.warn {
		w.stalled(now, d, "handling "+wakeNames[kind]+" input")
	}
}

func (w *loopWatch) stalled(now time.Time, d time.Duration, what string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stalls > 0 && now.Sub(w.since) < stallInterval {
		w.stalls++
		if d > w.worst {
			w.worst, w.what = d, what
		}
		return
	}
	if w.stalls > 1 {
		w.log.Warn(fmt.Sprintf("loop stalled %d more times in the last %v, the worst for %v (%s)",
			w.stalls-1, now.Sub(w.since).Round(time.Second), w.worst.Round(time.Millisecond), w.what))
	}
	w.log.Warn("loop stalled: peers may have taken this replica for dead", "for", d.Round(time.Millisecond),
		"while", what, "election_timeout", 2*w.warn)
	w.since, w.stalls, w.worst, w.what = now, 1, 0, ""
}
