package replica

import (
	"context"
	"time"

	"github.com/sofadb/sofadb/disk"
	"github.com/sofadb/sofadb/paxos"
)

// drainMax bounds how many queued inputs of one kind the loop takes per wake-up, so no input
// starves the others and each wake-up's commands share a Propose (which is what makes batching work).
const drainMax = 1024

// loop is the one goroutine that drives the replica: it waits for inputs (a tick, peer messages,
// client requests, the disk's durable sequence moving, a background job finishing), hands them to
// the driver between Begin and End, then flushes the binary connections' replies. Everything the
// protocol does is in package driver, shared with the simulator; this is only the plumbing.
func (s *Server) loop(ctx context.Context) error {
	d := s.drv
	ticker := time.NewTicker(s.cfg.TickInterval)
	defer ticker.Stop()
	s.publish()
	for {
		kind, start := -1, time.Time{}
		select {
		case <-ctx.Done():
			d.Stop()
			s.fr.flushReplies()
			return nil
		case <-ticker.C:
			kind, start = wakeTick, time.Now()
			s.watch.ticked(start)
			d.Begin()
			d.OnTicker()
			s.publish()
			s.fr.refuse.flush()
			s.tr.refuse.flush()
		case m := <-s.peerIn:
			kind, start = wakePeer, time.Now()
			d.Begin()
			d.Step(&m)
			for i := 0; i < drainMax && len(s.peerIn) > 0; i++ {
				m := <-s.peerIn
				d.Step(&m)
			}
		case r := <-s.reqs:
			kind, start = wakeRequest, time.Now()
			d.Begin()
			d.Submit(r)
			for i := 0; i < drainMax && len(s.reqs) > 0; i++ {
				d.Submit(<-s.reqs)
			}
		case <-s.store.DurableC():
			kind, start = wakeDurable, time.Now()
			d.Begin()
			d.OnDurable()
		case err := <-s.diskLow:
			d.Begin()
			d.Fence(err)
		case done := <-s.bgDone:
			kind, start = wakeBackground, time.Now()
			d.Begin()
			done()
		case ch := <-s.statusReq:
			ch <- s.status()
			continue
		}
		d.End()
		s.fr.flushReplies()
		if kind >= 0 {
			s.watch.worked(kind, start, time.Now())
		}
	}
}

// publish hands /metrics the loop's status: scrapes read it without waiting for the loop.
func (s *Server) publish() {
	st := s.status()
	s.published.Store(&st)
	s.finishRejoin(&st)
}

// wallClock is the driver's clock in the process: the monotonic reading of the wall clock.
type wallClock struct{}

func (wallClock) Now() time.Time { return time.Now() }

// storage adapts disk.Store to the driver.
type storage struct{ *disk.Store }

func (s storage) Persist(rd *paxos.Ready) (uint64, error) {
	t, err := s.Store.Persist(rd)
	return t.Seq(), err
}

func (s storage) Behind() bool {
	_, _, full := s.Backlog()
	return full
}

// executor runs the driver's background jobs on one goroutine, in order, and hands each job's
// completion back to the loop.
type executor struct {
	jobs chan func() func()
	done chan func()
}

func newExecutor(queue int) *executor {
	return &executor{jobs: make(chan func() func(), queue), done: make(chan func(), queue)}
}

// Go queues job, or reports false when the queue is full (never blocks the loop).
func (e *executor) Go(job func() func()) bool {
	select {
	case e.jobs <- job:
		return true
	default:
		return false
	}
}

// run executes jobs until ctx ends, handing each completion to the loop.
func (e *executor) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case job := <-e.jobs:
			done := job()
			select {
			case e.done <- done:
			case <-ctx.Done():
				return
			}
		}
	}
}

// transportIO adapts the peer transport to the driver.
type transportIO struct{ t *transport }

func (t transportIO) Send(m *paxos.Message) { t.t.send(m) }
func (t transportIO) Flush()                { t.t.flush() }
