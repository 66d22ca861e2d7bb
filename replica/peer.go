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

	now func() time.Time // time.Now; a test's clock in tests

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
	// accepts remembers, per slot, the accept queued for this peer on the current connection (see
	// redundantAccept); epoch counts connections, so that a new one makes every entry stale.
	accepts map[uint64]acceptCopy
	epoch   uint64

	sent, dropped, reconnects, suppressed atomic.Uint64
	sentBytes                             atomic.Uint64
	lastErr                               atomic.Pointer[string] // why the last dial or handshake failed; nil once one succeeds
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
		unauth: make(chan struct{}, cfg.UnauthenticatedMax), unauthBy: map[string]int{}, refuse: newRefusalLog(log, refusalLogInterval), now: time.Now}
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
	now := t.now()
	p.mu.Lock()
	if p.redundantAccept(m, now) {
		p.mu.Unlock()
		p.suppressed.Add(1)
		return
	}
	// One message larger than the byte bound (a snapshot) still goes when the queue is empty.
	if len(p.queue) >= t.cfg.PeerQueueMax || (p.queueBytes > 0 && p.queueBytes+size > t.cfg.PeerQueueBytesMax) {
		p.mu.Unlock()
		p.dropped.Add(1)
		return
	}
	p.rememberAccept(m, now)
	p.queue = append(p.queue, *m)
	p.queueBytes += size
	p.mu.Unlock()
	p.dirty.Store(true)
}

// acceptCopy is an accept queued for a peer: its ballot, the connection it was queued on, when.
type acceptCopy struct {
	ballot paxos.Ballot
	epoch  uint64
	at     time.Time
}

// acceptResendQuiet is how long a copy of an accept queued on a live connection makes the core's
// resends of it redundant. The connection is TCP and the receiver never drops a frame it read
// (deliver blocks), so a copy queued on a connection that stays up arrives: a resend could only
// repeat it. The core resends after a fixed few ticks because in general it cannot tell a lost
// accept from a slow acceptor; under a large-value burst acceptors were slow, accepts took 200-300
// ms to be answered, and the leader sent every one of them about six times (48,007-58,725 resent
// for 9,088-9,519 proposed), onto links and disks already behind (issue 12). A lost copy is one
// whose connection broke, which starts a new epoch and lets the next resend through; the quiet
// period bounds how long a copy lost some other way waits: one an acceptor read and ignored (out of
// its window), or one a fault proxy dropped from a live connection. At 1 s, 200 writes under 30 %
// loss out of the leader took 25.9 s; at 250 ms 5.3 s, while 98.6 % of the burst's resends are
// still dropped (3,161 of 3,206).
const acceptResendQuiet = 250 * time.Millisecond

// redundantAccept reports whether m repeats an accept already queued for this peer, for the same
// slot and ballot, on the current connection, within acceptResendQuiet. Called with p.mu held.
func (p *peer) redundantAccept(m *paxos.Message, now time.Time) bool {
	if m.Type != paxos.MsgAccept || len(m.Entries) != 1 || p.conn == nil {
		return false
	}
	c, ok := p.accepts[m.Entries[0].Slot]
	return ok && c.ballot == m.Ballot && c.epoch == p.epoch && now.Sub(c.at) < acceptResendQuiet
}

// rememberAccept records an accept queued on the current connection, and forgets slots the
// accept's commit notice says are chosen (a leader sends nothing for them again). Called with
// p.mu held.
func (p *peer) rememberAccept(m *paxos.Message, now time.Time) {
	if m.Type != paxos.MsgAccept || len(m.Entries) != 1 || p.conn == nil {
		return
	}
	if p.accepts == nil {
		p.accepts = map[uint64]acceptCopy{}
	}
	if len(p.accepts) >= acceptsRememberedMax {
		for s, c := range p.accepts {
			if s <= m.Commit || c.epoch != p.epoch || now.Sub(c.at) >= acceptResendQuiet {
				delete(p.accepts, s)
			}
		}
		if len(p.accepts) >= acceptsRememberedMax { // a bound whatever the peer does
			clear(p.accepts)
		}
	}
	p.accepts[m.Entries[0].Slot] = acceptCopy{ballot: m.Ballot, epoch: p.epoch, at: now}
}

