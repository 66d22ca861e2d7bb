package peerwire

import (
	"bytes"
	"errors"
	"testing"

	"github.com/sofadb/sofadb/paxos"
	"github.com/sofadb/sofadb/wire"
)

// fragments cuts payload into fragment frames' payloads of at most n bytes of it each.
func fragments(t testing.TB, payload []byte, n int) [][]byte {
	var out [][]byte
	for off := 0; off < len(payload); off += n {
		end := min(off+n, len(payload))
		var flags byte
		if off == 0 {
			flags |= FragmentFirst
		}
		if end == len(payload) {
			flags |= FragmentLast
		}
		frame := AppendFragmentFrame(nil, flags, payload[off:end])
		rd := wire.NewReader(bytes.NewReader(frame), 0, Types)
		typ, p, err := rd.Next()
		if err != nil || typ != TypeFragment {
			t.Fatalf("fragment frame reads back as %v, %v", typ, err)
		}
		out = append(out, bytes.Clone(p))
	}
	return out
}

func TestFragmentsAssembleTheMessage(t *testing.T) {
	snap := paxos.Message{Type: paxos.MsgSnapshot, From: 1, To: 2, Slot: 77, Data: bytes.Repeat([]byte("state"), 100_000)}
	payload := AppendMessage(nil, &snap)
	a := NewAssembler(len(payload))
	var whole []byte
	for i, f := range fragments(t, payload, 64<<10) {
		got, err := a.Add(f)
		if err != nil {
			t.Fatalf("fragment %d: %v", i, err)
		}
		if got != nil {
			whole = got
		}
	}
	var m paxos.Message
	if _, err := DecodeMessage(whole, &m); err != nil || m.Slot != 77 || !bytes.Equal(m.Data, snap.Data) {
		t.Fatalf("assembled message: %v, slot %d, %d data bytes", err, m.Slot, len(m.Data))
	}
	// The Assembler is ready for the next message, and keeps nothing of the last.
	if a.open || a.buf != nil {
		t.Fatal("the assembler still holds the message it returned")
	}
}

func TestFragmentsOutOfSequenceAreRefused(t *testing.T) {
	payload := AppendMessage(nil, &paxos.Message{Type: paxos.MsgSnapshot, From: 1, To: 2, Data: make([]byte, 1000)})
	fs := fragments(t, payload, 300) // first, 2 middles, last
	for name, feed := range map[string][][]byte{
		"continuation first":   {fs[1]},
		"two firsts":           {fs[0], fs[0]},
		"not a fragment":       {payload},
		"unknown flags":        {{byte(TypeFragment), 0x80}},
		"header only":          {{byte(TypeFragment)}},
		"not a message inside": {AppendFragmentFrame(nil, FragmentFirst|FragmentLast, []byte{byte(TypeFragment), 3})[9:]},
	} {
		a := NewAssembler(len(payload) + 10)
		var err error
		for _, f := range feed {
			if _, err = a.Add(f); err != nil {
				break
			}
		}
		if !errors.Is(err, ErrFragment) {
			t.Errorf("%s: %v, want ErrFragment", name, err)
		}
	}
	a := NewAssembler(len(payload) - 1)
	var err error
	for _, f := range fs {
		if _, err = a.Add(f); err != nil {
			break
		}
	}
	if !errors.Is(err, ErrFragment) {
		t.Errorf("a message one byte over the limit: %v, want ErrFragment", err)
	}
}

// FuzzAssembler feeds arbitrary fragment payloads: no panic, every error an ErrFragment, and never
// a message over the limit or one that is not a peer message.
func FuzzAssembler(f *testing.F) {
	payload := AppendMessage(nil, &paxos.Message{Type: paxos.MsgSnapshot, From: 1, To: 2, Data: make([]byte, 100)})
	for _, fr := range fragments(f, payload, 40) {
		f.Add(fr, fr)
	}
	f.Fuzz(func(t *testing.T, x, y []byte) {
		a := NewAssembler(256)
		for _, in := range [][]byte{x, y, x} {
			whole, err := a.Add(in)
			if err != nil {
				if !errors.Is(err, ErrFragment) {
					t.Fatalf("error %v is not an ErrFragment", err)
				}
				return
			}
			if whole != nil && (len(whole) > 256 || !MessageTypes.Has(wire.Type(whole[0]))) {
				t.Fatalf("assembled %d bytes of type %d", len(whole), whole[0])
			}
		}
	})
}
