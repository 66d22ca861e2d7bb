package disk

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrFailed is wrapped by every error of a store whose write or sync failed. The failure is
// permanent: after an fsync error the kernel may have dropped the dirty pages it could not write
// ("fsyncgate"), so a retry that succeeds would still not prove the earlier data durable. The only
// honest reaction is to stop acknowledging anything and let the replica restart from what is on disk.
var ErrFailed = errors.New("disk: store failed")

// ErrClosed is the result of every ticket submitted after Close began.
var ErrClosed = errors.New("disk: store closed")

// ErrPending is what Ticket.Err returns before the ticket is resolved, so that a caller that forgot
// to wait cannot mistake "not yet" for success.
var ErrPending = errors.New("disk: ticket not resolved yet")

// op is one key write of a record: a set, or a delete when del is true. key and value point into
// memory the record owns until its ticket resolves.
type op struct {
	key, value []byte
	del        bool
}

// backend is what the group committer writes through: badger in production, a fault-injecting fake
// in tests. Both methods are called from the flusher goroutine only, one call at a time.
type backend interface {
	// write applies ops in order as one batch; nothing is durable until a later sync returns nil.
	write(ops []op) error
	// sync makes every write that returned before it durable.
	sync() error
}

// Ticket is the promise a submission gets: it resolves once the record is written and, if the
// record asked for it, synced. Tickets resolve in submission order, so a resolved ticket of a record
// that asked for sync proves every earlier record durable too; the runtime therefore only ever
// waits on its oldest outstanding ticket.
type Ticket struct {
	done chan struct{}
	err  error // written once, before done is closed

	ops       []op // released by the flusher once written
	mustSync  bool
	sizeBytes int
	seq       uint64 // submission order, from 1; 0 for a ticket refused at submission
}

func newTicket(ops []op, mustSync bool, sizeBytes int) *Ticket {
	return &Ticket{done: make(chan struct{}), ops: ops, mustSync: mustSync, sizeBytes: sizeBytes}
}

// Done is closed when the ticket is resolved: select on it beside the network and the tick.
func (t *Ticket) Done() <-chan struct{} { return t.done }

// Err is the ticket's result once Done is closed: nil, or an error wrapping ErrFailed or ErrClosed.
// Before that it returns ErrPending.
func (t *Ticket) Err() error {
	select {
	case <-t.done:
		return t.err
	default:
		return ErrPending
	}
}

// Wait blocks until the ticket resolves and returns its result; for callers with nothing else to do.
func (t *Ticket) Wait() error {
	<-t.done
	return t.err
}

func (t *Ticket) resolve(err error) {
	t.err = err
	t.ops = nil
	close(t.done)
}

// committer is the group commit of pebble's record/log_writer.go: many submitters, one flusher, one
// fsync. Submitters append to a bounded queue; the flusher takes everything queued at once, writes it
// as one batch, syncs once if any record asks for it, and resolves the batch's tickets in order.
//
// Concurrency: mu guards the queue, the sticky error and the closing flag. The flusher holds mu only
// to swap the queue out, never across a write or a sync, so submitters keep queueing (the next
// group) while a sync is in flight. stats has its own lock (see stats.go).
type committer struct {
	be            backend
	queueMax      int // records queued (not yet taken by the flusher) before submit blocks
	queueBytesMax int // bytes queued before submit blocks

	mu          sync.Mutex
	work        sync.Cond // signalled when the queue becomes non-empty or closing is set
	space       sync.Cond // broadcast when the flusher empties the queue or the store fails
	queue       []*Ticket
	queuedBytes int
	err         error // sticky: ErrFailed wrapping the first write or sync error
	closing     bool
	seq         uint64 // last sequence number given to a queued ticket

	// resolvedSeq is the last ticket sequence number resolved. Invariant: the flusher resolves
	// seq == resolvedSeq+1 and nothing else; owned by the flusher goroutine.
	resolvedSeq uint64

	spare   []*Ticket // the flusher's second queue buffer, swapped with queue on each take
	ops     []op      // the flusher's reusable batch of ops
	stopped chan struct{}
	stats   stats
}

func newCommitter(be backend, queueMax, queueBytesMax int) *committer {
	c := &committer{be: be, queueMax: queueMax, queueBytesMax: queueBytesMax,
		stopped: make(chan struct{})}
	c.work.L = &c.mu
	c.space.L = &c.mu
	c.stats.init()
	go c.run()
	return c
}

