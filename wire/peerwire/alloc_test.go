//go:build !race

// The race detector allocates on its own, so allocation counts are only checked without it.

package peerwire

import (
	"math"
	"runtime"
	"testing"

	"github.com/sofadb/sofadb/paxos"
)

func TestEntryAllocs(t *testing.T) {
	e := paxos.Entry{Slot: 5, Ballot: paxos.MakeBallot(2, 1), Cmds: batch(64, 16, 128)}
	buf := AppendEntry(nil, &e)
	var got paxos.Entry
	if _, err := DecodeEntry(buf, &got); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { buf = AppendEntry(buf[:0], &e) }); n != 0 {
		t.Errorf("AppendEntry: %v allocs, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = DecodeEntry(buf, &got) }); n != 0 {
		t.Errorf("DecodeEntry: %v allocs, want 0", n)
	}
}

// Every message type, encoded bare and as a frame and decoded into a reused Message, allocates
// nothing once the buffer and the Message have grown (AllocsPerRun's warm-up run grows them).
func TestMessageAllocs(t *testing.T) {
	var m paxos.Message
	var buf []byte
	for i, msg := range sampleMessages() {
		enc := AppendMessage(nil, &msg)
		checkAllocs(t, describeMessage(i, &msg), map[string]func(){
			"AppendMessage":      func() { buf = AppendMessage(buf[:0], &msg) },
			"AppendMessageFrame": func() { buf = AppendMessageFrame(buf[:0], &msg) },
			"DecodeMessage":      func() { _, _ = DecodeMessage(enc, &m) },
		})
	}
}

func TestCloneMessageAllocatesAtMostThree(t *testing.T) {
	m := paxos.Message{Type: paxos.MsgPromise, Entries: []paxos.Entry{
		{Cmds: batch(10, 16, 128)}, {Cmds: batch(10, 16, 128)}}, Cmds: batch(3, 1, 1), Data: []byte("x")}
	if n := testing.AllocsPerRun(50, func() { _ = CloneMessage(&m) }); n > 3 {
		t.Fatalf("%v allocs, want at most 3", n)
	}
	empty := paxos.Message{Type: paxos.MsgAccepted, Slot: math.MaxUint64}
	if n := testing.AllocsPerRun(50, func() { _ = CloneMessage(&empty) }); n != 0 {
		t.Fatalf("empty message: %v allocs, want 0", n)
	}
}

// The worst case of memory per input byte is documented on DecodeMessage: a batch of empty
// commands. This pins the factor, so a change to paxos.Command's size or to the minimum encoding
// shows up here.
func TestDecodeMemoryBound(t *testing.T) {
	m := paxos.Message{Type: paxos.MsgForward, Cmds: make([]paxos.Command, 100_000)}
	enc := AppendMessage(nil, &m)
	var got paxos.Message
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, err := DecodeMessage(enc, &got); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	factor := float64(after.TotalAlloc-before.TotalAlloc) / float64(len(enc))
	if factor > 15 {
		t.Fatalf("decoding %d bytes allocated %.1f times as much", len(enc), factor)
	}
	t.Logf("%d bytes in, %.1f times as much allocated", len(enc), factor)
}

func checkAllocs(t *testing.T, name string, fns map[string]func()) {
	t.Helper()
	for fn, f := range fns {
		if n := testing.AllocsPerRun(20, f); n != 0 {
			t.Errorf("%s: %s: %v allocs, want 0", name, fn, n)
		}
	}
}
