package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"testing"

	"github.com/sofadb/sofadb/kv"
)

// allFrames is one frame of every sample, in order, with the type each should read back as.
func allFrames() (stream []byte, types []Type) {
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
	reqs, resps := sampleRequests(), sampleResponses()
	for i, want := range types {
		typ, p, err := r.Next()
		if err != nil || typ != want || Type(p[0]) != want {
			t.Fatalf("frame %d: Next = %v, %v; want %v", i, typ, err, want)
		}
		switch {
		case i < len(reqs):
			var q Request
			if _, err := DecodeRequest(p, &q); err != nil || !sameRequest(&q, &reqs[i]) {
				t.Fatalf("frame %d: request %v", i, err)
			}
		case i < len(reqs)+len(resps):
			var q Response
			if _, err := DecodeResponse(p, &q); err != nil || !sameResponse(&q, &resps[i-len(reqs)]) {
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
	m := Response{Seq: 4, Status: StatusNotLeader, Leader: 2}
	frame := AppendResponseFrame([]byte{0xEE}, &m)[1:]
	payload := AppendResponse(nil, &m)
	if frame[0] != Version || int(binary.LittleEndian.Uint32(frame[1:])) != len(payload) ||
		frame[9] != byte(TypeResponse) || !bytes.Equal(frame[9:], payload) {
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
	accepted := AppendResponseFrame(nil, &Response{Seq: 4, Status: StatusOK, Value: []byte("value")})
	request := AppendRequestFrame(nil, &Request{ClientID: 1, Seq: 1, Op: kv.OpGet, Key: []byte("k")})
	big := AppendResponseFrame(nil, &Response{Seq: 5, Status: StatusOK, Value: filled(200<<10, 1)})
	hello := AppendHelloFrame(nil, &Hello{From: 1, To: 2})
	flip := func(b []byte, i int) []byte { c := bytes.Clone(b); c[i] ^= 0x10; return c }
	for _, tc := range []struct {
		name   string
		stream []byte
		accept TypeSet
		want   error
	}{
		{"header cut", accepted[:5], ClientResponseTypes, ErrShortFrame},
		{"header only", accepted[:9], ClientResponseTypes, ErrShortFrame},
		{"payload cut", accepted[:len(accepted)-1], ClientResponseTypes, ErrShortFrame},
		{"large payload cut", big[:len(big)-1], ClientResponseTypes, ErrShortFrame},
		{"zero length", rawFrame(Version, 0, nil), ClientResponseTypes, ErrEmptyFrame},
		{"one over the maximum", rawFrame(Version, 1<<20+1, nil), ClientResponseTypes, ErrFrameTooLarge},
		{"length 4 GiB", rawFrame(Version, 1<<32-1, nil), ClientResponseTypes, ErrFrameTooLarge},
		{"version 0", rawFrame(0, 1, []byte{1}), ClientResponseTypes, ErrVersion},
		{"version 2", rawFrame(2, 1, []byte{1}), ClientResponseTypes, ErrVersion},
		{"http on the binary port", []byte("GET / HTTP/1.1\r\n\r\n"), ClientRequestTypes, ErrVersion},
		{"type 0", rawFrame(Version, 1, []byte{0}), AllTypes, ErrUnknownType},
		{"type 200", rawFrame(Version, 1, []byte{200}), AllTypes, ErrUnknownType},
		{"request on the peer port", request, HandshakeTypes, ErrUnknownType},
		{"peer handshake on the client port", hello, ClientRequestTypes, ErrUnknownType},
		{"response to a server", AppendResponseFrame(nil, &Response{Seq: 1, Status: StatusOK}), ClientRequestTypes, ErrUnknownType},
		{"body bit flipped", flip(accepted, 11), ClientResponseTypes, ErrChecksum},
		{"checksum bit flipped", flip(accepted, 6), ClientResponseTypes, ErrChecksum},
		{"large body bit flipped", flip(big, 100<<10), ClientResponseTypes, ErrChecksum},
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
	frame := AppendRequestFrame(nil, &Request{ClientID: 1, Seq: 2, Op: kv.OpPut, Key: []byte("key"), Value: filled(40, 3)})
	for i := range len(frame) * 8 {
		bad := bytes.Clone(frame)
		bad[i/8] ^= 1 << (i % 8)
		if typ, _, err := NewReader(bytes.NewReader(bad), 1<<20, ClientRequestTypes).Next(); err == nil {
			t.Fatalf("bit %d flipped: read a %v frame", i, typ)
		}
	}
}

// A peer announcing a huge frame and sending little of it gets a buffer sized by what it sent.
func TestFrameBufferGrowsWithArrival(t *testing.T) {
	sent := 100 << 10
	stream := append(rawFrame(Version, 64<<20, nil), byte(TypeResponse))
	stream = append(stream, filled(sent-1, 1)...)
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
	small := Response{Seq: 1, Status: StatusOK}
	m := Response{Seq: 9, Status: StatusOK, Value: filled(300<<10, 2)} // larger than the bufio buffer: the copying path
	var stream []byte
	for range 3 {
		stream = AppendResponseFrame(stream, &m)
		stream = AppendResponseFrame(stream, &small)
	}
	max := len(AppendResponse(nil, &m))
	r := NewReader(bytes.NewReader(stream), max, ClientResponseTypes)
	for i := range 6 {
		_, p, err := r.Next()
		var got Response
		if err == nil {
			_, err = DecodeResponse(p, &got)
		}
		want := []*Response{&m, &small}[i%2]
		if err != nil || !sameResponse(&got, want) {
			t.Fatalf("frame %d: %v", i, err)
		}
	}
	if _, _, err := NewReader(bytes.NewReader(stream), max-1, ClientResponseTypes).Next(); !errors.Is(err, ErrFrameTooLarge) {
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
	stream = AppendRequestFrame(stream, &Request{Seq: 1, Op: kv.OpGet})
	stream = AppendRequestFrame(stream, &Request{Seq: 2, Op: kv.OpGet})
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
	for typ, name := range map[Type]string{0: "type(0)", 1: "peer(1)", 31: "peer(31)",
		TypeHello: "hello", TypeChallenge: "challenge", TypeProof: "proof", TypeRequest: "request",
		TypeResponse: "response", 200: "type(200)"} {
		if typ.String() != name {
			t.Errorf("Type(%d) = %q, want %q", typ, typ.String(), name)
		}
	}
	for typ := range Type(255) {
		handshake := typ >= TypeHello && typ <= TypeProof
		if HandshakeTypes.Has(typ) != handshake || ClientRequestTypes.Has(typ) != (typ == TypeRequest) ||
			ClientResponseTypes.Has(typ) != (typ == TypeResponse) || typ.Known() != (handshake || typ == TypeRequest || typ == TypeResponse) {
			t.Errorf("type %v in the wrong sets", typ)
		}
	}
}

// The payload is capped at its length: a caller appending to it cannot corrupt the next frame
// sitting behind it in the buffer.
func TestFramePayloadIsCapped(t *testing.T) {
	var stream []byte
	stream = AppendRequestFrame(stream, &Request{Seq: 1, Op: kv.OpGet})
	stream = AppendRequestFrame(stream, &Request{Seq: 2, Op: kv.OpGet})
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
	big := AppendResponseFrame(nil, &Response{Seq: 9, Status: StatusOK, Value: make([]byte, 4096)})
	stream := append(append([]byte(nil), hello...), big...)
	r := NewReader(bytes.NewReader(stream), 256, HandshakeTypes)
	if typ, _, err := r.Next(); err != nil || typ != TypeHello {
		t.Fatalf("hello: %v %v", typ, err)
	}
	r.SetLimits(1<<20, HandshakeTypes|ClientResponseTypes)
	typ, payload, err := r.Next()
	if err != nil || typ != TypeResponse {
		t.Fatalf("after raising the limits: %v %v", typ, err)
	}
	var m Response
	if _, err := DecodeResponse(payload, &m); err != nil || len(m.Value) != 4096 {
		t.Fatalf("decoded %v, %d bytes", err, len(m.Value))
	}
	small := NewReader(bytes.NewReader(big), 256, HandshakeTypes)
	if _, _, err := small.Next(); !errors.Is(err, ErrFrameTooLarge) && !errors.Is(err, ErrUnknownType) {
		t.Fatalf("a large non-handshake frame under handshake limits: %v", err)
	}
}

// TestReaderLetsALargeBufferGo: a frame above keepBytesMax is read into a buffer that is released
// at the next Next, so one large frame does not pin its size for the life of the connection.
func TestReaderLetsALargeBufferGo(t *testing.T) {
	var stream []byte
	big := Request{Op: 2, Key: []byte("k"), Value: make([]byte, 6<<20)}
	small := Request{Op: 2, Key: []byte("k"), Value: []byte("v")}
	stream = AppendRequestFrame(stream, &big)
	stream = AppendRequestFrame(stream, &small)
	rd := NewReader(bytes.NewReader(stream), 16<<20, ClientRequestTypes)
	if _, p, err := rd.Next(); err != nil || len(p) < 6<<20 {
		t.Fatalf("large frame: %d bytes, %v", len(p), err)
	}
	if cap(rd.buf) <= keepBytesMax {
		t.Fatalf("the large frame was read into a %d-byte buffer", cap(rd.buf))
	}
	if _, _, err := rd.Next(); err != nil {
		t.Fatal(err)
	}
	if cap(rd.buf) > keepBytesMax {
		t.Errorf("after a small frame the reader still holds a %d-byte buffer", cap(rd.buf))
	}
}
