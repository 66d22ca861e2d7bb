//go:build !race

// The race detector allocates on its own, so allocation counts are only checked without it.

package wire

import (
	"math"
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
