package replica

import (
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"
)

// refusalLog logs refused and closed connections at a bounded rate: in each interval the first
// connection refused for a given reason is logged whole (so every distinct reason is seen at once,
// up to linesMax of them), and the rest are counted and summed up in one line when the interval
// ends. A flood of bad connections (1,000 a second wrote 230 KB/s of WARN lines, which fills a
// disk) costs at most linesMax+1 lines per interval. The counters in /metrics count every one.
// Safe for concurrent use.
type refusalLog struct {
	log      *slog.Logger
	interval time.Duration

	mu     sync.Mutex
	start  time.Time
	seen   map[string]bool // kind+reason logged this interval
	counts map[string]int  // kind -> refusals this interval not logged
}

// refusalLinesMax bounds the lines one refusalLog writes per interval, its summary aside.
const refusalLinesMax = 20

func newRefusalLog(log *slog.Logger, interval time.Duration) *refusalLog {
	return &refusalLog{log: log, interval: interval, seen: map[string]bool{}, counts: map[string]int{}}
}

// refuse logs (or counts) one refusal: what happened (kind), to whom, and why.
func (l *refusalLog) refuse(kind, remote, reason string) {
	l.mu.Lock()
	summary := l.rollLocked(time.Now())
	key := kind + "\x00" + reason
	write := !l.seen[key] && len(l.seen) < refusalLinesMax
	if write {
		l.seen[key] = true
	} else {
		l.counts[kind]++
	}
	l.mu.Unlock()
	if summary != "" {
		l.log.Warn(summary)
	}
	if write {
		l.log.Warn(kind, "remote", remote, "reason", reason)
	}
}

// rollLocked ends the interval if it is over, returning the summary line of what it did not log.
func (l *refusalLog) rollLocked(now time.Time) string {
	if now.Sub(l.start) < l.interval {
		return ""
	}
	var parts []string
	for kind, n := range l.counts {
		parts = append(parts, fmt.Sprintf("%s: %d more", kind, n))
	}
	l.start = now
	clear(l.counts)
	clear(l.seen)
	if len(parts) == 0 {
		return ""
	}
	sort.Strings(parts)
	return fmt.Sprintf("refusals in the last %s not logged one by one (see /metrics): %s", l.interval, strings.Join(parts, "; "))
}

// flush writes the summary of the interval under way once it is over (the loop calls it every
// tick, so a burst's summary does not wait for the next refusal).
func (l *refusalLog) flush() {
	l.mu.Lock()
	summary := l.rollLocked(time.Now())
	l.mu.Unlock()
	if summary != "" {
		l.log.Warn(summary)
	}
}
