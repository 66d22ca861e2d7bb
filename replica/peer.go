package replica

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sofadb/sofadb/paxos"
	"github.com/sofadb/sofadb/wire"
	"github.com/sofadb/sofadb/wire/peerwire"
)

// transport carries peer messages over one TCP connection per pair of replicas: the replica with
// the lower id dials, the higher accepts. A connection is trusted only after a mutual
// challenge-response over the cluster key (wire.Hello/Challenge/Proof); after that each frame must
// name the authenticated peer as sender and this replica as receiver, or the connection is closed.
type transport struct {
	cfg     *Config // read only: addresses, cluster key, peer limits and timeouts
	log     *slog.Logger
	deliver func(context.Context, paxos.Message) bool // hands a message to the loop (see Server.deliver)
	self    paxos.ReplicaID
	ident   wire.Identity // this replica's (see identity.go)
	book    *peerBook     // the identity behind each peer id
	peers   map[paxos.ReplicaID]*peer
	unauth  chan struct{} // semaphore: connections still in their handshake
	// unauthBy counts connections in their handshake per source host: one source may hold at most
	// UnauthenticatedPerSourceMax of the UnauthenticatedMax slots, so silent connections from one
	// place cannot keep a restarted peer out (64 of them jammed a peer port for a 35 s flood).
	unauthMu sync.Mutex
	unauthBy map[string]int
	refuse   *refusalLog
	ln       net.Listener
	wg       sync.WaitGroup

	refused   atomic.Uint64 // handshakes that failed (wrong key, unknown peer, garbage, timeout)
	conflicts atomic.Uint64 // handshakes refused because a peer's identity is not the one known for its id
}

// peer is the outbound side of one peer: a bounded queue that the writer goroutine drains into the
// current connection, coalescing everything queued into one write per wake-up.
type peer struct {
	t    *transport
	id   paxos.ReplicaID
	addr string

	mu         sync.Mutex
	queue      []paxos.Message
	queueBytes int // approximate encoded bytes of queue
	conn       net.Conn
	wake       chan struct{}
	dirty      atomic.Bool // queued since the last flush

	sent, dropped, reconnects atomic.Uint64
	sentBytes                 atomic.Uint64
	lastErr                   atomic.Pointer[string] // why the last dial or handshake failed; nil once one succeeds
}

// failure is what /status shows for this peer: why we could not connect, or "".
func (p *peer) failure() string {
	if e := p.lastErr.Load(); e != nil {
		return *e
	}
	return ""
}

func (p *peer) setFailure(err error) {
	if err == nil {
		p.lastErr.Store(nil)
		return
	}
	msg := err.Error()
	p.lastErr.Store(&msg)
}

// newTransport builds the peer transport. It knows the loop only through deliver, and the
// replica only through its configuration and logger: no back-pointer to the Server.
func newTransport(cfg *Config, log *slog.Logger, ident wire.Identity, book *peerBook,
	deliver func(context.Context, paxos.Message) bool) *transport {
	t := &transport{cfg: cfg, log: log, deliver: deliver, self: cfg.ID, ident: ident, book: book, peers: map[paxos.ReplicaID]*peer{},
		unauth: make(chan struct{}, cfg.UnauthenticatedMax), unauthBy: map[string]int{}, refuse: newRefusalLog(log, refusalLogInterval)}
	for id, addr := range cfg.PeerAddrs {
		if id != t.self {
			t.peers[id] = &peer{t: t, id: id, addr: addr, wake: make(chan struct{}, 1)}
		}
	}
	return t
}

// run serves the peer listener and keeps one connection per peer until ctx ends, then closes
// them and returns once every transport goroutine has.
func (t *transport) run(ctx context.Context) {
	t.wg.Add(1)
	go t.acceptLoop(ctx)
	for _, p := range t.peers {
		t.wg.Add(1)
		go p.writeLoop(ctx)
		if p.id > t.self {
			t.wg.Add(1)
			go p.dialLoop(ctx)
		}
	}
	<-ctx.Done()
	t.close()
	t.wg.Wait()
}

