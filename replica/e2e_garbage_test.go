package replica_test

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sofadb/sofadb/kv"
	"github.com/sofadb/sofadb/paxos"
	"github.com/sofadb/sofadb/wire"
	"github.com/sofadb/sofadb/wire/peerwire"
)

// rawFrame builds a frame by hand: version, length, CRC32C, then payload (type byte and body), so
// tests can send types and lengths no encoder in wire/ would write.
func rawFrame(version byte, length uint32, payload []byte) []byte {
	head := []byte{version, 0, 0, 0, 0}
	binary.LittleEndian.PutUint32(head[1:], length)
	tab := crc32.MakeTable(crc32.Castagnoli)
	sum := crc32.Update(crc32.Update(0, tab, head), tab, payload)
	return append(binary.LittleEndian.AppendUint32(head, sum), payload...)
}

// validFrame is a well-formed frame around payload.
func validFrame(payload []byte) []byte { return rawFrame(wire.Version, uint32(len(payload)), payload) }

// randomBytes are n seeded random bytes whose first byte is not a frame version, so the reason a
// server gives for refusing them is always the same.
func randomBytes(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	b[0] = 0xAB
	return b
}

// garbageCase is one kind of bad input and the reason the replica must log for it.
type garbageCase struct {
	name   string
	send   []byte
	reason string
}

// clientGarbage is bad input for the binary client port.
func clientGarbage() []garbageCase {
	request := wire.AppendRequest(nil, &wire.Request{ClientID: 1, Seq: 1, Op: kv.OpPut, Key: []byte("k"), Value: []byte("v")})
	badCRC := validFrame(request)
	badCRC[len(badCRC)-1] ^= 0xff
	badOp := append([]byte(nil), request...)
	badOp[3] = 9 // type, client id 1, seq 1, then the op
	return []garbageCase{
		{"random bytes", randomBytes(1, 4096), "unknown format version 171"},
		{"an HTTP request", []byte("GET /status HTTP/1.1\r\nHost: x\r\n\r\n"), "unknown format version 71"},
		{"a header announcing 4 GiB", rawFrame(wire.Version, 0xFFFFFFF0, []byte{byte(wire.TypeRequest)}), "frame larger than the maximum (4294967280 bytes"},
		{"a frame of an unknown type", validFrame([]byte{200, 1, 2, 3}), "unknown or unexpected type type(200)"},
		{"a response frame", wire.AppendResponseFrame(nil, &wire.Response{Seq: 1, Status: wire.StatusOK}), "unknown or unexpected type response"},
		{"a peer message", peerwire.AppendMessageFrame(nil, &paxos.Message{Type: paxos.MsgPrepare, From: 1, To: 2}), "unknown or unexpected type prepare"},
		{"a bad checksum", badCRC, "checksum mismatch"},
		{"an unknown op", validFrame(badOp), "unknown op"},
		{"a truncated body", validFrame(request[:5]), "body ends inside a field"},
		{"an empty frame", rawFrame(wire.Version, 0, nil), "empty frame"},
		{"a frame cut short", validFrame(request)[:12], "stream ended inside a frame"},
	}
}

// peerGarbage is bad input for the peer port of replica self (which accepts Hellos from lower ids
// only): everything a connection without the key can send before the handshake is done.
func peerGarbage(self paxos.ReplicaID) []garbageCase {
	hello := func(from, to paxos.ReplicaID) []byte {
		return wire.AppendHelloFrame(nil, &wire.Hello{From: uint16(from), To: uint16(to), Nonce: wire.NewNonce()})
	}
	return []garbageCase{
		{"random bytes", randomBytes(2, 4096), "unknown format version 171"},
		{"an HTTP request", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), "unknown format version 71"},
		{"a header announcing 4 GiB", rawFrame(wire.Version, 0xFFFFFFF0, []byte{byte(wire.TypeHello)}), "frame larger than the maximum"},
		{"a hello to the wrong id", hello(1, 99), "hello from 1 to 99"},
		{"a hello from itself", hello(self, self), fmt.Sprintf("hello from %d to %d", self, self)},
		{"a hello from an unknown id", hello(77, self), fmt.Sprintf("hello from 77 to %d", self)},
		{"a peer message before the handshake", peerwire.AppendMessageFrame(nil, &paxos.Message{Type: paxos.MsgAccept, From: 1, To: self}), "unknown or unexpected type accept"},
		{"a client request", wire.AppendRequestFrame(nil, &wire.Request{ClientID: 1, Seq: 1, Op: kv.OpGet, Key: []byte("k")}), "unknown or unexpected type request"},
		{"a hello then garbage", append(hello(1, self), randomBytes(3, 64)...), "unknown format version 171"},
		{"a hello then a hello", append(hello(1, self), hello(1, self)...), "got hello, want a proof"},
		{"a hello then a truncated proof", append(hello(1, self), validFrame([]byte{byte(wire.TypeProof), 1, 2})...), "body ends inside a field"},
	}
}

