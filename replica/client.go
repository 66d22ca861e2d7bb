package replica

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
	"golang.org/x/sync/semaphore"

	"github.com/sofadb/sofadb/driver"
	"github.com/sofadb/sofadb/kv"
	"github.com/sofadb/sofadb/wire"
)

// front is all that the client-facing goroutines (binary connections, HTTP handlers) see of the
// replica: its configuration and counters, the way into the loop (a bounded queue, refused Busy
// when full), the loop's status, and a channel closed when the loop has stopped. They hold no
// *Server: what they may touch is what is here.
type front struct {
	cfg     *Config
	log     *slog.Logger
	stats   *serverStats
	reqs    chan<- *driver.Request
	stopped <-chan struct{}                 // closed when the loop has returned: nobody answers requests any more
	status  func() (Status, bool)           // asks the loop (see Server.Status)
	metrics func(*fasthttp.RequestCtx)      // /metrics; reads what the loop published, never waits for it
	ln      net.Listener                    // binary protocol
	table   *connTable                      // open binary connections: caps, idle eviction
	refuse  *refusalLog                     // refused and broken connections, logged at a bounded rate
	conns   sync.WaitGroup                  // binary connections still being served
	replies map[*clientConn][]wire.Response // binary replies of this loop iteration, per connection: the loop's own
	// inflightBytes are the bytes of client requests handed to the loop and not yet answered.
	inflightBytes atomic.Int64
}

// serveClients accepts binary-protocol connections, within the connection table's limits (see
// connTable): per source, and globally with idle connections evicted to make room.
func (s *front) serveClients(ctx context.Context) {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			s.refuse.refuse("client accept failed", "", err.Error())
			time.Sleep(10 * time.Millisecond)
			continue
		}
		now := time.Now()
		cc := &clientConn{s: s, c: c, source: sourceOf(c.RemoteAddr()), out: make(chan []wire.Response, s.cfg.ClientInflightMax),
			slots: make(chan struct{}, s.cfg.ClientInflightMax), quit: make(chan struct{}), dead: make(chan struct{}),
			budget: semaphore.NewWeighted(s.cfg.ClientConnBytesMax)}
		cc.touch(now)
		if !s.table.enter(cc, cc.source, c, now, "refused client connection", s.refuse, s.stats) {
			continue
		}
		s.conns.Add(1)
		go s.serveClient(ctx, cc)
	}
}

// clientConn is one pipelined binary-protocol connection. Its reader decodes requests and submits
// them; replies come back (in completion order) through out, which the writer drains into one write
// per wake-up. slots holds one token per request in flight, so out always has room for every reply
// the loop will push and the loop never blocks on a slow client: the reader stops reading instead.
// Replies that arrive after the connection died land in out and are collected with it.
type clientConn struct {
	s          *front
	c          net.Conn
	source     string       // remote host: connections are capped per source
	lastActive atomic.Int64 // unix ns of the last request read (see connTable)
	out        chan []wire.Response
	slots      chan struct{}
	budget     *semaphore.Weighted // bytes of requests in flight (ClientConnBytesMax)
	quit       chan struct{}       // closed when the reader is done: the writer stops
	dead       chan struct{}       // closed by the writer when a write fails: the reader stops
}

var errClientWrite = errors.New("client connection write failed")

func (s *front) serveClient(ctx context.Context, cc *clientConn) {
	c := cc.c
	defer s.conns.Done()
	defer s.table.remove(cc)
	// The reader blocks in Read: closing the connection is what ends it at shutdown.
	defer context.AfterFunc(ctx, func() { c.Close() })()
	s.stats.clientConns.Add(1)
	defer s.stats.clientConns.Add(-1)
	done := make(chan struct{})
	go func() {
		cc.writeLoop()
		close(done)
	}()
	err := cc.readLoop(ctx)
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		s.stats.idleClientConns.Add(1) // idle past ClientIdleTimeout: closed quietly
	case err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !errors.Is(err, errClientWrite) && ctx.Err() == nil:
		s.stats.badClientConns.Add(1)
		s.refuse.refuse("closing client connection", c.RemoteAddr().String(), err.Error())
	}
	c.Close()
	close(cc.quit)
	<-done
}