// close closes the listener and every peer connection (the goroutines blocked on them return).
func (t *transport) close() {
	if t.ln != nil {
		t.ln.Close()
	}
	for _, p := range t.peers {
		p.setConn(nil)
	}
}

// send queues m for its peer; the writer is woken by flush, so everything one loop iteration sends
// to a peer leaves in one write. It never blocks: beyond PeerQueueMax messages are dropped, which
// Paxos tolerates (resends, catch-up) and which is counted. Safe for concurrent use.
func (t *transport) send(m *paxos.Message) {
	p := t.peers[m.To]
	if p == nil {
		return
	}
	size := messageBytes(m)
	p.mu.Lock()
	// One message larger than the byte bound (a snapshot) still goes when the queue is empty.
	if len(p.queue) >= t.cfg.PeerQueueMax || (p.queueBytes > 0 && p.queueBytes+size > t.cfg.PeerQueueBytesMax) {
		p.mu.Unlock()
		p.dropped.Add(1)
		return
	}
	p.queue = append(p.queue, *m)
	p.queueBytes += size
	p.mu.Unlock()
	p.dirty.Store(true)
}

// flush wakes the writer of every peer with queued messages. The loop calls it once per iteration;
// waking per message made each frame its own write system call.
func (t *transport) flush() {
	for _, p := range t.peers {
		if p.dirty.Swap(false) {
			select {
			case p.wake <- struct{}{}:
			default:
			}
		}
	}
}

// writeLoop drains the queue into the current connection. Messages queued while there is no
// connection are dropped: they are stale by the time one exists, and the protocol resends.
//
// Small messages go first (the control lane: heartbeats, acknowledgements, prepares, promises and
// nacks are a few dozen bytes), and one write carries at most bulkBytesPerWrite of larger ones;
// what is left waits for the next write, which follows at once. Under 60 KB values a heartbeat
// queued behind tens of megabytes of accepts reached its follower after the election timeout, and
// the cluster churned through leaders. (A single frame larger than the bound, a snapshot, still
// goes whole: chunking it is the next step.)
func (p *peer) writeLoop(ctx context.Context) {
	defer p.t.wg.Done()
	var buf []byte
	var batch []paxos.Message
	more := false
	for {
		if !more {
			select {
			case <-ctx.Done():
				return
			case <-p.wake:
			}
		} else if ctx.Err() != nil {
			return
		}
		p.mu.Lock()
		conn := p.conn
		batch, more = p.takeLocked(batch[:0])
		p.mu.Unlock()
		if conn == nil {
			p.dropped.Add(uint64(len(batch)))
		} else {
			buf = buf[:0]
			for i := range batch {
				buf = peerwire.AppendMessageFrame(buf, &batch[i])
			}
			if err := writeChunked(conn, buf); err != nil {
				p.t.log.Warn("peer write failed; reconnecting", "peer", p.id, "err", err)
				p.closeConn(conn)
			} else {
				p.sent.Add(uint64(len(batch)))
				p.sentBytes.Add(uint64(len(buf)))
			}
			if cap(buf) > 16<<20 {
				buf = nil // do not keep a snapshot-sized buffer for ever
			}
		}
		clear(batch) // let the entries the messages referenced go
	}
}

// controlBytesMax is the largest message that travels in the control lane; bulkBytesPerWrite is
// how much of the rest one write may carry.
const (
	controlBytesMax   = 4 << 10
	bulkBytesPerWrite = 1 << 20
)

