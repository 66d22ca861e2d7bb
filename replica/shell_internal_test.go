package replica

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sofadb/sofadb/paxos"
	"github.com/sofadb/sofadb/wire"
	"github.com/sofadb/sofadb/wire/peerwire"
)

// TestShellStopsWhenAServerGoroutineFails (issue 10, item 5): the process shell's goroutines run
// under one errgroup, so when the HTTP server stops serving on its own the replica stops with that
// error, instead of running on with an API nobody can reach.
func TestShellStopsWhenAServerGoroutineFails(t *testing.T) {
	free := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}
	s, err := testServer(t, func(c *Config) {
		addrs := func() map[paxos.ReplicaID]string {
			return map[paxos.ReplicaID]string{1: free(), 2: "127.0.0.1:2", 3: "127.0.0.1:3"}
		}
		c.PeerAddrs, c.ClientAddrs, c.HTTPAddrs = addrs(), addrs(), addrs()
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(context.Background()) }()
	deadline := time.Now().Add(5 * time.Second)
	for s.published.Load() == nil { // the loop is running
		if time.Now().After(deadline) {
			t.Fatal("the replica never started its loop")
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.httpLn.Close() // the HTTP server's Serve returns an error that is not a shutdown
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "http server") {
			t.Fatalf("Run returned %v, want the HTTP server's failure", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the replica kept running after its HTTP server failed")
	}
}

// TestListenAndAdvertiseDiffer (issue 11, frictions): a replica binds its listen addresses and
// hands out its advertised ones; in a container the two differ (0.0.0.0:7001 behind the address
// the network gives it). The advertised addresses here belong to no interface of this machine, so
// binding them would fail.
func TestListenAndAdvertiseDiffer(t *testing.T) {
	away := map[paxos.ReplicaID]string{1: "192.0.2.1:7001", 2: "192.0.2.2:7001", 3: "192.0.2.3:7001"} // TEST-NET-1
	cfg := DefaultConfig(1, away, away, away)
	cfg.DataDir, cfg.ClusterKey = t.TempDir(), []byte("0123456789abcdef0123456789abcdef")
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "192.0.2.1:7001") {
		t.Fatalf("binding an advertised address of another machine: err = %v, want the address named", err)
	}
	cfg.PeerListen, cfg.ClientListen, cfg.HTTPListen = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for what, ln := range map[string]net.Listener{"peer": s.tr.ln, "client": s.fr.ln, "http": s.httpLn} {
		if host, _, _ := net.SplitHostPort(ln.Addr().String()); host != "127.0.0.1" {
			t.Errorf("%s listener bound %s, want the listen address", what, ln.Addr())
		}
	}
	if s.cfg.ClientAddrs[1] != "192.0.2.1:7001" {
		t.Errorf("advertised client address became %q", s.cfg.ClientAddrs[1])
	}
}

// TestTransportStopsWhenAHandshakeEndsAfterTheShutdown: a dial whose handshake completes after
// the shutdown closed every current connection used to read that new connection for ever, and
// the replica ignored SIGTERM (seen in TestE2EStopUnderLoad once the first handshake with a peer
// wrote its identity to disk). The peer here answers the handshake only after the shutdown began.
func TestTransportStopsWhenAHandshakeEndsAfterTheShutdown(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	peerLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer peerLn.Close()
	ctx, cancel := context.WithCancel(context.Background())
	go func() { // replica 2: answers the Hello once replica 1's shutdown has begun, then idles
		c, err := peerLn.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		rd := wire.NewReader(c, 1<<10, wire.HandshakeTypes)
		_, payload, err := rd.Next()
		var hello wire.Hello
		if err != nil || func() error { _, err := wire.DecodeHello(payload, &hello); return err }() != nil {
			return
		}
		cancel()
		time.Sleep(100 * time.Millisecond)
		ch := wire.Challenge{From: 2, Identity: wire.Identity{2}, Nonce: wire.NewNonce()}
		ch.MAC = wire.HandshakeMAC(key, wire.RoleResponder, wire.NewTranscript(&hello, &ch))
		c.Write(wire.AppendChallengeFrame(nil, &ch))
		rd.Next()                    // the Proof
		time.Sleep(10 * time.Second) // and then nothing: only replica 1 closing ends its read
	}()
	addrs := map[paxos.ReplicaID]string{1: "127.0.0.1:0", 2: peerLn.Addr().String()}
	cfg := DefaultConfig(1, addrs, addrs, addrs)
	cfg.ClusterKey = key
	book, err := openPeerBook(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tr := newTransport(&cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), wire.Identity{1}, book,
		func(context.Context, paxos.Message) bool { return true })
	if tr.ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { tr.run(ctx); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the transport did not stop: a connection authenticated after the shutdown is still read")
	}
}

// TestControlMessagesOvertakeBulk: a heartbeat queued behind megabytes of accepts leaves in the
// next write, ahead of them, and one write carries at most bulkBytesPerWrite of bulk (at least one
// message); bulk keeps its order.
func TestControlMessagesOvertakeBulk(t *testing.T) {
	p := &peer{}
	big := func(slot uint64) paxos.Message {
		return paxos.Message{Type: paxos.MsgAccept, Entries: []paxos.Entry{{Slot: slot, Cmds: []paxos.Command{{Data: make([]byte, 400<<10)}}}}}
	}
	for s := uint64(1); s <= 6; s++ {
		p.queue = append(p.queue, big(s))
	}
	p.queue = append(p.queue, paxos.Message{Type: paxos.MsgCommit, Commit: 7, Stamp: 1})
	batch, _, more, _ := p.takeLocked(nil, true)
	if !more || len(batch) != 3 || batch[0].Type != paxos.MsgCommit || batch[1].Entries[0].Slot != 1 || batch[2].Entries[0].Slot != 2 {
		t.Fatalf("first write: %d messages (more %v), want the heartbeat then slots 1-2", len(batch), more)
	}
	var slots []uint64
	for more {
		batch, _, more, _ = p.takeLocked(nil, true)
		for _, m := range batch {
			slots = append(slots, m.Entries[0].Slot)
		}
	}
	if fmt.Sprint(slots) != "[3 4 5 6]" || p.queueBytes != 0 || len(p.queue) != 0 {
		t.Fatalf("the rest left as %v (queue %d, %d bytes), want [3 4 5 6] in order and an empty queue", slots, len(p.queue), p.queueBytes)
	}
}

// TestForwardsKeepTheirOrder: forwarded client commands never overtake one another, whatever their
// size (a small forward in the control lane overtook a large one, and a client's pipelined puts
// were applied out of order).
func TestForwardsKeepTheirOrder(t *testing.T) {
	p := &peer{}
	fwd := func(seq uint64, bytes int) paxos.Message {
		return paxos.Message{Type: paxos.MsgForward, Cmds: []paxos.Command{{ClientID: 1, Seq: seq, Data: make([]byte, bytes)}}}
	}
	p.queue = append(p.queue, fwd(1, 8<<10), fwd(2, 10), paxos.Message{Type: paxos.MsgCommitAck, Commit: 3}, fwd(3, 10))
	batch, _, _, _ := p.takeLocked(nil, true)
	var order []string
	for _, m := range batch {
		if m.Type == paxos.MsgForward {
			order = append(order, fmt.Sprint(m.Cmds[0].Seq))
		} else {
			order = append(order, "ack")
		}
	}
	if got := strings.Join(order, " "); got != "ack 1 2 3" {
		t.Fatalf("one write carries %q, want the acknowledgement first and the forwards in their order: \"ack 1 2 3\"", got)
	}
}

// TestResentAcceptsAreNotQueuedTwiceOnOneConnection: the core's resend of an accept already queued
// on the live connection is dropped (before, every resend was queued: six copies per accept under
// a large-value burst); a new connection, a new ballot or a second of quiet lets it through, and
// so does everything that is not an accept.
func TestResentAcceptsAreNotQueuedTwiceOnOneConnection(t *testing.T) {
	clock := time.Unix(1000, 0)
	addrs := map[paxos.ReplicaID]string{1: "127.0.0.1:0", 2: "127.0.0.1:0"}
	cfg := DefaultConfig(1, addrs, addrs, addrs)
	tr := newTransport(&cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), wire.Identity{1}, nil,
		func(context.Context, paxos.Message) bool { return true })
	tr.now = func() time.Time { return clock }
	p := tr.peers[2]
	a, b := net.Pipe()
	defer b.Close()
	accept := func(slot uint64, ballot paxos.Ballot) *paxos.Message {
		return &paxos.Message{Type: paxos.MsgAccept, To: 2, Ballot: ballot,
			Entries: []paxos.Entry{{Slot: slot, Ballot: ballot, Cmds: []paxos.Command{{Data: make([]byte, 60<<10)}}}}}
	}
	queued := func() int { p.mu.Lock(); defer p.mu.Unlock(); return len(p.queue) }

	tr.send(accept(5, 7)) // no connection: queued (and dropped by the writer), not remembered
	tr.send(accept(5, 7))
	if queued() != 2 {
		t.Fatalf("without a connection %d queued, want 2: nothing can be known delivered", queued())
	}
	p.setConn(a)
	tr.send(accept(5, 7))
	tr.send(accept(5, 7)) // the resend
	tr.send(accept(6, 7))
	tr.send(&paxos.Message{Type: paxos.MsgCommit, To: 2, Ballot: 7, Commit: 3})
	tr.send(&paxos.Message{Type: paxos.MsgCommit, To: 2, Ballot: 7, Commit: 3})
	if queued() != 2+4 || p.suppressed.Load() != 1 {
		t.Fatalf("on a live connection %d queued (%d suppressed), want 4 more and 1", queued()-2, p.suppressed.Load())
	}
	tr.send(accept(5, 8)) // another ballot
	clock = clock.Add(acceptResendQuiet)
	tr.send(accept(6, 7)) // a second later
	if queued() != 8 {
		t.Fatalf("%d queued, want 8: a new ballot and a quiet period let accepts through", queued())
	}
	p.closeConn(a)
	c, d := net.Pipe()
	defer d.Close()
	p.setConn(c)
	tr.send(accept(5, 8)) // the connection it went on broke: it may be lost
	if queued() != 9 || p.suppressed.Load() != 1 {
		t.Fatalf("after a reconnect %d queued (%d suppressed), want 9 and 1", queued(), p.suppressed.Load())
	}
	p.mu.Lock()
	for i := range uint64(3 * acceptsRememberedMax) {
		p.rememberAccept(accept(i+100, 8), clock)
	}
	if len(p.accepts) > acceptsRememberedMax {
		t.Fatalf("%d accepts remembered, want at most %d", len(p.accepts), acceptsRememberedMax)
	}
	p.mu.Unlock()
}