// acceptsRememberedMax bounds the accepts remembered per peer: well above the pipeline depth.
const acceptsRememberedMax = 8192

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
// the cluster churned through leaders.
//
// A message larger than fragmentAbove (a snapshot) is cut into fragments of fragmentBytes, one
// per write, paced at SnapshotSendBytesPerSec: everything else keeps flowing between them. As one
// frame, a 170 MB snapshot held the heartbeats to the peer installing it for seconds, and that
// peer campaigned, deposing a live leader (issue 12, item 8).
func (p *peer) writeLoop(ctx context.Context) {
	defer p.t.wg.Done()
	var buf []byte
	var batch []paxos.Message
	var big bigMessage
	more := false
	for {
		if !more {
			var due <-chan time.Time
			var timer *time.Timer
			if big.pending() {
				timer = time.NewTimer(time.Until(big.next))
				due = timer.C
			}
			select {
			case <-ctx.Done():
				return
			case <-p.wake:
			case <-due:
			}
			if timer != nil {
				timer.Stop()
			}
		} else if ctx.Err() != nil {
			return
		}
		p.mu.Lock()
		conn := p.conn
		var large *paxos.Message
		var readyBulk, largeWaiting bool
		batch, large, readyBulk, largeWaiting = p.takeLocked(batch[:0], !big.pending())
		p.mu.Unlock()
		if large != nil {
			big = bigMessage{payload: peerwire.AppendMessage(nil, large), conn: conn, next: time.Now()}
		}
		if big.pending() && big.conn != conn { // the connection it began on is gone
			big = bigMessage{}
			p.dropped.Add(1)
		}
		if conn == nil {
			p.dropped.Add(uint64(len(batch)))
			clear(batch)
			more = readyBulk
			continue
		}
		buf = buf[:0]
		for i := range batch {
			buf = peerwire.AppendMessageFrame(buf, &batch[i])
		}
		fragment := 0
		if now := time.Now(); big.pending() && !now.Before(big.next) {
			buf, fragment = big.appendFragment(buf, p.t.cfg.SnapshotSendBytesPerSec, now)
		}
		if len(buf) > 0 {
			if err := writeChunked(conn, buf); err != nil {
				p.t.log.Warn("peer write failed; reconnecting", "peer", p.id, "err", err)
				p.closeConn(conn)
			} else {
				p.sent.Add(uint64(len(batch)))
				if fragment > 0 && !big.pending() {
					p.sent.Add(1) // the large message's last fragment
				}
				p.sentBytes.Add(uint64(len(buf)))
			}
		}
		if cap(buf) > 16<<20 {
			buf = nil
		}
		clear(batch) // let the entries the messages referenced go
		// Go round at once for bulk left over, a large message that waited for the last one to
		// finish, or a fragment already due; a paced fragment wakes the loop by its timer.
		more = readyBulk || (!big.pending() && largeWaiting) || (big.pending() && !time.Now().Before(big.next))
	}
}

// bigMessage is a large message being sent in fragments: its encoded payload, how much of it has
// gone, the connection it goes on and when its next fragment is due.
type bigMessage struct {
	payload []byte
	off     int
	conn    net.Conn
	next    time.Time
}

func (b *bigMessage) pending() bool { return b.payload != nil }

// appendFragment appends the next fragment frame and sets when the one after it is due: pieces
// of fragmentBytes at bytesPerSec (0: no pacing). It returns the piece's size.
func (b *bigMessage) appendFragment(buf []byte, bytesPerSec int64, now time.Time) ([]byte, int) {
	n := min(fragmentBytes, len(b.payload)-b.off)
	var flags byte
	if b.off == 0 {
		flags |= peerwire.FragmentFirst
	}
	if b.off+n == len(b.payload) {
		flags |= peerwire.FragmentLast
	}
	buf = peerwire.AppendFragmentFrame(buf, flags, b.payload[b.off:b.off+n])
	b.off += n
	if b.off == len(b.payload) {
		*b = bigMessage{}
		return buf, n
	}
	b.next = now
	if bytesPerSec > 0 {
		b.next = now.Add(time.Duration(float64(n) / float64(bytesPerSec) * float64(time.Second)))
	}
	return buf, n
}