// takeLocked moves into batch every queued control message and, after them, queued bulk messages
// in their order up to bulkBytesPerWrite (at least one); it reports whether any are left.
func (p *peer) takeLocked(batch []paxos.Message) ([]paxos.Message, bool) {
	for i := range p.queue {
		if messageBytes(&p.queue[i]) <= controlBytesMax {
			batch = append(batch, p.queue[i])
		}
	}
	bulk, restBytes, rest := 0, 0, p.queue[:0]
	for i := range p.queue {
		m := &p.queue[i]
		size := messageBytes(m)
		switch {
		case size <= controlBytesMax: // taken above
		case bulk == 0 || bulk+size <= bulkBytesPerWrite:
			batch = append(batch, *m)
			bulk += size
		default:
			rest = append(rest, *m) // in place: rest never passes i
			restBytes += size
		}
	}
	clear(p.queue[len(rest):])
	p.queue, p.queueBytes = rest, restBytes
	return batch, len(rest) > 0
}

// writeChunked writes buf in pieces, each with its own deadline: a large snapshot on a slow link
// must fail only when the link stops moving, not because the whole of it did not fit in one deadline.
func writeChunked(c net.Conn, buf []byte) error {
	const chunk = 4 << 20
	for len(buf) > 0 {
		n := min(len(buf), chunk)
		c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write(buf[:n]); err != nil {
			return err
		}
		buf = buf[n:]
	}
	return nil
}

// messageBytes approximates a message's encoded size, for the queue's byte bound.
func messageBytes(m *paxos.Message) int {
	n := 64 + len(m.Data)
	for i := range m.Entries {
		n += m.Entries[i].Size()
	}
	for i := range m.Cmds {
		n += m.Cmds[i].Size()
	}
	return n
}

func (p *peer) setConn(c net.Conn) {
	p.mu.Lock()
	old := p.conn
	p.conn = c
	p.mu.Unlock()
	if old != nil {
		old.Close()
	}
}

// closeConn drops c if it is still the current connection.
func (p *peer) closeConn(c net.Conn) {
	p.mu.Lock()
	if p.conn == c {
		p.conn = nil
	}
	p.mu.Unlock()
	c.Close()
}

// dialLoop keeps a connection to a higher-numbered peer, reconnecting with exponential backoff.
func (p *peer) dialLoop(ctx context.Context) {
	defer p.t.wg.Done()
	backoff := 20 * time.Millisecond
	for ctx.Err() == nil {
		conn, err := p.dial(ctx)
		if err != nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 20 * time.Millisecond
		p.reconnects.Add(1)
		p.setConn(conn.c)
		p.t.readLoop(ctx, p, conn)
		p.closeConn(conn.c)
	}
}

// authConn is a connection whose handshake succeeded, with the frame reader that read it.
type authConn struct {
	c  net.Conn
	rd *wire.Reader
}

func (p *peer) dial(ctx context.Context) (authConn, error) {
	d := net.Dialer{Timeout: p.t.cfg.HandshakeTimeout}
	c, err := d.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		p.setFailure(err)
		return authConn{}, err
	}
	c.SetDeadline(time.Now().Add(p.t.cfg.HandshakeTimeout))
	rd := wire.NewReader(c, handshakeFrameBytesMax, wire.HandshakeTypes)
	if err := p.t.initiate(c, rd, p.id); err != nil {
		c.Close()
		p.t.refused.Add(1)
		p.setFailure(err)
		p.t.log.Warn("peer handshake failed", "peer", p.id, "addr", p.addr, "err", err)
		return authConn{}, err
	}
	p.setFailure(nil)
	c.SetDeadline(time.Time{})
	rd.SetLimits(p.t.cfg.PeerFrameBytesMax, peerwire.Types)
	return authConn{c, rd}, nil
}

// handshakeFrameBytesMax bounds a frame before the peer is authenticated: handshake frames are a
// few dozen bytes, and a stranger must not make the replica buffer a large one (32 half-open
// connections announcing 256 MiB frames grew the heap by 2.9 GB in 2 s before this bound).
const handshakeFrameBytesMax = 1 << 10

// errHandshake marks every reason a handshake is refused.
var errHandshake = errors.New("peer handshake refused")

