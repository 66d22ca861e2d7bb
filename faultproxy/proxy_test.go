package faultproxy

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/sofadb/sofadb/paxos"
	"github.com/sofadb/sofadb/wire"
	"github.com/sofadb/sofadb/wire/peerwire"
)

// frame is a real peer frame whose slot field numbers it.
func frame(i uint64, pad int) []byte {
	m := paxos.Message{Type: paxos.MsgSnapshot, From: 1, To: 2, Slot: i, Data: make([]byte, pad)}
	return peerwire.AppendMessageFrame(nil, &m)
}

// setup starts a proxy for replicas 1 (dialer) and 2 (target) and returns both ends of one
// proxied connection.
func setup(t *testing.T) (*Proxy, net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	p := New(1)
	t.Cleanup(func() { p.Close() })
	addr, err := p.AddPair(1, 2, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	a, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	b, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return p, a, b
}

// readSlots reads frames from c until want arrive or the deadline passes, returning their slots.
func readSlots(t *testing.T, c net.Conn, want int, within time.Duration) []uint64 {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(within))
	rd := wire.NewReader(c, 0, peerwire.Types)
	var slots []uint64
	for len(slots) < want {
		_, payload, err := rd.Next()
		if err != nil {
			break
		}
		var m paxos.Message
		if _, err := peerwire.DecodeMessage(payload, &m); err != nil {
			t.Fatalf("a frame came out damaged: %v", err)
		}
		slots = append(slots, m.Slot)
	}
	return slots
}

func TestFramesPassUnchangedAndInOrder(t *testing.T) {
	_, a, b := setup(t)
	var sent bytes.Buffer
	for i := range uint64(200) {
		sent.Write(frame(i, int(i*37%5000)))
	}
	go a.Write(sent.Bytes())
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, sent.Len())
	if _, err := io.ReadFull(b, got); err != nil || !bytes.Equal(got, sent.Bytes()) {
		t.Fatalf("the stream came out changed (%v)", err)
	}
}

func TestDelayAndJitterNeverReorder(t *testing.T) {
	p, a, b := setup(t)
	p.Set(1, 2, Faults{Delay: 100 * time.Millisecond, Jitter: 50 * time.Millisecond})
	start := time.Now()
	for i := range uint64(50) {
		a.Write(frame(i, 10))
	}
	slots := readSlots(t, b, 50, 5*time.Second)
	took := time.Since(start)
	if len(slots) != 50 || took < 100*time.Millisecond {
		t.Fatalf("%d frames in %v: want 50, none before the 100 ms delay", len(slots), took)
	}
	for i, s := range slots {
		if s != uint64(i) {
			t.Fatalf("frame %d arrived as %d-th: the stream was reordered", s, i)
		}
	}
}

func TestLossDropsWholeFramesAtTheRateAsked(t *testing.T) {
	p, a, b := setup(t)
	p.Set(1, 2, Faults{Loss: 0.3})
	go func() {
		for i := range uint64(2000) {
			a.Write(frame(i, 100))
		}
	}()
	slots := readSlots(t, b, 2000, 2*time.Second) // the survivors, then the deadline
	// Binomial(2000, 0.7): mean 1400, sd about 20.5.
	if len(slots) < 1300 || len(slots) > 1500 {
		t.Fatalf("%d of 2000 frames passed a 30%% loss", len(slots))
	}
	if p.Dropped.Load() != 2000-uint64(len(slots)) {
		t.Fatalf("dropped counter %d, want %d", p.Dropped.Load(), 2000-len(slots))
	}
}

// One way: 1 -> 2 is a blackhole, 2 -> 1 still passes, on the same connection.
func TestOneWayBlackhole(t *testing.T) {
	p, a, b := setup(t)
	p.Set(1, 2, Faults{Blackhole: true})
	a.Write(frame(7, 10))
	b.Write(frame(8, 10))
	if got := readSlots(t, a, 1, time.Second); len(got) != 1 || got[0] != 8 {
		t.Fatalf("2 -> 1 carried %v, want [8]", got)
	}
	if got := readSlots(t, b, 1, 300*time.Millisecond); len(got) != 0 {
		t.Fatalf("1 -> 2 carried %v through a blackhole", got)
	}
	p.Heal()
	a.Write(frame(9, 10))
	if got := readSlots(t, b, 1, time.Second); len(got) != 1 || got[0] != 9 {
		t.Fatalf("after Heal 1 -> 2 carried %v, want [9]", got)
	}
}

func TestRefuseCutsAndKeepsOut(t *testing.T) {
	p, a, _ := setup(t)
	p.Set(2, 1, Faults{Refuse: true})
	a.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := a.Read(make([]byte, 1)); err == nil {
		t.Fatal("the connection survived Refuse")
	}
	p.mu.Lock()
	addr := p.pairs[0].ln.Addr().String()
	p.mu.Unlock()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("a new connection was carried while refused")
	}
}

func TestBandwidthCap(t *testing.T) {
	p, a, b := setup(t)
	p.Set(1, 2, Faults{BytesPerSec: 4 << 20})
	start := time.Now()
	go func() {
		for i := range uint64(16) {
			a.Write(frame(i, 64<<10)) // 1 MiB in all
		}
	}()
	if got := readSlots(t, b, 16, 5*time.Second); len(got) != 16 {
		t.Fatalf("%d of 16 frames", len(got))
	}
	if took := time.Since(start); took < 200*time.Millisecond {
		t.Fatalf("1 MiB at 4 MiB/s took %v: want at least 200 ms", took)
	}
}

// Bytes that are not frames end the connection instead of being carried blindly.
func TestGarbageEndsTheConnection(t *testing.T) {
	_, a, b := setup(t)
	junk := binary.LittleEndian.AppendUint32([]byte{9}, 5)
	a.Write(append(junk, make([]byte, 20)...))
	b.SetReadDeadline(time.Now().Add(2 * time.Second))
	if n, err := b.Read(make([]byte, 64)); err == nil {
		t.Fatalf("%d bytes of garbage carried", n)
	}
}