// submit queues a record and returns its ticket. It blocks while the queue is full (queueMax
// records or queueBytesMax bytes not yet taken by the flusher): a full queue means the disk is
// behind, and the caller, which cannot release its replies before the disk catches up anyway, is
// the right thing to slow down. It never blocks forever: a failed or closing committer resolves the
// ticket at once. A record larger than queueBytesMax is admitted when the queue is empty.
func (c *committer) submit(t *Ticket) *Ticket {
	c.mu.Lock()
	for c.err == nil && !c.closing && c.full(t.sizeBytes) {
		c.space.Wait()
	}
	switch {
	case c.err != nil:
		c.mu.Unlock()
		t.resolve(c.err)
		return t
	case c.closing:
		c.mu.Unlock()
		t.resolve(ErrClosed)
		return t
	}
	c.seq++
	t.seq = c.seq
	c.queue = append(c.queue, t)
	c.queuedBytes += t.sizeBytes
	if len(c.queue) == 1 {
		c.work.Signal() // the flusher sleeps only on an empty queue
	}
	c.mu.Unlock()
	return t
}

func (c *committer) full(sizeBytes int) bool {
	if len(c.queue) == 0 {
		return false
	}
	return len(c.queue) >= c.queueMax || c.queuedBytes+sizeBytes > c.queueBytesMax
}

// run is the flusher goroutine: it alone calls the backend, so writes and syncs never overlap and a
// sync covers exactly the writes that returned before it.
func (c *committer) run() {
	defer close(c.stopped)
	for {
		batch, closing := c.take()
		if len(batch) > 0 {
			c.flush(batch)
		}
		if closing && len(batch) == 0 {
			return
		}
	}
}

// take waits for work and swaps the whole queue out. Records submitted after take returns belong to
// the next group, so a sync never acknowledges a record it might not cover.
func (c *committer) take() (batch []*Ticket, closing bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.queue) == 0 && !c.closing && c.err == nil {
		c.work.Wait()
	}
	batch = c.queue
	c.queue, c.spare = c.spare[:0], nil
	c.queuedBytes = 0
	c.space.Broadcast()
	return batch, c.closing || c.err != nil
}

// flush writes one group, syncs it if asked, and resolves its tickets in submission order.
func (c *committer) flush(batch []*Ticket) {
	c.ops = c.ops[:0]
	mustSync, sizeBytes := false, 0
	for _, t := range batch {
		c.ops = append(c.ops, t.ops...)
		mustSync = mustSync || t.mustSync
		sizeBytes += t.sizeBytes
	}
	err := c.be.write(c.ops)
	if err != nil {
		err = fmt.Errorf("%w: write: %w", ErrFailed, err)
	} else if mustSync {
		start := time.Now()
		if err = c.be.sync(); err != nil {
			err = fmt.Errorf("%w: sync: %w", ErrFailed, err)
		}
		c.stats.recordSync(time.Since(start), len(batch))
	}
	clear(c.ops) // drop references to the records' memory
	c.stats.recordBatch(len(batch), sizeBytes, err != nil)
	for _, t := range batch {
		c.resolveInOrder(t, err)
	}
	clear(batch)
	c.mu.Lock()
	c.spare = batch[:0]
	if err != nil {
		c.failLocked(err)
	}
	c.mu.Unlock()
}

// failLocked makes err sticky and fails, in order, every ticket queued behind the failed group. It
// runs after the failed group's own tickets are resolved and under mu, so no ticket submitted later
// can resolve before an earlier one: resolution stays in submission order even on failure.
func (c *committer) failLocked(err error) {
	c.err = err
	for _, t := range c.queue {
		c.resolveInOrder(t, err)
	}
	clear(c.queue)
	c.queue, c.queuedBytes = c.queue[:0], 0
	c.work.Signal()
	c.space.Broadcast()
}

// resolveInOrder resolves a queued ticket, asserting the order promise the runtime relies on to
// release promises and accept replies: a broken order would acknowledge a vote before its sync.
func (c *committer) resolveInOrder(t *Ticket, err error) {
	if t.seq != c.resolvedSeq+1 {
		panic(fmt.Sprintf("disk: resolving ticket %d after ticket %d", t.seq, c.resolvedSeq))
	}
	c.resolvedSeq = t.seq
	t.resolve(err)
}

// failure is the sticky error, or nil while the committer is healthy.
func (c *committer) failure() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// close stops accepting records, lets the flusher write and sync what is queued, and waits for it.
func (c *committer) close() {
	c.mu.Lock()
	c.closing = true
	c.work.Signal()
	c.space.Broadcast()
	c.mu.Unlock()
	<-c.stopped
}