// controlBytesMax is the largest message that travels in the control lane; bulkBytesPerWrite is
// how much of the rest one write may carry; a message above fragmentAbove travels in fragments
// of fragmentBytes.
const (
	controlBytesMax   = 4 << 10
	bulkBytesPerWrite = 1 << 20
	fragmentAbove     = 2 << 20
	fragmentBytes     = 256 << 10
)

// controlLane says m may overtake the bulk messages queued before it: small, and not a forward.
// Forwarded client commands keep their order (a client pipelining on one connection to a follower
// must see its writes applied in the order it sent them); a small forward overtaking a large one
// applied a client's put 127 after its put 187 (TestE2EAPIs, race-built replicas).
func controlLane(m *paxos.Message) bool {
	return m.Type != paxos.MsgForward && messageBytes(m) <= controlBytesMax
}

// takeLocked moves into batch every queued control message and, after them, queued bulk messages
// in their order up to bulkBytesPerWrite (at least one); when takeLarge is set, it also takes the
// first message larger than fragmentAbove and returns it apart (else such messages wait their
// turn). It reports whether bulk messages are left that could go now, and whether large ones are.
func (p *peer) takeLocked(batch []paxos.Message, takeLarge bool) (_ []paxos.Message, large *paxos.Message, readyBulk, largeWaiting bool) {
	for i := range p.queue {
		if controlLane(&p.queue[i]) {
			batch = append(batch, p.queue[i])
		}
	}
	bulk, restBytes, rest := 0, 0, p.queue[:0]
	for i := range p.queue {
		m := &p.queue[i]
		size := messageBytes(m)
		switch {
		case controlLane(m): // taken above
		case size > fragmentAbove && takeLarge && large == nil:
			c := *m
			large = &c
		case size > fragmentAbove:
			rest = append(rest, *m) // waits for the one being fragmented
			restBytes += size
			largeWaiting = true
		case bulk == 0 || bulk+size <= bulkBytesPerWrite:
			batch = append(batch, *m)
			bulk += size
		default:
			rest = append(rest, *m) // in place: rest never passes i
			restBytes += size
			readyBulk = true
		}
	}
	clear(p.queue[len(rest):])
	p.queue, p.queueBytes = rest, restBytes
	return batch, large, readyBulk, largeWaiting
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
	p.epoch++
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
		p.epoch++
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
	asm := peerwire.NewAssembler(t.cfg.PeerFrameBytesMax)
	for {
		typ, payload, err := ac.rd.Next()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && ctx.Err() == nil {
				t.log.Warn("closing peer connection", "peer", p.id, "err", err)
			}
			return
		}
		if typ == peerwire.TypeFragment {
			// A piece of a large message: nothing to deliver until its last piece. The assembled
			// payload is ours alone, so the message decoded from it is handed over without a copy.
			whole, err := asm.Add(payload)
			if err != nil {
				t.log.Warn("closing peer connection: bad fragment", "peer", p.id, "err", err)
				return
			}
			if whole == nil {
				continue
			}
			var big paxos.Message
			if !t.check(p, whole, &big) || !t.deliver(ctx, big) {
				return
			}
			continue
		}
		if typ >= wire.TypeHello {
			t.log.Warn("closing peer connection: handshake frame after the handshake", "peer", p.id, "type", typ)
			return
		}
		if !t.check(p, payload, &m) {
			return
		}
		// The core keeps what Step is given, and m aliases the reader's buffer: hand over a copy.
		if !t.deliver(ctx, peerwire.CloneMessage(&m)) {
			return
		}
	}
}

// check decodes one message payload into m and reports whether it may be delivered: it decodes,
// and it names the authenticated peer as sender and this replica as receiver. Otherwise it logs
// why the connection closes.
func (t *transport) check(p *peer, payload []byte, m *paxos.Message) bool {
	if _, err := peerwire.DecodeMessage(payload, m); err != nil {
		t.log.Warn("closing peer connection: bad message", "peer", p.id, "err", err)
		return false
	}
	if m.From != p.id || m.To != t.self {
		t.log.Warn("closing peer connection: message not from its authenticated sender", "peer", p.id, "from", m.From, "to", m.To)
		return false
	}
	return true
}