// sendGarbage sends each case on its own connection to addr and checks that the replica closes it.
func sendGarbage(t *testing.T, addr, port string, cases []garbageCase) {
	t.Helper()
	for _, gc := range cases {
		nc, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		nc.SetWriteDeadline(time.Now().Add(2 * time.Second))
		nc.Write(gc.send) // may fail once the replica has seen enough and closed
		if gc.name == "a frame cut short" {
			nc.(*net.TCPConn).CloseWrite() // the end of the stream is what is wrong
		}
		expectClosed(t, nc, 5*time.Second, fmt.Sprintf("%s port %s: %s", port, addr, gc.name))
		nc.Close()
	}
}

// TestE2EGarbage sends garbage to every port of every replica: the binary client port (random
// bytes, HTTP, a header announcing 4 GiB, unknown types, bad checksums, bad bodies), the peer port
// before authentication (the same, Hellos to the wrong id, messages and client frames before the
// handshake, bad Proofs, a silent connection, a flood of half-open connections) and the HTTP port.
// Each connection must be closed, its reason logged and counted, and afterwards every replica must
// still be alive and serving, with its peer links up.
func TestE2EGarbage(t *testing.T) {
	c, _ := startCluster(t, 3)
	silent, err := net.Dial("tcp", c.PeerAddr(3)) // must be dropped by the handshake timeout (2 s)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()

	for _, id := range c.IDs() {
		p := c.Replica(id)
		bad0, refused0 := metric(t, p, "sofadb_bad_client_connections_total"), metric(t, p, refusedMetric)
		cc := clientGarbage()
		sendGarbage(t, p.ClientAddr, "client", cc)
		var reasons []string
		for _, gc := range cc {
			reasons = append(reasons, gc.reason)
		}
		waitLog(t, p, "client garbage", append(reasons, "closing client connection")...)
		if bad := metric(t, p, "sofadb_bad_client_connections_total"); bad-bad0 != float64(len(cc)) {
			t.Errorf("replica %d counted %v bad client connections, want %d", id, bad-bad0, len(cc))
		}
		if id == 1 {
			continue // replica 1 gets the flood below
		}
		pc := peerGarbage(paxos.ReplicaID(id))
		sendGarbage(t, p.PeerAddr, "peer", pc)
		reasons = reasons[:0]
		for _, gc := range pc {
			reasons = append(reasons, gc.reason)
		}
		waitLog(t, p, "peer garbage", append(reasons, "refused peer connection")...)
		if refused := metric(t, p, refusedMetric); refused-refused0 < float64(len(pc)) {
			t.Errorf("replica %d counted %v refused handshakes, want at least %d", id, refused-refused0, len(pc))
		}
	}

	// HTTP: garbage gets 400 with a message.
	for _, id := range c.IDs() {
		if got := rawExchange(t, c.HTTPAddr(id), "GARBAGE\r\n\r\n"); !strings.HasPrefix(got, "HTTP/1.1 400") || !strings.Contains(got, "bad request: ") {
			t.Errorf("replica %d answered HTTP garbage with %q, want 400 with a message", id, got)
		}
	}

	// A flood of half-open peer connections: beyond the limit (32) they are closed at once; the
	// others when the handshake times out.
	r1 := c.Replica(1)
	refused0 := metric(t, r1, refusedMetric)
	const flood = 40
	var wg sync.WaitGroup
	var mu sync.Mutex
	closedEarly := 0
	for range flood {
		nc, err := net.Dial("tcp", r1.PeerAddr)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer nc.Close()
			start := time.Now()
			expectClosed(t, nc, 5*time.Second, "half-open peer connection")
			if time.Since(start) < time.Second {
				mu.Lock()
				closedEarly++
				mu.Unlock()
			}
		}()
	}
	expectClosed(t, silent, 5*time.Second, "silent peer connection")
	wg.Wait()
	if closedEarly < flood-32 {
		t.Errorf("%d of %d half-open connections closed before the handshake timeout, want at least %d", closedEarly, flood, flood-32)
	}
	waitFor(t, 5*time.Second, "every half-open connection counted as refused", func() bool {
		return metric(t, r1, refusedMetric)-refused0 >= flood
	})
	waitLog(t, c.Replica(3), "silent peer", "i/o timeout")

	clusterServes(t, c, "after-garbage")
}
