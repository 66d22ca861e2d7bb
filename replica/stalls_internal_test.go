package replica

import (
	"bytes"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestLoopWatchLogsStallsBoundedly: wake-ups and ticks shorter than half an election timeout are
// only counted; a longer one is logged at once, the others within stallInterval are summed up in
// one line when the next interval starts, and every observation lands in its histogram.
func TestLoopWatchLogsStallsBoundedly(t *testing.T) {
	var buf bytes.Buffer
	w := newLoopWatch(slog.New(slog.NewTextHandler(&buf, nil)), 10*time.Millisecond, 10) // stalls from 50 ms
	t0 := time.Unix(1000, 0)
	w.ticked(t0)
	w.ticked(t0.Add(12 * time.Millisecond))            // 2 ms late: counted, not logged
	w.worked(wakePeer, t0, t0.Add(3*time.Millisecond)) // short work
	if buf.Len() != 0 {
		t.Fatalf("logged a short wake-up: %s", buf.String())
	}
	w.worked(wakePeer, t0, t0.Add(80*time.Millisecond)) // a stall: logged at once
	for i := range 100 {                                // a storm of them: counted, not logged
		at := t0.Add(time.Duration(i+2) * 50 * time.Millisecond)
		w.ticked(at.Add(-30 * time.Millisecond)) // 40 ms late: under the bound
		w.worked(wakeRequest, at, at.Add(time.Duration(60+i)*time.Millisecond))
	}
	later := t0.Add(time.Minute)
	w.worked(wakeTick, later, later.Add(70*time.Millisecond))
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("want 3 lines (first stall, summary, next stall), got %d:\n%s", len(lines), buf.String())
	}
	if !strings.Contains(lines[0], "handling peer input") || !strings.Contains(lines[0], "for=80ms") {
		t.Errorf("first line: %s", lines[0])
	}
	if !strings.Contains(lines[1], "stalled 100 more times") || !strings.Contains(lines[1], "159ms (handling request input)") {
		t.Errorf("summary line: %s", lines[1])
	}
	if got := sum(w.work[wakeRequest].Buckets[:]); got != 100 {
		t.Errorf("request wake-ups counted %d, want 100", got)
	}
	if got := sum(w.tickLate.Buckets[:]); got != 101 {
		t.Errorf("tick lateness counted %d, want 101", got)
	}
}

func sum(bs []atomic.Uint64) uint64 {
	var n uint64
	for i := range bs {
		n += bs[i].Load()
	}
	return n
}
