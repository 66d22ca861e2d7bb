package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"github.com/sofadb/sofadb/paxos"
)

// The decoder fuzz targets share one property beyond "no panic": anything a decoder accepts
// re-encodes to exactly the bytes it read, because every value has one encoding. A decoder that
// accepted something the encoder would not write (a padded varint, a flag of 2, a dropped field)
// fails it.

// seedable is the largest encoding given as a seed: the fuzzer mutates small inputs best.
const seedable = 4096

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

// FuzzDecodeRequest decodes arbitrary bytes as a client request.
func FuzzDecodeRequest(f *testing.F) {
	for _, r := range sampleRequests() {
		if enc := AppendRequest(nil, &r); len(enc) <= seedable {
			f.Add(enc)
		}
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var r Request
		if _, err := DecodeRequest(in, &r); err != nil {
			checkSentinel(t, err)
			return
		}
		if again := AppendRequest(nil, &r); !bytes.Equal(again, in) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", in, again)
		}
	})
}

// FuzzDecodeResponse decodes arbitrary bytes as a client response.
func FuzzDecodeResponse(f *testing.F) {
	for _, r := range sampleResponses() {
		if enc := AppendResponse(nil, &r); len(enc) <= seedable {
			f.Add(enc)
		}
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var r Response
		if _, err := DecodeResponse(in, &r); err != nil {
			checkSentinel(t, err)
			return
		}
		if again := AppendResponse(nil, &r); !bytes.Equal(again, in) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", in, again)
		}
	})
}

// FuzzDecodeHandshake decodes arbitrary bytes as each of the three handshake frames.
func FuzzDecodeHandshake(f *testing.F) {
	f.Add(AppendHello(nil, &Hello{From: 1, To: 2, Nonce: NewNonce()}))
	f.Add(AppendChallenge(nil, &Challenge{From: 2, Nonce: NewNonce(), MAC: [MACBytes]byte{1}}))
	f.Add(AppendProof(nil, &Proof{MAC: [MACBytes]byte{2}}))
	f.Fuzz(func(t *testing.T, in []byte) {
		var h Hello
		var c Challenge
		var p Proof
		if _, err := DecodeHello(in, &h); err == nil && !bytes.Equal(AppendHello(nil, &h), in) {
			t.Fatal("hello re-encoding differs")
		}
		if _, err := DecodeChallenge(in, &c); err == nil && !bytes.Equal(AppendChallenge(nil, &c), in) {
			t.Fatal("challenge re-encoding differs")
		}
		if _, err := DecodeProof(in, &p); err == nil && !bytes.Equal(AppendProof(nil, &p), in) {
			t.Fatal("proof re-encoding differs")
		}
	})
}

// FuzzFrameReader reads arbitrary bytes as a stream of frames and decodes each by its type. Every
// frame read and decoded must re-frame to exactly the bytes it came from, and the stream must end
// in io.EOF or one of the package's errors.
func FuzzFrameReader(f *testing.F) {
	stream, _ := allFrames()
	for off := 0; off < len(stream); {
		n := prefixBytes + int(binary.LittleEndian.Uint32(stream[off+1:]))
		if n <= seedable {
			f.Add(stream[off : off+n])
		}
		off += n
	}
	small, _ := allFrames()
	f.Add(small[:200])
	f.Fuzz(func(t *testing.T, in []byte) {
		r := NewReader(bytes.NewReader(in), seedable, AllTypes)
		off := 0
		for {
			typ, payload, err := r.Next()
			if err != nil {
				if err != io.EOF {
					checkSentinel(t, err)
				}
				return
			}
			frame, ok := reframe(typ, payload)
			if !ok {
				continue
			}
			if end := off + len(frame); end > len(in) || !bytes.Equal(frame, in[off:end]) {
				t.Fatalf("frame at %d re-encodes differently", off)
			}
			off += len(frame)
		}
	})
}

// reframe decodes a payload by its type and encodes the result as a whole frame again; ok is false
// when the payload does not decode (the reader only checks the frame, not its body).
func reframe(typ Type, p []byte) (frame []byte, ok bool) {
	var err error
	switch {
	case typ < peerTypeLimit:
		var m paxos.Message
		if _, err = DecodeMessage(p, &m); err == nil {
			frame = AppendMessageFrame(nil, &m)
		}
	case typ == TypeRequest:
		var r Request
		if _, err = DecodeRequest(p, &r); err == nil {
			frame = AppendRequestFrame(nil, &r)
		}
	case typ == TypeResponse:
		var r Response
		if _, err = DecodeResponse(p, &r); err == nil {
			frame = AppendResponseFrame(nil, &r)
		}
	default:
		frame, err = reframeHandshake(typ, p)
	}
	return frame, err == nil
}

func reframeHandshake(typ Type, p []byte) (frame []byte, err error) {
	switch typ {
	case TypeHello:
		var h Hello
		_, err = DecodeHello(p, &h)
		return AppendHelloFrame(nil, &h), err
	case TypeChallenge:
		var c Challenge
		_, err = DecodeChallenge(p, &c)
		return AppendChallengeFrame(nil, &c), err
	default:
		var pr Proof
		_, err = DecodeProof(p, &pr)
		return AppendProofFrame(nil, &pr), err
	}
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
			cmds[i] = paxos.Command{ClientID: stamp + uint64(i), Seq: slot ^ uint64(i), Op: paxos.Op(1 + (int(kind)+i)%3), Key: key, Value: value}
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
		req := Request{ClientID: stamp, Seq: slot, Op: paxos.Op(1 + kind%3), Key: key, Value: value}
		resp := Response{Seq: slot, Status: Status(1 + kind%uint8(statusLimit-1)), Leader: paxos.ReplicaID(to), LeaderAddr: key, Value: value}
		stream = AppendRequestFrame(stream, &req)
		stream = AppendResponseFrame(stream, &resp)

		r := NewReader(bytes.NewReader(stream), 0, AllTypes)
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
		var gotReq Request
		var gotResp Response
		if _, p, err := r.Next(); err != nil || mustOK(DecodeRequest(p, &gotReq)) != nil || !sameRequest(&gotReq, &req) {
			t.Fatalf("request: %v %+v", err, gotReq)
		}
		if _, p, err := r.Next(); err != nil || mustOK(DecodeResponse(p, &gotResp)) != nil || !sameResponse(&gotResp, &resp) {
			t.Fatalf("response: %v %+v", err, gotResp)
		}
		if _, _, err := r.Next(); err != io.EOF {
			t.Fatalf("end: %v", err)
		}
	})
}

func mustOK(_ int, err error) error { return err }

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

// checkSentinel fails unless err matches one of the package's sentinel errors.
func checkSentinel(t *testing.T, err error) {
	t.Helper()
	for _, s := range []error{ErrShortFrame, ErrFrameTooLarge, ErrEmptyFrame, ErrUnknownType, ErrVersion,
		ErrChecksum, ErrMalformed} {
		if errors.Is(err, s) {
			return
		}
	}
	t.Fatalf("error %v matches no sentinel", err)
}