// TestHeartbeatsOvertakeASnapshotInFlight: a snapshot goes in paced fragments, and a heartbeat
// queued while it is being sent reaches the peer before its last fragment. (As one frame, a 170 MB
// snapshot held the heartbeats to the peer installing it for seconds, and that peer campaigned.)
func TestHeartbeatsOvertakeASnapshotInFlight(t *testing.T) {
	addrs := map[paxos.ReplicaID]string{1: "127.0.0.1:0", 2: "127.0.0.1:0"}
	cfg := DefaultConfig(1, addrs, addrs, addrs)
	cfg.SnapshotSendBytesPerSec = 16 << 20 // 4 MiB: 16 fragments over about 250 ms
	tr := newTransport(&cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), wire.Identity{1}, nil,
		func(context.Context, paxos.Message) bool { return true })
	p := tr.peers[2]
	a, b := net.Pipe()
	defer b.Close()
	p.setConn(a)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tr.wg.Add(1)
	go p.writeLoop(ctx)

	state := bytes.Repeat([]byte("0123456789abcdef"), 4<<20/16)
	tr.send(&paxos.Message{Type: paxos.MsgSnapshot, From: 1, To: 2, Slot: 9, Data: state})
	tr.flush()
	go func() {
		time.Sleep(50 * time.Millisecond)
		tr.send(&paxos.Message{Type: paxos.MsgCommit, From: 1, To: 2, Ballot: 5, Commit: 3})
		tr.flush()
	}()

	rd := wire.NewReader(b, cfg.PeerFrameBytesMax, peerwire.Types)
	asm := peerwire.NewAssembler(cfg.PeerFrameBytesMax)
	heartbeatAt, fragmentsSeen := -1, 0
	start := time.Now()
	for {
		b.SetReadDeadline(time.Now().Add(5 * time.Second))
		typ, payload, err := rd.Next()
		if err != nil {
			t.Fatalf("after %d fragments: %v", fragmentsSeen, err)
		}
		if typ != peerwire.TypeFragment {
			heartbeatAt = fragmentsSeen
			continue
		}
		fragmentsSeen++
		whole, err := asm.Add(payload)
		if err != nil {
			t.Fatal(err)
		}
		if whole == nil {
			continue
		}
		var m paxos.Message
		if _, err := peerwire.DecodeMessage(whole, &m); err != nil || m.Slot != 9 || !bytes.Equal(m.Data, state) {
			t.Fatalf("snapshot assembled as slot %d with %d bytes: %v", m.Slot, len(m.Data), err)
		}
		break
	}
	took := time.Since(start)
	if heartbeatAt < 0 || heartbeatAt >= fragmentsSeen {
		t.Fatalf("the heartbeat arrived after fragment %d of %d: it waited for the snapshot", heartbeatAt, fragmentsSeen)
	}
	if fragmentsSeen < 16 || took < 150*time.Millisecond {
		t.Fatalf("%d fragments in %v: want 16 paced over about 250 ms", fragmentsSeen, took)
	}
}
