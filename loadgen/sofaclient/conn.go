// Package sofaclient is a client for SofaDB's binary client protocol: one pipelined TCP connection
// with many requests in flight, answered by sequence number in whatever order they complete. The
// load generator drives it, and the replica server's tests use it as their client.
package sofaclient

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/sofadb/sofadb/kv"
	"github.com/sofadb/sofadb/wire"
)

// Errors a Callback receives instead of a response.
var (
	// ErrTimeout: no response within Options.Timeout. The request may or may not have been applied; a
	// late response is discarded.
	ErrTimeout = errors.New("sofaclient: request timed out")
	// ErrClosed: the connection was closed (by Close, or after a read or write failed, which the
	// error wraps). Requests it carried may or may not have been applied.
	ErrClosed = errors.New("sofaclient: connection closed")
	// ErrSeqInFlight: GoRequest was given a Seq that is still waiting for its response.
	ErrSeqInFlight = errors.New("sofaclient: seq already in flight")
)

// Callback receives the outcome of one request, exactly once: a response (err nil) or an error. It
// runs on the connection's reader goroutine (or its timeout goroutine, or, for a connection already
// closed, inside Go): it must not block, and it must copy resp.Value and resp.LeaderAddr if it keeps
// them, because they alias the connection's read buffer.
type Callback func(resp *wire.Response, err error)

// Options tune a connection. Zero values mean: no per-request timeout, a 5 s dial timeout, the wire
// package's default maximum frame, and a new session opened by Dial.
type Options struct {
	Timeout         time.Duration // per request; 0: wait for ever
	DialTimeout     time.Duration // bounds the connect and the session open
	MaxPayloadBytes int
	// ClientID, when set, is a session the caller already holds (one opened on another connection,
	// say): Dial then opens none.
	ClientID uint64
}

// ErrNoSession: the connection could not open a session before its deadline (no leader, say).
var ErrNoSession = errors.New("sofaclient: could not open a session")

// Conn is one client connection. Its methods are safe for concurrent use. Three goroutines serve it:
// the writer, which sends everything queued since its last wake-up in one write (so a burst of
// requests costs one syscall); the reader, which matches responses to requests by Seq; and the
// reaper, which fails requests whose deadline has passed.
type Conn struct {
	nc       net.Conn
	clientID uint64
	timeout  time.Duration

	mu      sync.Mutex
	nextSeq uint64
	pending map[uint64]*call // by Seq: requests sent and not yet answered
	byAge   []*call          // the same requests in send order: deadlines only grow along it
	wbuf    []byte           // frames queued for the writer
	err     error            // set once, when the connection fails or closes

	wake chan struct{} // writer wake-up, capacity 1
	done chan struct{} // closed when the connection is closed
	wg   sync.WaitGroup
}

type call struct {
	seq      uint64
	cb       Callback
	deadline time.Time
	finished bool // guarded by Conn.mu: answered, timed out or failed
}

