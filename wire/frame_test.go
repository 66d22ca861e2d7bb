package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"testing"

	"github.com/sofadb/sofadb/paxos"
)

// allFrames is one frame of every sample, in order, with the type each should read back as.
func allFrames() (stream []byte, types []Type) {
	for _, m := range sampleMessages() {
		stream = AppendMessageFrame(stream, &m)
		types = append(types, Type(m.Type))
	}
	for _, r := range sampleRequests() {
		stream = AppendRequestFrame(stream, &r)
		types = append(types, TypeRequest)
	}
	for _, r := range sampleResponses() {
		stream = AppendResponseFrame(stream, &r)
		types = append(types, TypeResponse)
	}
	stream = AppendHelloFrame(stream, &Hello{From: 1, To: 2})
	stream = AppendChallengeFrame(stream, &Challenge{From: 2})
	stream = AppendProofFrame(stream, &Proof{})
	return stream, append(types, TypeHello, TypeChallenge, TypeProof)
}

func TestFrameStreamRoundTrip(t *testing.T) {
	stream, types := allFrames()
	r := NewReader(bytes.NewReader(stream), 2<<20, AllTypes)
	msgs, reqs, resps := sampleMessages(), sampleRequests(), sampleResponses()
	for i, want := range types {
		typ, p, err := r.Next()
		if err != nil || typ != want || Type(p[0]) != want {
			t.Fatalf("frame %d: Next = %v, %v; want %v", i, typ, err, want)
		}
		switch {
		case i < len(msgs):
			var m paxos.Message
			if _, err := DecodeMessage(p, &m); err != nil || !sameMessage(&m, &msgs[i]) {
				t.Fatalf("frame %d: message %v", i, err)
			}
		case i < len(msgs)+len(reqs):
			var q Request
			if _, err := DecodeRequest(p, &q); err != nil || !sameRequest(&q, &reqs[i-len(msgs)]) {
				t.Fatalf("frame %d: request %v", i, err)
			}
		case i < len(msgs)+len(reqs)+len(resps):
			var q Response
			if _, err := DecodeResponse(p, &q); err != nil || !sameResponse(&q, &resps[i-len(msgs)-len(reqs)]) {
				t.Fatalf("frame %d: response %v", i, err)
			}
		}
	}
	for range 2 {
		if _, _, err := r.Next(); err != io.EOF {
			t.Fatalf("after the last frame: %v, want io.EOF", err)
		}
	}
}

// The header is laid out byte by byte as the package documents.
func TestFrameHeaderLayout(t *testing.T) {
	m := paxos.Message{Type: paxos.MsgAccepted, From: 1, To: 2, Ballot: 3, Slot: 4}
	frame := AppendMessageFrame([]byte{0xEE}, &m)[1:]
	payload := AppendMessage(nil, &m)
	if frame[0] != Version || int(binary.LittleEndian.Uint32(frame[1:])) != len(payload) ||
		frame[9] != byte(paxos.MsgAccepted) || !bytes.Equal(frame[9:], payload) {
		t.Fatalf("frame % x, payload % x", frame, payload)
	}
	crc := crc32.Checksum(append(frame[:5:5], payload...), crc32.MakeTable(crc32.Castagnoli))
	if binary.LittleEndian.Uint32(frame[5:]) != crc {
		t.Fatalf("checksum %x, want %x", binary.LittleEndian.Uint32(frame[5:]), crc)
	}
	if len(frame) != HeaderBytes+len(payload)-1 {
		t.Fatalf("frame of %d bytes", len(frame))
	}
}

// rawFrame builds a frame by hand, for headers no encoder would write.
func rawFrame(version byte, length uint32, payload []byte) []byte {
	f := []byte{version, 0, 0, 0, 0, 0, 0, 0, 0}
	binary.LittleEndian.PutUint32(f[1:], length)
	binary.LittleEndian.PutUint32(f[5:], checksum(f[:5], payload))
	return append(f, payload...)
}

