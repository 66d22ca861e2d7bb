package peerwire

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/sofadb/sofadb/paxos"
	"github.com/sofadb/sofadb/wire"
)

// FuzzDecodeEntry decodes arbitrary bytes as an entry.
func FuzzDecodeEntry(f *testing.F) {
	for _, e := range sampleEntries() {
		if enc := AppendEntry(nil, &e); len(enc) <= seedable {
			f.Add(enc)
		}
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var e paxos.Entry
		n, err := DecodeEntry(in, &e)
		if err != nil {
			checkSentinel(t, err)
			return
		}
		if again := AppendEntry(nil, &e); !bytes.Equal(again, in[:n]) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", in[:n], again)
		}
	})
}

// FuzzDecodeMessage decodes arbitrary bytes as a peer message, into a fresh Message and into one
// left dirty by a larger message: both must agree, so no state leaks from one decode to the next.
func FuzzDecodeMessage(f *testing.F) {
	for _, m := range sampleMessages() {
		if enc := AppendMessage(nil, &m); len(enc) <= seedable {
			f.Add(enc)
		}
	}
	dirty := AppendMessage(nil, &paxos.Message{Type: paxos.MsgPromise, From: 9, To: 9, Ballot: 9,
		Slot: 9, Commit: 9, Entries: []paxos.Entry{{Slot: 9, Chosen: true, Cmds: batch(3, 2, 2)}, {Slot: 10}}})
	f.Fuzz(func(t *testing.T, in []byte) {
		var fresh, reused paxos.Message
		_, err := DecodeMessage(in, &fresh)
		if _, derr := DecodeMessage(dirty, &reused); derr != nil {
			t.Fatal(derr)
		}
		_, err2 := DecodeMessage(in, &reused)
		if (err == nil) != (err2 == nil) {
			t.Fatalf("fresh decode: %v, reused decode: %v", err, err2)
		}
		if err != nil {
			checkSentinel(t, err)
			return
		}
		if !sameMessage(&fresh, &reused) {
			t.Fatalf("fresh %+v\nreused %+v", fresh, reused)
		}
		if again := AppendMessage(nil, &fresh); !bytes.Equal(again, in) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", in, again)
		}
		if clone := CloneMessage(&fresh); !sameMessage(&clone, &fresh) {
			t.Fatal("clone differs")
		}
	})
}

// FuzzRoundTrip builds a message of every type, a request and a response from fuzzed field values,
// sends them through frames and a Reader, and checks each decodes to what was sent (minus the
// fields its type does not carry).
func FuzzRoundTrip(f *testing.F) {
	f.Add(uint8(3), uint16(1), uint16(2), uint64(7<<16|1), uint64(42), uint64(41), uint64(5), uint8(2), uint8(3), true, []byte("key"), []byte("value"))
	f.Add(uint8(0), uint16(0), uint16(65535), uint64(1<<63), uint64(0), uint64(1<<40), uint64(0), uint8(0), uint8(0), false, []byte{}, []byte(nil))
	f.Fuzz(func(t *testing.T, kind uint8, from, to uint16, ballot, slot, commit, stamp uint64,
		nEntries, nCmds uint8, chosen bool, key, value []byte) {
		cmds := make([]paxos.Command, nCmds%8)
		for i := range cmds {
			cmds[i] = paxos.Command{ClientID: stamp + uint64(i), Seq: slot ^ uint64(i), Data: append(key[:len(key):len(key)], value...)}
		}
		entries := make([]paxos.Entry, nEntries%4)
		for i := range entries {
			entries[i] = paxos.Entry{Slot: slot + uint64(i), Ballot: paxos.Ballot(ballot), Chosen: chosen, Cmds: cmds[:i%(len(cmds)+1)]}
		}
		var stream []byte
		var want []paxos.Message
		for mt := paxos.MsgType(1); mt.Valid(); mt++ {
			m := paxos.Message{Type: mt, From: paxos.ReplicaID(from), To: paxos.ReplicaID(to),
				Ballot: paxos.Ballot(ballot), Slot: slot, Commit: commit, Stamp: stamp,
				Entries: entries, Cmds: cmds, Data: value}
			stream = AppendMessageFrame(stream, &m)
			want = append(want, carried(m))
		}

		r := wire.NewReader(bytes.NewReader(stream), 0, Types)
		var m paxos.Message
		for i := range want {
			_, p, err := r.Next()
			if err == nil {
				_, err = DecodeMessage(p, &m)
			}
			if err != nil || !sameMessage(&m, &want[i]) {
				t.Fatalf("%v: err %v\ngot  %+v\nwant %+v", want[i].Type, err, m, want[i])
			}
		}
		if _, _, err := r.Next(); err != io.EOF {
			t.Fatalf("end: %v", err)
		}
	})
}

// carried is m with the fields its type does not send zeroed: what the receiver sees.
func carried(m paxos.Message) paxos.Message {
	f, _ := layout(m.Type)
	out := paxos.Message{Type: m.Type, From: m.From, To: m.To}
	if f&fieldBallot != 0 {
		out.Ballot = m.Ballot
	}
	if f&fieldSlot != 0 {
		out.Slot = m.Slot
	}
	if f&fieldCommit != 0 {
		out.Commit = m.Commit
	}
	if f&fieldStamp != 0 {
		out.Stamp = m.Stamp
	}
	if f&fieldEntries != 0 {
		out.Entries = m.Entries
	}
	if f&fieldCmds != 0 {
		out.Cmds = m.Cmds
	}
	if f&fieldData != 0 {
		out.Data = m.Data
	}
	return out
}

// The decoder fuzz targets share one property beyond "no panic": anything a decoder accepts
// re-encodes to exactly the bytes it read, because every value has one encoding. A decoder that
// accepted something the encoder would not write (a padded varint, a flag of 2, a dropped field)
// fails it.

// seedable is the largest encoding given as a seed: the fuzzer mutates small inputs best.
const seedable = 4096

// checkSentinel fails unless err matches one of the package's sentinel errors.
func checkSentinel(t *testing.T, err error) {
	t.Helper()
	for _, s := range []error{wire.ErrShortFrame, wire.ErrFrameTooLarge, wire.ErrEmptyFrame, wire.ErrUnknownType, wire.ErrVersion,
		wire.ErrChecksum, wire.ErrMalformed} {
		if errors.Is(err, s) {
			return
		}
	}
	t.Fatalf("error %v matches no sentinel", err)
}
