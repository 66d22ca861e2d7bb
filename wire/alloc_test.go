//go:build !race

// The race detector allocates on its own, so allocation counts are only checked without it.

package wire

import (
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
