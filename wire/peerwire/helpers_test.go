package peerwire

import (
	"bytes"
	"fmt"
	"math"

	"github.com/sofadb/sofadb/paxos"
)

// The decoders turn empty byte strings into nil and reuse slices, so tests compare by content:
// nil and empty are the same here, as they are to every user of these types.

func sameCommand(a, b *paxos.Command) bool {
	return a.ClientID == b.ClientID && a.Seq == b.Seq && bytes.Equal(a.Data, b.Data)
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

// batch returns n commands with keyBytes-byte keys and valueBytes-byte values, ops cycling through
// put, get and delete.
func batch(n, keyBytes, valueBytes int) []paxos.Command {
	cmds := make([]paxos.Command, n)
	for i := range cmds {
		cmds[i] = paxos.Command{
			ClientID: uint64(1000 + i%7),
			Seq:      uint64(i * 131),
			Data:     append(filled(keyBytes, byte(i)), filled(valueBytes, byte(i+1))...),
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
		{Slot: 3, Ballot: paxos.MakeBallot(3, 2), Cmds: []paxos.Command{{}}},
		{Slot: math.MaxUint64, Ballot: math.MaxUint64, Chosen: true, Cmds: []paxos.Command{
			{ClientID: math.MaxUint64, Seq: math.MaxUint64, Data: []byte("k")},
		}},
		{Slot: 4, Ballot: paxos.MakeBallot(9, 3), Cmds: []paxos.Command{
			{ClientID: 7, Seq: 1, Data: append(filled(300, 1), filled(1<<20, 2)...)},
		}},
		{Slot: 5, Ballot: paxos.MakeBallot(1<<40, 65535), Cmds: batch(64, 16, 128)},
	}
}

func describeEntry(e *paxos.Entry) string {
	return fmt.Sprintf("slot %d ballot %v chosen %v cmds %d", e.Slot, e.Ballot, e.Chosen, len(e.Cmds))
}

// sampleMessages has every message type at least once with the fields its type uses, plus the
// zero-valued, empty and extreme cases.
func sampleMessages() []paxos.Message {
	b := paxos.MakeBallot(7, 2)
	es := sampleEntries()
	chosen := []paxos.Entry{
		{Slot: 10, Ballot: b, Chosen: true, Cmds: batch(3, 16, 128)},
		{Slot: 11, Ballot: b, Chosen: true},
	}
	return []paxos.Message{
		{Type: paxos.MsgPrepare, From: 2, To: 1, Ballot: b, Slot: 100},
		{Type: paxos.MsgPrepare},
		{Type: paxos.MsgPromise, From: 1, To: 2, Ballot: b, Slot: 100, Commit: 99, Entries: es[:5]},
		{Type: paxos.MsgPromise, From: 1, To: 2, Ballot: b},
		{Type: paxos.MsgAccept, From: 2, To: 3, Ballot: b, Commit: 41, Entries: []paxos.Entry{
			{Slot: 42, Ballot: b, Cmds: batch(64, 16, 128)}}},
		{Type: paxos.MsgAccept, From: 2, To: 3, Ballot: b, Commit: 41, Entries: []paxos.Entry{{Slot: 43, Ballot: b}}},
		{Type: paxos.MsgAccept, From: 2, To: 1, Ballot: b, Entries: es[5:6]},
		{Type: paxos.MsgAccepted, From: 3, To: 2, Ballot: b, Slot: 42},
		{Type: paxos.MsgNack, From: 3, To: 2, Ballot: paxos.MakeBallot(9, 3)},
		{Type: paxos.MsgCommit, From: 2, To: 3, Ballot: b, Slot: 17, Commit: 42, Stamp: 123456789},
		{Type: paxos.MsgCommit, From: math.MaxUint16, To: math.MaxUint16, Ballot: math.MaxUint64,
			Commit: math.MaxUint64, Stamp: math.MaxUint64},
		{Type: paxos.MsgCommitAck, From: 3, To: 2, Ballot: b, Slot: 40, Commit: 42, Stamp: 123456789},
		{Type: paxos.MsgCatchup, From: 3, To: 2, Slot: 10, Commit: 42},
		{Type: paxos.MsgCatchupReply, From: 2, To: 3, Commit: 42, Entries: chosen},
		{Type: paxos.MsgCatchupReply, From: 2, To: 3, Slot: 10, Commit: 42},
		{Type: paxos.MsgForward, From: 3, To: 2, Cmds: batch(5, 8, 8)},
		{Type: paxos.MsgForward, From: 3, To: 2},
		{Type: paxos.MsgSnapshot, From: 2, To: 3, Slot: 1000, Data: filled(1<<20, 3)},
		{Type: paxos.MsgSnapshot, From: 2, To: 3},
		{Type: paxos.MsgPreVote, From: 3, To: 1, Commit: 42, Stamp: 7},
		{Type: paxos.MsgPreVoteOK, From: 1, To: 3, Stamp: 7},
	}
}

func describeMessage(i int, m *paxos.Message) string {
	return fmt.Sprintf("%d-%v-%dentries-%dcmds-%ddata", i, m.Type, len(m.Entries), len(m.Cmds), len(m.Data))
}

// filled returns n bytes of a recognisable pattern, so a decode that reads the wrong bytes shows.
func filled(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7)
	}
	return b
}

// loopReader serves the same bytes forever, for reading a stream of frames without allocating.
type loopReader struct {
	b   []byte
	off int
}

func (l *loopReader) Read(p []byte) (int, error) {
	n := copy(p, l.b[l.off:])
	l.off = (l.off + n) % len(l.b)
	return n, nil
}
