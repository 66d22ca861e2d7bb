package loadgen

import (
	"github.com/sofadb/sofadb/kv"
)

// worker issues calls on the target and records their completions. It owns two recSets: cur, the
// current interval's, which the collector swaps for an empty one at every interval boundary, and sum,
// the measured window's, which the collector reads only after the worker has exited. Completions come
// back on done, sized for every call that can be outstanding, so a target never blocks on it.
type worker struct {
	r      *run
	id     int
	done   chan *Call
	swap   chan *recSet // collector -> worker: an empty set to continue with
	out    chan *recSet // worker -> collector: the finished interval (capacity 1)
	exited chan struct{}

	cur, sum    *recSet
	ended       *recSet // calls that completed inside the measured window, whenever they were due
	outstanding int
	filler      []byte
	hist        []byte // history lines not yet written
}

func (r *run) newWorker(id int) *worker {
	return &worker{r: r, id: id, done: make(chan *Call, r.cfg.MaxInflight),
		swap: make(chan *recSet), out: make(chan *recSet, 1), exited: make(chan struct{}),
		cur: new(recSet), sum: new(recSet), ended: new(recSet), filler: makeFiller(r.cfg.Seed)}
}

// loop runs until the dispatcher is done and every call this worker issued has completed, or until
// quit (the drain deadline): calls still outstanding then are lost, and counted as such.
func (w *worker) loop(quit <-chan struct{}) {
	defer close(w.exited)
	defer w.flushHistory()
	batches := w.r.batches
	for batches != nil || w.outstanding > 0 {
		w.drainDone()
		select {
		case b, ok := <-batches:
			if !ok {
				batches = nil
				continue
			}
			w.r.queued.Add(-int64(len(b)))
			for _, c := range b {
				w.issue(c)
			}
			w.r.putBatch(b)
		case c := <-w.done:
			w.complete(c)
		case fresh := <-w.swap:
			w.out <- w.cur
			w.cur = fresh
		case <-quit:
			return
		}
	}
}

// drainDone records every completion already waiting before the worker takes more work: completed
// calls hold in-flight slots until they are recorded, so they go first.
func (w *worker) drainDone() {
	for {
		select {
		case c := <-w.done:
			w.complete(c)
		default:
			return
		}
	}
}

func (w *worker) issue(c *Call) {
	wl := &w.r.cfg.Workload
	c.Key = wl.AppendKey(c.Key[:0], c.KeyIndex)
	if c.Op == kv.OpPut {
		c.Value = wl.AppendValue(c.Value[:0], c.ID, w.filler)
	}
	c.KeepOutput = w.r.history != nil
	w.cur.issued(c)
	if w.r.inWindow(c) {
		w.sum.issued(c)
	}
	w.outstanding++
	w.r.target.Go(c, w.done)
}

func (w *worker) complete(c *Call) {
	w.outstanding--
	w.r.releaseSlot()
	w.cur.record(c)
	if w.r.inWindow(c) {
		w.sum.record(c)
	}
	if c.DoneNs >= w.r.measureFromNs && c.DoneNs < w.r.measureToNs {
		w.ended.record(c)
	}
	if !c.Class.Success() {
		w.r.samples.note(c)
	}
	if w.r.history != nil {
		w.appendHistory(c)
	}
	w.r.callPool.Put(c)
}