// Dial connects to a SofaDB replica's client port.
func Dial(addr string, o Options) (*Conn, error) {
	dt := o.DialTimeout
	if dt <= 0 {
		dt = 5 * time.Second
	}
	nc, err := net.DialTimeout("tcp", addr, dt)
	if err != nil {
		return nil, err
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	c := New(nc, o)
	if o.ClientID == 0 {
		ctx, cancel := context.WithTimeout(context.Background(), dt)
		defer cancel()
		if err := c.Open(ctx); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// New runs the protocol over an established connection (a test's net.Pipe, say). Unless o.ClientID
// names a session, call Open before sending puts or deletes.
func New(nc net.Conn, o Options) *Conn {
	c := &Conn{nc: nc, clientID: o.ClientID, timeout: o.Timeout, nextSeq: 1, pending: make(map[uint64]*call),
		wake: make(chan struct{}, 1), done: make(chan struct{})}
	c.wg.Add(2)
	go c.writeLoop()
	go c.readLoop(o.MaxPayloadBytes)
	if o.Timeout > 0 {
		c.wg.Add(1)
		go c.reapLoop()
	}
	return c
}

// ClientID is the session every request on this connection carries (with its Seq, it names a
// command for good, so a retry is applied once).
func (c *Conn) ClientID() uint64 { return c.clientID }

// Open asks the cluster for a new session (an OpOpen through the log) and makes it this
// connection's ClientID. It retries while the cluster cannot take it yet (no leader, busy, a
// timeout) until ctx is done. It must finish before the connection sends anything else.
func (c *Conn) Open(ctx context.Context) error {
	var nonce [8]byte
	rand.Read(nonce[:])
	req := wire.Request{ClientID: binary.LittleEndian.Uint64(nonce[:]) | 1, Op: kv.OpOpen}
	var last error
	for {
		c.mu.Lock()
		req.Seq = c.nextSeq
		c.nextSeq++
		c.mu.Unlock()
		type outcome struct {
			status wire.Status
			value  []byte
			err    error
		}
		ch := make(chan outcome, 1)
		c.GoRequest(&req, func(resp *wire.Response, err error) {
			if err != nil {
				ch <- outcome{err: err}
				return
			}
			ch <- outcome{status: resp.Status, value: append([]byte(nil), resp.Value...)}
		})
		var o outcome
		select {
		case o = <-ch:
		case <-ctx.Done():
			return fmt.Errorf("%w: %w (last: %v)", ErrNoSession, ctx.Err(), last)
		}
		switch {
		case o.err != nil && !errors.Is(o.err, ErrTimeout):
			return fmt.Errorf("%w: %w", ErrNoSession, o.err)
		case o.err == nil && o.status == wire.StatusOK && len(o.value) == 8:
			c.clientID = binary.BigEndian.Uint64(o.value)
			return nil
		case o.err == nil && o.status != wire.StatusNotLeader && o.status != wire.StatusBusy && o.status != wire.StatusUnavailable:
			return fmt.Errorf("%w: server answered %v", ErrNoSession, o.status)
		}
		last = o.err
		if o.err == nil {
			last = fmt.Errorf("server answered %v", o.status)
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			return fmt.Errorf("%w: %w (last: %v)", ErrNoSession, ctx.Err(), last)
		}
	}
}

// Go sends a request with the next Seq and returns that Seq; cb gets the outcome.
func (c *Conn) Go(op kv.Op, key, value []byte, cb Callback) uint64 {
	c.mu.Lock()
	seq := c.nextSeq
	c.nextSeq++
	c.mu.Unlock()
	c.GoRequest(&wire.Request{ClientID: c.clientID, Seq: seq, Op: op, Key: key, Value: value}, cb)
	return seq
}

// GoRequest sends req as it is, for callers that choose ClientID and Seq themselves: a test that
// retries a command reuses both. A Seq still in flight on this connection is refused, through cb.
func (c *Conn) GoRequest(req *wire.Request, cb Callback) {
	c.mu.Lock()
	if err := c.err; err != nil {
		c.mu.Unlock()
		cb(nil, err)
		return
	}
	if _, busy := c.pending[req.Seq]; busy {
		c.mu.Unlock()
		cb(nil, fmt.Errorf("%w: %d", ErrSeqInFlight, req.Seq))
		return
	}
	k := &call{seq: req.Seq, cb: cb}
	if c.timeout > 0 {
		k.deadline = time.Now().Add(c.timeout)
		c.byAge = append(c.byAge, k)
	}
	c.pending[req.Seq] = k
	if req.Seq >= c.nextSeq {
		c.nextSeq = req.Seq + 1 // keep Go's seqs clear of the ones chosen here
	}
	c.wbuf = wire.AppendRequestFrame(c.wbuf, req)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default: // the writer is already due to wake
	}
}

// Result is a response copied out of the connection's buffers, for Do's callers.
type Result struct {
	Status     wire.Status
	Leader     uint16
	LeaderAddr string
	Value      []byte
}

// Do sends a request and waits for its outcome or for ctx. Abandoning a request through ctx does not
// unsend it: it may still be applied.
func (c *Conn) Do(ctx context.Context, op kv.Op, key, value []byte) (*Result, error) {
	type outcome struct {
		res *Result
		err error
	}
	ch := make(chan outcome, 1)
	c.Go(op, key, value, func(resp *wire.Response, err error) {
		if err != nil {
			ch <- outcome{err: err}
			return
		}
		ch <- outcome{res: &Result{Status: resp.Status, Leader: resp.Leader, LeaderAddr: string(resp.LeaderAddr),
			Value: append([]byte(nil), resp.Value...)}}
	})
	select {
	case o := <-ch:
		return o.res, o.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// InFlight is the number of requests sent and not yet answered.
func (c *Conn) InFlight() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending)
}

// Close closes the connection; every request still in flight gets ErrClosed.
func (c *Conn) Close() error {
	c.fail(ErrClosed)
	c.wg.Wait()
	return nil
}

// Err is why the connection stopped working, or nil while it works.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// fail stops the connection for good, with err as the reason, and fails every pending request.
func (c *Conn) fail(err error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	if !errors.Is(err, ErrClosed) {
		err = fmt.Errorf("%w: %w", ErrClosed, err)
	}
	c.err = err
	failed := make([]*call, 0, len(c.pending))
	for _, k := range c.pending {
		k.finished = true
		failed = append(failed, k)
	}
	clear(c.pending)
	c.byAge, c.wbuf = nil, nil
	close(c.done)
	c.mu.Unlock()
	c.nc.Close()
	for _, k := range failed {
		k.cb(nil, err)
	}
}

// writeLoop sends whatever has been queued since it last woke, in one write.
func (c *Conn) writeLoop() {
	defer c.wg.Done()
	var buf []byte
	for {
		select {
		case <-c.wake:
		case <-c.done:
			return
		}
		c.mu.Lock()
		buf, c.wbuf = c.wbuf, buf[:0]
		c.mu.Unlock()
		if len(buf) == 0 {
			continue
		}
		if c.timeout > 0 { // a peer that stops reading must not hold the writer for ever
			c.nc.SetWriteDeadline(time.Now().Add(c.timeout))
		}
		if _, err := c.nc.Write(buf); err != nil {
			c.fail(err)
			return
		}
	}
}

// readLoop matches each response to its request. A response to a request that is no longer pending
// (it timed out) is dropped.
func (c *Conn) readLoop(maxPayloadBytes int) {
	defer c.wg.Done()
	rd := wire.NewReader(bufio.NewReaderSize(c.nc, 64<<10), maxPayloadBytes, wire.ClientResponseTypes)
	var resp wire.Response
	for {
		_, payload, err := rd.Next()
		if err == nil {
			_, err = wire.DecodeResponse(payload, &resp)
		}
		if err != nil {
			c.fail(err)
			return
		}
		c.mu.Lock()
		k := c.pending[resp.Seq]
		if k != nil {
			delete(c.pending, resp.Seq)
			k.finished = true
		}
		c.mu.Unlock()
		if k != nil {
			k.cb(&resp, nil)
		}
	}
}

// reapLoop fails requests whose deadline has passed. Requests are timed in send order and all get
// the same timeout, so deadlines grow along byAge: only its head needs watching, and the loop
// sleeps until the head's deadline.
func (c *Conn) reapLoop() {
	defer c.wg.Done()
	timer := time.NewTimer(c.timeout)
	defer timer.Stop()
	for {
		expired, next := c.expire(time.Now())
		for _, k := range expired {
			k.cb(nil, ErrTimeout)
		}
		timer.Reset(next)
		select {
		case <-timer.C:
		case <-c.done:
			return
		}
	}
}

// expire removes the requests due by now and says how long until the next deadline.
func (c *Conn) expire(now time.Time) (expired []*call, next time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	i := 0
	for ; i < len(c.byAge); i++ {
		k := c.byAge[i]
		if k.finished {
			continue
		}
		if k.deadline.After(now) {
			break
		}
		k.finished = true
		delete(c.pending, k.seq)
		expired = append(expired, k)
	}
	c.byAge = c.byAge[i:]
	if len(c.byAge) == 0 {
		return expired, c.timeout
	}
	return expired, c.byAge[0].deadline.Sub(now)
}
