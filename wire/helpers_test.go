package wire

import (
	"bytes"
	"fmt"
	"math"

	"github.com/sofadb/sofadb/paxos"
)

// The decoders turn empty byte strings into nil and reuse slices, so tests compare by content:
// nil and empty are the same here, as they are to every user of these types.

func sameCommand(a, b *paxos.Command) bool {
	return a.ClientID == b.ClientID && a.Seq == b.Seq && a.Op == b.Op &&
		bytes.Equal(a.Key, b.Key) && bytes.Equal(a.Value, b.Value)
}

func sameCommands(a, b []paxos.Command) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !sameCommand(&a[i], &b[i]) {
			return false
		}
	}
	return true
}

func sameEntry(a, b *paxos.Entry) bool {
	return a.Slot == b.Slot && a.Ballot == b.Ballot && a.Chosen == b.Chosen && sameCommands(a.Cmds, b.Cmds)
}

func sameEntries(a, b []paxos.Entry) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !sameEntry(&a[i], &b[i]) {
			return false
		}
	}
	return true
}

func sameMessage(a, b *paxos.Message) bool {
	return a.Type == b.Type && a.From == b.From && a.To == b.To && a.Ballot == b.Ballot &&
		a.Slot == b.Slot && a.Commit == b.Commit && a.Stamp == b.Stamp &&
		sameEntries(a.Entries, b.Entries) && sameCommands(a.Cmds, b.Cmds) && bytes.Equal(a.Data, b.Data)
}

// filled returns n bytes of a recognisable pattern, so a decode that reads the wrong bytes shows.
func filled(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7)
	}
	return b
}

// batch returns n commands with keyBytes-byte keys and valueBytes-byte values, ops cycling through
// put, get and delete.
func batch(n, keyBytes, valueBytes int) []paxos.Command {
	cmds := make([]paxos.Command, n)
	for i := range cmds {
		cmds[i] = paxos.Command{
			ClientID: uint64(1000 + i%7),
			Seq:      uint64(i * 131),
			Op:       paxos.Op(1 + i%3),
			Key:      filled(keyBytes, byte(i)),
			Value:    filled(valueBytes, byte(i+1)),
		}
	}
	return cmds
}

// sampleEntries covers the shapes an entry takes: a no-op, the zero value, one command with empty
// key and value, extreme integers, a large value and a full batch.
func sampleEntries() []paxos.Entry {
	return []paxos.Entry{
		{},
		{Slot: 1, Ballot: paxos.MakeBallot(1, 1)},
		{Slot: 2, Ballot: paxos.MakeBallot(3, 2), Chosen: true, Cmds: []paxos.Command{}},
		{Slot: 3, Ballot: paxos.MakeBallot(3, 2), Cmds: []paxos.Command{{Op: paxos.OpGet}}},
		{Slot: math.MaxUint64, Ballot: math.MaxUint64, Chosen: true, Cmds: []paxos.Command{
			{ClientID: math.MaxUint64, Seq: math.MaxUint64, Op: paxos.OpDelete, Key: []byte("k")},
		}},
		{Slot: 4, Ballot: paxos.MakeBallot(9, 3), Cmds: []paxos.Command{
			{ClientID: 7, Seq: 1, Op: paxos.OpPut, Key: filled(300, 1), Value: filled(1<<20, 2)},
		}},
		{Slot: 5, Ballot: paxos.MakeBallot(1<<40, 65535), Cmds: batch(64, 16, 128)},
	}
}

func describeEntry(e *paxos.Entry) string {
	return fmt.Sprintf("slot %d ballot %v chosen %v cmds %d", e.Slot, e.Ballot, e.Chosen, len(e.Cmds))
}
