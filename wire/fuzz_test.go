package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

// The decoder fuzz targets share one property beyond "no panic": anything a decoder accepts
// re-encodes to exactly the bytes it read, because every value has one encoding. A decoder that
// accepted something the encoder would not write (a padded varint, a flag of 2, a dropped field)
// fails it.

// seedable is the largest encoding given as a seed: the fuzzer mutates small inputs best.
const seedable = 4096

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