// initiate runs the dialer's side: Hello, check the Challenge, send the Proof.
func (t *transport) initiate(c net.Conn, rd *wire.Reader, to paxos.ReplicaID) error {
	key, self, peer := t.cfg.ClusterKey, uint16(t.self), uint16(to)
	hello := wire.Hello{From: self, To: peer, Identity: t.ident, Nonce: wire.NewNonce()}
	if _, err := c.Write(wire.AppendHelloFrame(nil, &hello)); err != nil {
		return err
	}
	typ, payload, err := rd.Next()
	if err != nil {
		return err
	}
	var ch wire.Challenge
	if typ != wire.TypeChallenge {
		return fmt.Errorf("%w: got %v, want a challenge", errHandshake, typ)
	}
	if _, err := wire.DecodeChallenge(payload, &ch); err != nil {
		return err
	}
	tr := wire.NewTranscript(&hello, &ch)
	if ch.From != peer || !wire.CheckMAC(&ch.MAC, key, wire.RoleResponder, tr) {
		return fmt.Errorf("%w: replica %d did not prove the cluster key: our cluster keys differ (check -cluster-key on both), or it is not replica %d", errHandshake, to, to)
	}
	if err := t.checkIdentity(to, ch.Identity, c.RemoteAddr().String()); err != nil {
		return err
	}
	proof := wire.Proof{MAC: wire.HandshakeMAC(key, wire.RoleInitiator, tr)}
	_, err = c.Write(wire.AppendProofFrame(nil, &proof))
	return err
}

// checkIdentity accepts a peer that proved the cluster key only if its identity is the one known
// for its id (or the first seen). A conflict is counted, shown in /status and logged at error
// level: it means two processes run under one replica id.
func (t *transport) checkIdentity(id paxos.ReplicaID, ident wire.Identity, addr string) error {
	err := t.book.check(id, ident, addr)
	if errors.Is(err, errIdentityConflict) {
		t.conflicts.Add(1)
		t.log.Error("REFUSING PEER: two processes claim one replica id", "peer", id, "addr", addr, "err", err)
	}
	return err
}

