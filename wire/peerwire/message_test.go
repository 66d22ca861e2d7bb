package peerwire

import (
	"bytes"
	"errors"
	"testing"
	"unsafe"

	"github.com/sofadb/sofadb/paxos"
	"github.com/sofadb/sofadb/wire"
)

func TestMessageRoundTrip(t *testing.T) {
	// reused is decoded into by every case in turn: leftovers from a larger message must not leak.
	var reused paxos.Message
	for i, want := range sampleMessages() {
		t.Run(describeMessage(i, &want), func(t *testing.T) {
			enc := AppendMessage([]byte("prefix"), &want)[len("prefix"):]
			for _, got := range []*paxos.Message{new(paxos.Message), &reused} {
				n, err := DecodeMessage(enc, got)
				if err != nil || n != len(enc) {
					t.Fatalf("DecodeMessage = %d, %v; want %d, nil", n, err, len(enc))
				}
				if !sameMessage(got, &want) {
					t.Fatalf("decoded %+v\nwant %+v", got, want)
				}
				if again := AppendMessage(nil, got); !bytes.Equal(again, enc) {
					t.Fatalf("re-encoding differs")
				}
			}
		})
	}
}

// A type added to paxos/types.go must get a layout here before it can be sent.
func TestEveryMsgTypeHasLayout(t *testing.T) {
	for mt := paxos.MsgType(1); mt.Valid(); mt++ {
		if _, ok := layout(mt); !ok {
			t.Errorf("paxos.%v has no wire layout", mt)
		}
		if !Types.Has(wire.Type(mt)) || wire.Type(mt).String() != mt.String() {
			t.Errorf("paxos.%v is not in Types, or is named %q", mt, wire.Type(mt))
		}
	}
	if _, ok := layout(paxos.MsgType(0)); ok {
		t.Error("type 0 has a layout")
	}
}

// Fields a type does not use are not sent: they decode as zero. Every type is checked against its
// layout by filling all fields.
func TestMessageSendsOnlyUsedFields(t *testing.T) {
	for mt := paxos.MsgType(1); mt.Valid(); mt++ {
		full := paxos.Message{Type: mt, From: 1, To: 2, Ballot: 3, Slot: 4, Commit: 5, Stamp: 6,
			Entries: []paxos.Entry{{Slot: 7}}, Cmds: batch(1, 1, 1), Data: []byte("d")}
		var got paxos.Message
		if _, err := DecodeMessage(AppendMessage(nil, &full), &got); err != nil {
			t.Fatalf("%v: %v", mt, err)
		}
		want := carried(full)
		if !sameMessage(&got, &want) {
			t.Errorf("%v: decoded %+v, want %+v", mt, got, want)
		}
	}
}

func TestMessageTruncated(t *testing.T) {
	for i, m := range sampleMessages() {
		enc := AppendMessage(nil, &m)
		if len(enc) > 2048 {
			continue // quadratic; the smaller cases cover every field
		}
		for n := range len(enc) {
			var got paxos.Message
			if _, err := DecodeMessage(enc[:n], &got); !errors.Is(err, wire.ErrMalformed) {
				t.Fatalf("%s: prefix of %d bytes: err %v, want wire.ErrMalformed", describeMessage(i, &m), n, err)
			}
		}
	}
}

func TestMessageMalformed(t *testing.T) {
	accepted := AppendMessage(nil, &paxos.Message{Type: paxos.MsgAccepted, From: 1, To: 2, Ballot: 3, Slot: 4})
	for _, tc := range []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, wire.ErrTruncated},
		{"type 0", []byte{0, 1, 2, 3, 4}, wire.ErrUnknownType},
		{"type 14", []byte{14, 1, 2, 3, 4}, wire.ErrUnknownType},
		{"handshake type", []byte{byte(wire.TypeProof), 1, 2, 3, 4}, wire.ErrUnknownType},
		{"trailing byte", append(accepted[:len(accepted):len(accepted)], 0), wire.ErrTrailing},
		{"from above 65535", []byte{byte(paxos.MsgAccepted), 0x80, 0x80, 0x04, 2, 3, 4}, wire.ErrRange},
		{"padded slot", []byte{byte(paxos.MsgAccepted), 1, 2, 3, 0x84, 0x00}, wire.ErrVarint},
		{"entry count beyond input", []byte{byte(paxos.MsgAccept), 1, 2, 3, 4, 2, 1, 1, 0, 0}, wire.ErrCount},
		{"data longer than input", []byte{byte(paxos.MsgSnapshot), 1, 2, 3, 5, 'a'}, wire.ErrTruncated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var m paxos.Message
			if _, err := DecodeMessage(tc.in, &m); !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
		})
	}
}

func TestAppendMessageUnknownTypePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("no panic")
		}
	}()
	AppendMessage(nil, &paxos.Message{Type: 200})
}

// Decoding into a Message that held a larger one reuses the entries and each entry's commands.
func TestMessageReusesNestedCapacity(t *testing.T) {
	big := paxos.Message{Type: paxos.MsgPromise, Entries: []paxos.Entry{
		{Slot: 1, Cmds: batch(8, 1, 1)}, {Slot: 2, Cmds: batch(8, 1, 1)}}}
	small := paxos.Message{Type: paxos.MsgCatchupReply, Commit: 3, Entries: []paxos.Entry{
		{Slot: 5, Chosen: true, Cmds: batch(2, 1, 1)}}}
	var m paxos.Message
	if _, err := DecodeMessage(AppendMessage(nil, &big), &m); err != nil {
		t.Fatal(err)
	}
	entries, cmds := unsafe.SliceData(m.Entries), unsafe.SliceData(m.Entries[0].Cmds)
	if _, err := DecodeMessage(AppendMessage(nil, &small), &m); err != nil {
		t.Fatal(err)
	}
	if unsafe.SliceData(m.Entries) != entries || unsafe.SliceData(m.Entries[0].Cmds) != cmds {
		t.Fatal("storage not reused")
	}
	if !sameMessage(&m, &small) {
		t.Fatalf("decoded %+v, want %+v", m, small)
	}
	// Growing past the old capacity keeps the old entries' command storage.
	if _, err := DecodeMessage(AppendMessage(nil, &paxos.Message{Type: paxos.MsgPromise,
		Entries: make([]paxos.Entry, 5)}), &m); err != nil {
		t.Fatal(err)
	}
	if cap(m.Entries[0].Cmds) < 8 {
		t.Fatalf("entry 0 lost its command capacity: %d", cap(m.Entries[0].Cmds))
	}
}

func TestCloneMessageOwnsItsMemory(t *testing.T) {
	for i, m := range sampleMessages() {
		enc := AppendMessage(nil, &m)
		var decoded paxos.Message
		if _, err := DecodeMessage(enc, &decoded); err != nil {
			t.Fatal(err)
		}
		clone := CloneMessage(&decoded)
		for j := range enc {
			enc[j] = 0xAA // the frame buffer is reused for the next frame
		}
		_, _ = DecodeMessage(AppendMessage(nil, &paxos.Message{Type: paxos.MsgPromise,
			Entries: []paxos.Entry{{Cmds: batch(70, 2, 2)}}}), &decoded) // and so is the decode target
		if !sameMessage(&clone, &m) {
			t.Fatalf("%s: clone changed with its source", describeMessage(i, &m))
		}
	}
}
