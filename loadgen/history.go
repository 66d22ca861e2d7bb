package loadgen

import (
	"encoding/json"
	"os"
	"strconv"
	"sync"

	"github.com/sofadb/sofadb/kv"
)

// historyFlushBytes is how much history a worker buffers before writing it out: large enough that
// the file's lock is taken rarely, small enough to bound memory.
const historyFlushBytes = 64 << 10

// historyFile is history.jsonl, shared by the workers: each buffers its own lines and appends them
// whole under the lock, so lines never interleave.
type historyFile struct {
	mu  sync.Mutex
	f   *os.File
	err error
}

func (h *historyFile) write(b []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err == nil {
		_, h.err = h.f.Write(b)
	}
}

// historyIDBytes is how much of a value the history keeps: the write id every value starts with,
// which is all a linearizability checker needs to tell writes apart.
const historyIDBytes = 16

// appendHistory writes one line for a completed call:
//
//	{"id":7,"worker":0,"op":"put","key":"k00042","value":"0000000000000007","call_ns":..,"return_ns":..,"class":"ok","unknown":false}
//
// call_ns is the actual send time and return_ns the completion, both ns after the run's zero. A get
// carries "found" and "output" (the id of the value read). "unknown" marks a mutation whose outcome
// the client cannot know (timeout, broken connection, unavailable): a checker must let it take effect
// at any later time (porcupine: return time math.MaxInt64). Other failed mutations were refused
// (not leader, busy, rejected) and did not happen.
func (w *worker) appendHistory(c *Call) {
	t0 := w.r.t0Ns
	b := append(w.hist, `{"id":`...)
	b = strconv.AppendUint(b, c.ID, 10)
	b = append(b, `,"worker":`...)
	b = strconv.AppendInt(b, int64(w.id), 10)
	b = append(b, `,"op":"`...)
	b = append(b, opNames[c.Op-1]...)
	b = append(b, `","key":"`...)
	b = append(b, c.Key...)
	b = append(b, '"')
	if c.Op == kv.OpPut {
		b = append(b, `,"value":"`...)
		b = append(b, c.Value[:min(len(c.Value), historyIDBytes)]...)
		b = append(b, '"')
	}
	sent := c.SentNs
	if sent == 0 {
		sent = c.DueNs
	}
	b = append(b, `,"call_ns":`...)
	b = strconv.AppendInt(b, sent-t0, 10)
	b = append(b, `,"return_ns":`...)
	b = strconv.AppendInt(b, c.DoneNs-t0, 10)
	b = append(b, `,"class":"`...)
	b = append(b, c.Class.String()...)
	b = append(b, '"')
	if c.Op == kv.OpGet && c.Class.Success() {
		b = append(b, `,"found":`...)
		b = strconv.AppendBool(b, c.Class == ClassOK)
		out, _ := json.Marshal(string(c.Output[:min(len(c.Output), historyIDBytes)]))
		b = append(b, `,"output":`...)
		b = append(b, out...)
	}
	unknown := c.Op.Mutates() && outcomeUnknown(c.Class)
	b = append(b, `,"unknown":`...)
	b = strconv.AppendBool(b, unknown)
	b = append(b, "}\n"...)
	w.hist = b
	if len(w.hist) >= historyFlushBytes {
		w.flushHistory()
	}
}

// outcomeUnknown says whether a failed mutation may still have been applied: nothing came back
// (timeout, connection), or the server said so (unavailable: no quorum, the proposal may still be
// chosen).
func outcomeUnknown(c Class) bool {
	return c == ClassTimeout || c == ClassConnection || c == ClassUnavailable
}

func (w *worker) flushHistory() {
	if w.r.history != nil && len(w.hist) > 0 {
		w.r.history.write(w.hist)
		w.hist = w.hist[:0]
	}
}