func (t *transport) acceptLoop(ctx context.Context) {
	defer t.wg.Done()
	for {
		c, err := t.ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			t.log.Warn("peer accept", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		src := sourceOf(c.RemoteAddr())
		if !t.takeUnauth(src) { // too many half-open connections: refuse rather than queue without bound
			t.refused.Add(1)
			t.refuse.refuse("refused peer connection", c.RemoteAddr().String(), "too many connections in their handshake")
			c.Close()
			continue
		}
		t.wg.Add(1)
		go t.serveAccepted(ctx, c, src)
	}
}

// takeUnauth reserves a handshake slot for a connection from src: one of UnauthenticatedMax, and
// one of UnauthenticatedPerSourceMax for that source.
func (t *transport) takeUnauth(src string) bool {
	t.unauthMu.Lock()
	defer t.unauthMu.Unlock()
	if t.unauthBy[src] >= t.cfg.UnauthenticatedPerSourceMax {
		return false
	}
	select {
	case t.unauth <- struct{}{}:
	default:
		return false
	}
	t.unauthBy[src]++
	return true
}

func (t *transport) releaseUnauth(src string) {
	t.unauthMu.Lock()
	defer t.unauthMu.Unlock()
	<-t.unauth
	if t.unauthBy[src]--; t.unauthBy[src] <= 0 {
		delete(t.unauthBy, src)
	}
}

// serveAccepted authenticates an incoming connection and then reads it for as long as it lives.
func (t *transport) serveAccepted(ctx context.Context, c net.Conn, src string) {
	defer t.wg.Done()
	c.SetDeadline(time.Now().Add(t.cfg.HandshakeTimeout))
	rd := wire.NewReader(c, handshakeFrameBytesMax, wire.HandshakeTypes)
	from, err := t.respond(c, rd)
	t.releaseUnauth(src)
	if err != nil {
		t.refused.Add(1)
		t.refuse.refuse("refused peer connection", c.RemoteAddr().String(), err.Error())
		c.Close()
		return
	}
	c.SetDeadline(time.Time{})
	rd.SetLimits(t.cfg.PeerFrameBytesMax, peerwire.Types)
	p := t.peers[from]
	p.reconnects.Add(1)
	p.setConn(c)
	t.readLoop(ctx, p, authConn{c, rd})
	p.closeConn(c)
}

// respond runs the accepting side: check the Hello, send a Challenge, check the Proof.
func (t *transport) respond(c net.Conn, rd *wire.Reader) (paxos.ReplicaID, error) {
	key, self := t.cfg.ClusterKey, uint16(t.self)
	typ, payload, err := rd.Next()
	if err != nil {
		return 0, err
	}
	var hello wire.Hello
	if typ != wire.TypeHello {
		return 0, fmt.Errorf("%w: got %v, want a hello", errHandshake, typ)
	}
	if _, err := wire.DecodeHello(payload, &hello); err != nil {
		return 0, err
	}
	from := paxos.ReplicaID(hello.From)
	if hello.To != self || from >= t.self || t.peers[from] == nil {
		return 0, fmt.Errorf("%w: hello from %d to %d", errHandshake, hello.From, hello.To)
	}
	ch := wire.Challenge{From: self, Identity: t.ident, Nonce: wire.NewNonce()}
	tr := wire.NewTranscript(&hello, &ch)
	ch.MAC = wire.HandshakeMAC(key, wire.RoleResponder, tr)
	if _, err := c.Write(wire.AppendChallengeFrame(nil, &ch)); err != nil {
		return 0, err
	}
	if typ, payload, err = rd.Next(); err != nil {
		return 0, err
	}
	var proof wire.Proof
	if typ != wire.TypeProof {
		return 0, fmt.Errorf("%w: got %v, want a proof", errHandshake, typ)
	}
	if _, err := wire.DecodeProof(payload, &proof); err != nil {
		return 0, err
	}
	if !wire.CheckMAC(&proof.MAC, key, wire.RoleInitiator, tr) {
		return 0, fmt.Errorf("%w: replica %d did not prove the cluster key", errHandshake, hello.From)
	}
	if err := t.checkIdentity(from, hello.Identity, c.RemoteAddr().String()); err != nil {
		return 0, err
	}
	return from, nil
}

// readLoop hands every frame of an authenticated connection to the loop. A frame that does not
// decode, or that names another sender or receiver, closes the connection: the peer is broken or
// not who it claimed, and the replica carries on without it.
func (t *transport) readLoop(ctx context.Context, p *peer, ac authConn) {
	// A handshake can finish after the shutdown closed every current connection (the first one
	// with a peer writes its identity to disk): closing on ctx, here, is what no race can skip.
	defer context.AfterFunc(ctx, func() { ac.c.Close() })()
	var m paxos.Message
	for {
		typ, payload, err := ac.rd.Next()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && ctx.Err() == nil {
				t.log.Warn("closing peer connection", "peer", p.id, "err", err)
			}
			return
		}
		if typ >= wire.TypeHello {
			t.log.Warn("closing peer connection: handshake frame after the handshake", "peer", p.id, "type", typ)
			return
		}
		if _, err := peerwire.DecodeMessage(payload, &m); err != nil {
			t.log.Warn("closing peer connection: bad message", "peer", p.id, "err", err)
			return
		}
		if m.From != p.id || m.To != t.self {
			t.log.Warn("closing peer connection: message not from its authenticated sender", "peer", p.id, "from", m.From, "to", m.To)
			return
		}
		// The core keeps what Step is given, and m aliases the reader's buffer: hand over a copy.
		if !t.deliver(ctx, peerwire.CloneMessage(&m)) {
			return
		}
	}
}