func TestFrameErrors(t *testing.T) {
	accepted := AppendMessageFrame(nil, &paxos.Message{Type: paxos.MsgAccepted, From: 1, To: 2, Ballot: 3, Slot: 4})
	request := AppendRequestFrame(nil, &Request{ClientID: 1, Seq: 1, Op: paxos.OpGet, Key: []byte("k")})
	big := AppendMessageFrame(nil, &paxos.Message{Type: paxos.MsgSnapshot, Data: filled(200<<10, 1)})
	flip := func(b []byte, i int) []byte { c := bytes.Clone(b); c[i] ^= 0x10; return c }
	for _, tc := range []struct {
		name   string
		stream []byte
		accept TypeSet
		want   error
	}{
		{"header cut", accepted[:5], PeerTypes, ErrShortFrame},
		{"header only", accepted[:9], PeerTypes, ErrShortFrame},
		{"payload cut", accepted[:len(accepted)-1], PeerTypes, ErrShortFrame},
		{"large payload cut", big[:len(big)-1], PeerTypes, ErrShortFrame},
		{"zero length", rawFrame(Version, 0, nil), PeerTypes, ErrEmptyFrame},
		{"one over the maximum", rawFrame(Version, 1<<20+1, nil), PeerTypes, ErrFrameTooLarge},
		{"length 4 GiB", rawFrame(Version, 1<<32-1, nil), PeerTypes, ErrFrameTooLarge},
		{"version 0", rawFrame(0, 1, []byte{1}), PeerTypes, ErrVersion},
		{"version 2", rawFrame(2, 1, []byte{1}), PeerTypes, ErrVersion},
		{"http on the binary port", []byte("GET / HTTP/1.1\r\n\r\n"), ClientRequestTypes, ErrVersion},
		{"type 0", rawFrame(Version, 1, []byte{0}), AllTypes, ErrUnknownType},
		{"type 200", rawFrame(Version, 1, []byte{200}), AllTypes, ErrUnknownType},
		{"request on the peer port", request, PeerTypes, ErrUnknownType},
		{"peer message on the client port", accepted, ClientRequestTypes, ErrUnknownType},
		{"response to a server", AppendResponseFrame(nil, &Response{Seq: 1, Status: StatusOK}), ClientRequestTypes, ErrUnknownType},
		{"body bit flipped", flip(accepted, 11), PeerTypes, ErrChecksum},
		{"checksum bit flipped", flip(accepted, 6), PeerTypes, ErrChecksum},
		{"large body bit flipped", flip(big, 100<<10), PeerTypes, ErrChecksum},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReader(bytes.NewReader(tc.stream), 1<<20, tc.accept)
			_, _, err := r.Next()
			if !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
			if errors.Is(err, ErrShortFrame) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("short frame %v does not match io.ErrUnexpectedEOF", err)
			}
			if _, _, again := r.Next(); again != err {
				t.Fatalf("second Next: %v, want the same error", again)
			}
			if tc.want == ErrFrameTooLarge && r.buf != nil {
				t.Fatal("allocated for a frame over the maximum")
			}
		})
	}
}

// Every single-bit error anywhere in a frame is caught, whichever field it lands in.
func TestFrameEveryBitFlipRefused(t *testing.T) {
	m := paxos.Message{Type: paxos.MsgAccept, From: 1, To: 2, Ballot: 3, Commit: 4,
		Entries: []paxos.Entry{{Slot: 5, Ballot: 3, Cmds: batch(2, 4, 8)}}}
	frame := AppendMessageFrame(nil, &m)
	for i := range len(frame) * 8 {
		bad := bytes.Clone(frame)
		bad[i/8] ^= 1 << (i % 8)
		if typ, _, err := NewReader(bytes.NewReader(bad), 1<<20, PeerTypes).Next(); err == nil {
			t.Fatalf("bit %d flipped: read a %v frame", i, typ)
		}
	}
}

// A peer announcing a huge frame and sending little of it gets a buffer sized by what it sent.
func TestFrameBufferGrowsWithArrival(t *testing.T) {
	sent := 100 << 10
	stream := append(rawFrame(Version, 64<<20, nil), filled(sent, 1)...)
	r := NewReader(bytes.NewReader(stream), 64<<20, AllTypes)
	if _, _, err := r.Next(); !errors.Is(err, ErrShortFrame) {
		t.Fatalf("err %v, want ErrShortFrame", err)
	}
	if c := cap(r.buf); c > 4*sent {
		t.Fatalf("buffer of %d bytes for %d bytes received", c, sent)
	}
}

// The maximum is inclusive, and large and small frames alternate through the two read paths.
func TestFrameAtMaximumAndMixedSizes(t *testing.T) {
	small := paxos.Message{Type: paxos.MsgAccepted, Slot: 1}
	m := paxos.Message{Type: paxos.MsgSnapshot, Slot: 9}
	m.Data = filled(300<<10, 2) // larger than the bufio buffer: the copying path
	var stream []byte
	for range 3 {
		stream = AppendMessageFrame(stream, &m)
		stream = AppendMessageFrame(stream, &small)
	}
	max := len(AppendMessage(nil, &m))
	r := NewReader(bytes.NewReader(stream), max, PeerTypes)
	for i := range 6 {
		_, p, err := r.Next()
		var got paxos.Message
		if err == nil {
			_, err = DecodeMessage(p, &got)
		}
		want := []*paxos.Message{&m, &small}[i%2]
		if err != nil || !sameMessage(&got, want) {
			t.Fatalf("frame %d: %v", i, err)
		}
	}
	if _, _, err := NewReader(bytes.NewReader(stream), max-1, PeerTypes).Next(); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("one byte over: %v", err)
	}
}

