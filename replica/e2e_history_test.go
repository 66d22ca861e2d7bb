package replica_test

import (
	"math"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/sofadb/sofadb/kv"
	"github.com/sofadb/sofadb/loadgen/lincheck"
)

// kvInput is one client operation of a checked history. Values are unique per write, so a read
// names the one write it saw.
type kvInput struct {
	Op         kv.Op
	Key, Value string
}

// kvOutput is what a get returned; puts and deletes return nothing the model checks.
type kvOutput struct {
	Found bool
	Value string
}

// never is the return time of a write whose outcome the client could not learn (timeout, lost
// connection, Unavailable): it may take effect at any point after its call, or not at all.
const never = math.MaxInt64

// history records operations from many client goroutines against one clock, as lincheck records:
// the load generator's linearizability checker (loadgen/lincheck) checks both.
type history struct {
	t0 time.Time

	mu      sync.Mutex
	recs    []lincheck.Record
	unknown int // writes whose outcome is unknown (they may take effect at any later time)
	dropped int // failed reads and writes known not to have been applied
}

func newHistory() *history { return &history{t0: time.Now()} }

// now is the time since the history began, in nanoseconds (monotonic).
func (h *history) now() int64 { return int64(time.Since(h.t0)) }

func record(client int, in kvInput, call, ret int64) lincheck.Record {
	return lincheck.Record{Worker: client, Op: in.Op.String(), Key: in.Key, Value: in.Value, CallNs: call, ReturnNs: ret}
}

// done records an operation that completed with a definite outcome.
func (h *history) done(client int, in kvInput, call, ret int64, out kvOutput) {
	r := record(client, in, call, ret)
	r.Class, r.Found, r.Output = "ok", out.Found, out.Value
	if in.Op == kv.OpGet && !out.Found {
		r.Class = "not_found"
	}
	h.mu.Lock()
	h.recs = append(h.recs, r)
	h.mu.Unlock()
}

// maybe records a write whose outcome is unknown; a read whose outcome is unknown is dropped, since
// it changed nothing.
func (h *history) maybe(client int, in kvInput, call int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if in.Op == kv.OpGet {
		h.dropped++
		return
	}
	h.unknown++
	r := record(client, in, call, never)
	r.Class, r.Unknown = "unknown", true
	h.recs = append(h.recs, r)
}

// notApplied drops an operation the server said it did not do (Busy).
func (h *history) notApplied() {
	h.mu.Lock()
	h.dropped++
	h.mu.Unlock()
}

// firstWriteAfter is the return time of the first acknowledged write called after t (never if
// none): how long a leader failure kept writes from being acknowledged.
func (h *history) firstWriteAfter(t int64) int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	first := int64(never)
	for _, r := range h.recs {
		if r.Op != "get" && !r.Unknown && r.CallNs > t && r.ReturnNs < first {
			first = r.ReturnNs
		}
	}
	return first
}

// check runs porcupine (through lincheck, from an empty store) with a time budget and fails the test
// on Illegal and on Unknown (a check that ran out of time proved nothing). On Illegal it writes
// porcupine's visualization to vizPath.
func (h *history) check(t *testing.T, timeout time.Duration, vizPath string) {
	t.Helper()
	h.mu.Lock()
	recs := append([]lincheck.Record(nil), h.recs...)
	h.mu.Unlock()
	start := time.Now()
	res, info := lincheck.CheckVerbose(lincheck.EmptyModel, recs, timeout)
	t.Logf("porcupine: %d operations (%d with unknown outcome, %d dropped): %v in %v",
		len(recs), h.unknown, h.dropped, res, time.Since(start).Round(time.Millisecond))
	switch res {
	case porcupine.Ok:
	case porcupine.Illegal:
		if vizPath != "" {
			if err := porcupine.VisualizePath(lincheck.EmptyModel, info, vizPath); err == nil {
				t.Logf("porcupine visualization: %s", vizPath)
			}
		}
		t.Fatalf("history is not linearizable")
	default:
		t.Fatalf("linearizability check inconclusive (%v) after %v: treat as a failure", res, timeout)
	}
}
