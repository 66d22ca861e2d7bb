package disk

import (
	"errors"
	"fmt"
	"runtime"
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
// in tests. write is called only from the committer's writer goroutine and sync only from its
// syncer goroutine, so one write and one sync may run at the same time.
type backend interface {
	// write applies ops in order as one batch; nothing is durable until a later sync returns nil.
	write(ops []op) error
	// sync makes durable every write that returned before sync was called; writes that run
	// during it may or may not be covered, and the committer never counts on them.
	sync() error
}

// Ticket is the promise a submission gets: it resolves once the record is written and, if the
// record asked for it, synced. Tickets resolve in submission order, so a ticket resolved with nil
// for a record that asked for sync proves every earlier record durable too; the runtime therefore
// only ever waits on its oldest outstanding ticket.
type Ticket struct {
	done chan struct{}
	err  error // written once, before done is closed

	ops       []op // released once written
	mustSync  bool
	sizeBytes int
	refused   error  // set at submission: the record is not written and resolves, in order, with it
	seq       uint64 // submission order, from 1; 0 for a ticket resolved at submission
}

func newTicket(ops []op, mustSync bool, sizeBytes int) *Ticket {
	return &Ticket{done: make(chan struct{}), ops: ops, mustSync: mustSync, sizeBytes: sizeBytes}
}

// Done is closed when the ticket is resolved: select on it beside the network and the tick.
func (t *Ticket) Done() <-chan struct{} { return t.done }

// Err is the ticket's result once Done is closed: nil, or an error wrapping ErrFailed, ErrClosed
// or ErrTooLarge. Before that it returns ErrPending.
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

// committer is the group commit of pebble's record/log_writer.go (many submitters, few fsyncs),
// split in two stages so that a group's badger write overlaps the previous group's fsync:
//
//   - the writer goroutine takes everything queued, writes it as one badger batch and hands the
//     group to the syncer;
//   - the syncer goroutine takes every group written so far, syncs once if any record asks for
//     it, and resolves their tickets in submission order. Only the syncer resolves queued tickets,
//     which is what keeps resolution in order, failures included.
//
// Why two stages: at 64 writers a group's badger write costs about a quarter of its fsync here
// (77 µs against 296 µs), and a single flusher would do both in turn. Interleaved A/B runs on
// the shared 2-core machine, under load, gave a median group-commit/sync-each ratio of 22x with
// the stages against 13x without. One writer and one syncer still mean one write and one fsync
// at a time, and only the syncer resolves tickets.
//
// Concurrency: mu guards the fields under it; ops belongs to the writer, resolvedSeq to the
// syncer, and stats has its own lock. Neither stage holds mu across a write, a sync or a resolve,
// so submitters keep queueing while both stages work.
type committer struct {
	be            backend
	queueMax      int // records queued (not yet taken by the writer) before submit blocks
	queueBytesMax int // bytes queued before submit blocks

	mu           sync.Mutex
	work         sync.Cond // writer waits: queue non-empty or closing
	space        sync.Cond // submitters wait: room in the queue
	writtenCond  sync.Cond // syncer waits for groups; writer waits for room among them
	queue        []*Ticket
	queuedBytes  int
	written      [][]*Ticket // groups written (or skipped after a failure), not yet resolved
	writtenCount int         // records in written
	err          error       // sticky: ErrFailed wrapping the first write or sync error
	closing      bool
	writerDone   bool
	seq          uint64 // last sequence number given to a queued ticket

	ops []op // the writer's reusable batch of ops; owned by the writer goroutine

	// resolvedSeq is the last ticket sequence number resolved. Invariant: the syncer resolves
	// seq == resolvedSeq+1 and nothing else. Owned by the syncer goroutine.
	resolvedSeq uint64

	// Commit delay (see gather), owned by the syncer: the most it waits, how many tickets the last
	// sync resolved, and how long that sync took.
	delayMax     time.Duration
	lastResolved int
	lastSync     time.Duration

	stopped chan struct{} // closed when the syncer, the last stage, exits
	stats   stats
}

func newCommitter(be backend, queueMax, queueBytesMax int, delayMax time.Duration) *committer {
	c := &committer{be: be, queueMax: queueMax, queueBytesMax: queueBytesMax, delayMax: delayMax,
		stopped: make(chan struct{})}
	c.work.L = &c.mu
	c.space.L = &c.mu
	c.writtenCond.L = &c.mu
	c.stats.init()
	go c.writeLoop()
	go c.syncLoop()
	return c
}

// submit queues a record and returns its ticket. It blocks while the queue is full (queueMax
// records or queueBytesMax bytes not yet taken by the writer): a full queue means the disk is
// behind, and the caller, which cannot release its replies before the disk catches up anyway, is
// the right thing to slow down. A record larger than queueBytesMax is admitted when the queue is
// empty. After a failure the queue drains without writing, so submit never blocks for long; the
// ticket resolves, in order, with the sticky error. After close began it resolves at once with
// ErrClosed.
func (c *committer) submit(t *Ticket) *Ticket {
	c.mu.Lock()
	for !c.closing && c.full(t.sizeBytes) {
		c.space.Wait()
	}
	if c.closing {
		c.mu.Unlock()
		t.resolve(ErrClosed)
		return t
	}
	c.seq++
	t.seq = c.seq
	c.queue = append(c.queue, t)
	c.queuedBytes += t.sizeBytes
	if len(c.queue) == 1 {
		c.work.Signal() // the writer sleeps only on an empty queue
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

// writeLoop is the writer stage: it alone calls be.write, one group at a time, in queue order.
func (c *committer) writeLoop() {
	for {
		batch, failed, closing := c.take()
		if len(batch) == 0 && closing {
			c.mu.Lock()
			c.writerDone = true
			c.writtenCond.Signal()
			c.mu.Unlock()
			return
		}
		if failed == nil {
			c.write(batch) // a failure becomes sticky: the syncer fails the group
		}
		c.handOver(batch)
	}
}

// take waits for work and swaps the whole queue out. Records submitted after take returns belong to
// the next group.
func (c *committer) take() (batch []*Ticket, failed error, closing bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.queue) == 0 && !c.closing {
		c.work.Wait()
	}
	batch = c.queue
	c.queue, c.queuedBytes = nil, 0
	c.space.Broadcast()
	return batch, c.err, c.closing
}

// write writes one group's records (not the refused ones) as one batch. A failure becomes sticky at
// once, so the writer writes nothing after it.
func (c *committer) write(batch []*Ticket) {
	c.ops = c.ops[:0]
	for _, t := range batch {
		if t.refused == nil {
			c.ops = append(c.ops, t.ops...)
		}
	}
	err := c.be.write(c.ops)
	clear(c.ops) // drop references to the records' memory
	if err != nil {
		c.setFailure(fmt.Errorf("%w: write: %w", ErrFailed, err))
	}
}

// setFailure makes err the sticky failure unless one is already set.
func (c *committer) setFailure(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.mu.Unlock()
}

// handOver gives a written group to the syncer, waiting while the groups written but not yet
// synced already hold queueMax records: the writer runs at most that far ahead of the fsyncs.
func (c *committer) handOver(batch []*Ticket) {
	c.mu.Lock()
	for c.writtenCount >= c.queueMax {
		c.writtenCond.Wait()
	}
	c.written = append(c.written, batch)
	c.writtenCount += len(batch)
	c.writtenCond.Broadcast()
	c.mu.Unlock()
}

// syncLoop is the syncer stage: it alone calls be.sync and resolves queued tickets.
func (c *committer) syncLoop() {
	defer close(c.stopped)
	for {
		c.gather()
		groups, failed, done := c.takeWritten()
		if len(groups) == 0 && done {
			return
		}
		c.syncAndResolve(groups, failed)
	}
}

// busyResolved is how many tickets one sync must have resolved before the syncer waits for their
// writers to come back (gather): below it, the load is light and waiting would only add latency.
const busyResolved = 8

// gather is the commit delay. When a sync ends, the records written during it are ready for the
// next one, but the writers it just released submit again only microseconds later and miss it:
// with N writers each waiting for its previous record, groups alternate between two halves of about
// N/2 (23 records per fsync at 64 writers in the disk benchmarks). After a sync that resolved many
// tickets, gather waits until the records it released are written too, or for the last sync's
// duration (at most delayMax), whichever comes first, so one fsync covers both halves. It yields
// instead of sleeping: Go's timers wake about a millisecond late here, and the goroutines it waits
// for need the CPU. A light load (fewer than busyResolved tickets per sync) never waits.
func (c *committer) gather() {
	if c.delayMax <= 0 || c.lastResolved < busyResolved {
		return
	}
	c.mu.Lock()
	target := c.writtenCount + c.lastResolved
	c.mu.Unlock()
	deadline := time.Now().Add(min(c.delayMax, c.lastSync))
	for time.Now().Before(deadline) {
		c.mu.Lock()
		enough := c.writtenCount >= target || c.writtenCount >= c.queueMax || c.writerDone || c.err != nil
		c.mu.Unlock()
		if enough {
			return
		}
		runtime.Gosched()
	}
}

// takeWritten waits for written groups and takes them all: one sync will cover every one of them,
// since each was written before the sync is called.
func (c *committer) takeWritten() (groups [][]*Ticket, failed error, done bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.written) == 0 && !c.writerDone {
		c.writtenCond.Wait()
	}
	groups = c.written
	c.written, c.writtenCount = nil, 0
	c.writtenCond.Broadcast()
	return groups, c.err, c.writerDone
}

// syncAndResolve syncs the groups if any record asks for it and resolves every ticket in order. A
// sticky failure (from any write, or this sync) fails every ticket not yet resolved.
func (c *committer) syncAndResolve(groups [][]*Ticket, err error) {
	records, sizeBytes, mustSync := 0, 0, false
	for _, g := range groups {
		records += len(g)
		for _, t := range g {
			if t.refused == nil {
				sizeBytes += t.sizeBytes
				mustSync = mustSync || t.mustSync
			}
		}
	}
	c.lastResolved = 0
	if err == nil && mustSync {
		start := time.Now()
		if err = c.be.sync(); err != nil {
			err = fmt.Errorf("%w: sync: %w", ErrFailed, err)
			c.setFailure(err)
		}
		c.lastSync = time.Since(start)
		c.lastResolved = records
		c.stats.recordSync(c.lastSync, records)
	}
	failures := 0
	for _, g := range groups {
		for _, t := range g {
			if c.resolveInOrder(t, err) != nil {
				failures++
			}
		}
	}
	c.stats.recordGroups(len(groups), records, failures, sizeBytes)
}

// resolveInOrder resolves a queued ticket, asserting the order promise the runtime relies on to
// release promises and accept replies: a broken order would acknowledge a vote before its sync.
func (c *committer) resolveInOrder(t *Ticket, err error) error {
	if t.seq != c.resolvedSeq+1 {
		panic(fmt.Sprintf("disk: resolving ticket %d after ticket %d", t.seq, c.resolvedSeq))
	}
	c.resolvedSeq = t.seq
	if err == nil {
		err = t.refused
	}
	t.resolve(err)
	return err
}

// failure is the sticky error, or nil while the committer is healthy.
func (c *committer) failure() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// close stops accepting records, lets both stages write and sync what is queued, and waits.
func (c *committer) close() {
	c.mu.Lock()
	c.closing = true
	c.work.Signal()
	c.space.Broadcast()
	c.mu.Unlock()
	<-c.stopped
}