func (cc *clientConn) readLoop(ctx context.Context) error {
	s := cc.s
	rd := wire.NewReader(cc.c, s.cfg.ClientFrameBytesMax, wire.ClientRequestTypes)
	var req wire.Request
	for {
		// A connection with nothing in flight and nothing to say for ClientIdleTimeout is closed:
		// a silent connection must not hold a slot for ever. Requests in flight keep it open (only
		// this reader adds to slots, so while it waits here idle, it stays idle).
		if len(cc.slots) == 0 {
			cc.c.SetReadDeadline(time.Now().Add(s.cfg.ClientIdleTimeout))
		} else {
			cc.c.SetReadDeadline(time.Time{})
		}
		_, payload, err := rd.Next()
		if err != nil {
			return err // a timeout here means idle (or stalled mid-frame) for ClientIdleTimeout
		}
		cc.touch(time.Now())
		if _, err := wire.DecodeRequest(payload, &req); err != nil {
			return err // malformed: close, with the reason logged
		}
		select {
		case cc.slots <- struct{}{}:
		case <-cc.dead:
			return errClientWrite
		case <-ctx.Done():
			return ctx.Err()
		}
		if st := s.checkRequest(req.Op, len(req.Key), len(req.Value)); st != wire.StatusOK {
			cc.push(wire.Response{Seq: req.Seq, Status: st})
			continue
		}
		// The connection's byte budget: wait (reading nothing more) while its requests in flight
		// hold it. Every request taken is answered (by its deadline at the latest), which frees
		// its share, so the wait ends; a request larger than the budget takes all of it.
		weight := min(int64(len(req.Key)+len(req.Value))+requestOverheadBytes, s.cfg.ClientConnBytesMax)
		if !cc.budget.TryAcquire(weight) {
			s.stats.connBytesWaits.Add(1)
			if err := cc.budget.Acquire(ctx, weight); err != nil {
				return err
			}
		}
		seq := req.Seq
		now := time.Now()
		r := &driver.Request{
			Cmd:      driver.NewCommand(req.ClientID, req.Seq, req.Op, req.Key, req.Value), // copies
			Deadline: now.Add(s.cfg.RequestTimeout),
			Arrived:  now,
		}
		// Replies come from the loop, which gathers them per connection and hands each connection
		// one batch per iteration (see flushReplies); only Busy is answered here.
		released := false
		r.Reply = func(resp driver.Response) {
			if !released { // answered once; the guard keeps a second answer from panicking Release
				released = true
				cc.budget.Release(weight)
			}
			out := wire.Response{Seq: seq, Status: resp.Status, Value: resp.Value, Leader: uint16(resp.Leader)}
			if resp.Status == wire.StatusNotLeader && resp.Leader != 0 {
				out.LeaderAddr = []byte(s.cfg.ClientAddrs[resp.Leader])
			}
			s.replies[cc] = append(s.replies[cc], out)
		}
		if !s.trySubmit(r) {
			cc.budget.Release(weight)
			cc.push(wire.Response{Seq: seq, Status: wire.StatusBusy})
		}
	}
}

// flushReplies hands every binary connection the replies gathered in this loop iteration, one
// batch each: the connection's writer then sends them in one write. Never blocks: each reply has a
// slot reserved by the reader, and a batch holds at least one reply.
func (s *front) flushReplies() {
	for cc, batch := range s.replies {
		cc.out <- batch
		delete(s.replies, cc)
	}
}

// checkRequest validates what the wire decoder cannot know: this replica's limits. A refusal is
// counted in sofadb_replies_total like the loop's replies.
func (s *front) checkRequest(op kv.Op, keyLen, valueLen int) wire.Status {
	switch {
	case !op.Valid() || (keyLen == 0) != (op == kv.OpOpen):
		s.stats.badRequests.Add(1)
		return wire.StatusBadRequest
	case keyLen > s.cfg.KeyBytesMax || valueLen > s.cfg.ValueBytesMax:
		s.stats.tooLarge.Add(1)
		return wire.StatusTooLarge
	}
	return wire.StatusOK
}

func (cc *clientConn) push(r wire.Response) { cc.out <- []wire.Response{r} }

// writeLoop sends replies, coalescing every batch ready into one write.
func (cc *clientConn) writeLoop() {
	var buf []byte
	for {
		var batch []wire.Response
		select {
		case batch = <-cc.out:
		case <-cc.quit:
			return
		}
		buf = buf[:0]
		n := 0
		for {
			for i := range batch {
				buf = wire.AppendResponseFrame(buf, &batch[i])
			}
			n += len(batch)
			if len(cc.out) == 0 || len(buf) >= 1<<20 {
				break // one write of at most about a megabyte: large GET values must not pile up
			}
			batch = <-cc.out
		}
		cc.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := cc.c.Write(buf); err != nil {
			close(cc.dead)
			cc.c.Close()
			return
		}
		for range n {
			<-cc.slots
		}
		if cap(buf) > 4<<20 {
			buf = nil
		}
	}
}

// requestOverheadBytes is what a request costs beyond its key and value (structs, closures, the
// reply), for the byte budget.
const requestOverheadBytes = 512

// trySubmit hands a client request to the loop, or reports false (counted as Busy) when the loop's
// queue is full or the bytes of the requests not yet answered would pass ClientBytesMax: an
// overloaded replica sheds load at once instead of queueing without bound. (Four connections
// pipelining 60 KB PUTs grew a leader to 4 GB and left the cluster without a leader.)
func (s *front) trySubmit(r *driver.Request) bool {
	size := int64(len(r.Cmd.Data)) + requestOverheadBytes
	if s.inflightBytes.Add(size) > s.cfg.ClientBytesMax {
		s.inflightBytes.Add(-size)
		s.stats.busy.Add(1)
		s.stats.busyBytes.Add(1)
		return false
	}
	reply := r.Reply
	r.Reply = func(resp driver.Response) {
		s.inflightBytes.Add(-size)
		reply(resp)
	}
	select {
	case s.reqs <- r:
		return true
	default:
		s.inflightBytes.Add(-size)
		r.Reply = reply
		s.stats.busy.Add(1)
		return false
	}
}