func TestFrameReaderPassesReadErrorsThrough(t *testing.T) {
	boom := errors.New("connection reset")
	r := NewReader(io.MultiReader(bytes.NewReader([]byte{Version, 5}), errReader{boom}), 0, AllTypes)
	if _, _, err := r.Next(); err != boom {
		t.Fatalf("err %v, want %v", err, boom)
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func TestFrameBuffered(t *testing.T) {
	var stream []byte
	stream = AppendRequestFrame(stream, &Request{Seq: 1, Op: paxos.OpGet})
	stream = AppendRequestFrame(stream, &Request{Seq: 2, Op: paxos.OpGet})
	r := NewReader(bytes.NewReader(stream), 0, ClientRequestTypes)
	for want := range 2 {
		if _, _, err := r.Next(); err != nil {
			t.Fatal(err)
		}
		if (r.Buffered() == 0) != (want == 1) {
			t.Fatalf("after frame %d: Buffered() = %d", want+1, r.Buffered())
		}
	}
}

func TestTypeNamesAndSets(t *testing.T) {
	for typ, name := range map[Type]string{0: "type(0)", 1: "prepare", 11: "snapshot", 12: "msg(12)",
		TypeHello: "hello", TypeChallenge: "challenge", TypeProof: "proof", TypeRequest: "request",
		TypeResponse: "response", 200: "type(200)"} {
		if typ.String() != name {
			t.Errorf("Type(%d) = %q, want %q", typ, typ.String(), name)
		}
	}
	for typ := range Type(255) {
		peer := typ >= 1 && paxos.MsgType(typ).Valid() || typ >= TypeHello && typ <= TypeProof
		if PeerTypes.Has(typ) != peer || ClientRequestTypes.Has(typ) != (typ == TypeRequest) ||
			ClientResponseTypes.Has(typ) != (typ == TypeResponse) || typ.Known() != (peer || typ == TypeRequest || typ == TypeResponse) {
			t.Errorf("type %v in the wrong sets", typ)
		}
	}
}

// The payload is capped at its length: a caller appending to it cannot corrupt the next frame
// sitting behind it in the buffer.
func TestFramePayloadIsCapped(t *testing.T) {
	var stream []byte
	stream = AppendRequestFrame(stream, &Request{Seq: 1, Op: paxos.OpGet})
	stream = AppendRequestFrame(stream, &Request{Seq: 2, Op: paxos.OpGet})
	r := NewReader(bytes.NewReader(stream), 0, ClientRequestTypes)
	_, p, err := r.Next()
	if err != nil || cap(p) != len(p) {
		t.Fatalf("payload len %d cap %d, err %v", len(p), cap(p), err)
	}
	_ = append(p, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF)
	if _, _, err := r.Next(); err != nil {
		t.Fatalf("next frame after an append to the previous payload: %v", err)
	}
}

func TestSetLimitsAppliesToLaterFramesAndKeepsBufferedBytes(t *testing.T) {
	hello := AppendHelloFrame(nil, &Hello{From: 1, To: 2})
	big := AppendMessageFrame(nil, &paxos.Message{Type: paxos.MsgSnapshot, From: 1, To: 2, Slot: 9, Data: make([]byte, 4096)})
	stream := append(append([]byte(nil), hello...), big...)
	r := NewReader(bytes.NewReader(stream), 256, HandshakeTypes)
	if typ, _, err := r.Next(); err != nil || typ != TypeHello {
		t.Fatalf("hello: %v %v", typ, err)
	}
	r.SetLimits(1<<20, PeerTypes)
	typ, payload, err := r.Next()
	if err != nil || typ != Type(paxos.MsgSnapshot) {
		t.Fatalf("after raising the limits: %v %v", typ, err)
	}
	var m paxos.Message
	if _, err := DecodeMessage(payload, &m); err != nil || len(m.Data) != 4096 {
		t.Fatalf("decoded %v, %d bytes", err, len(m.Data))
	}
	small := NewReader(bytes.NewReader(big), 256, HandshakeTypes)
	if _, _, err := small.Next(); !errors.Is(err, ErrFrameTooLarge) && !errors.Is(err, ErrUnknownType) {
		t.Fatalf("a large non-handshake frame under handshake limits: %v", err)
	}
}
