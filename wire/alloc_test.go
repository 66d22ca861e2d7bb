//go:build !race

// The race detector allocates on its own, so allocation counts are only checked without it.

package wire

import (
	"fmt"
	"testing"
)

func TestClientAllocs(t *testing.T) {
	var buf []byte
	for i, r := range sampleRequests() {
		enc := AppendRequest(nil, &r)
		var got Request
		checkAllocs(t, fmt.Sprint("request ", i), map[string]func(){
			"AppendRequest":      func() { buf = AppendRequest(buf[:0], &r) },
			"AppendRequestFrame": func() { buf = AppendRequestFrame(buf[:0], &r) },
			"DecodeRequest":      func() { _, _ = DecodeRequest(enc, &got) },
		})
	}
	for i, r := range sampleResponses() {
		enc := AppendResponse(nil, &r)
		var got Response
		checkAllocs(t, fmt.Sprint("response ", i), map[string]func(){
			"AppendResponse":      func() { buf = AppendResponse(buf[:0], &r) },
			"AppendResponseFrame": func() { buf = AppendResponseFrame(buf[:0], &r) },
			"DecodeResponse":      func() { _, _ = DecodeResponse(enc, &got) },
		})
	}
}

func TestHandshakeAllocs(t *testing.T) {
	var buf []byte
	h, c, p := Hello{From: 1, To: 2}, Challenge{From: 2}, Proof{}
	he, ce, pe := AppendHello(nil, &h), AppendChallenge(nil, &c), AppendProof(nil, &p)
	checkAllocs(t, "handshake", map[string]func(){
		"AppendHelloFrame":     func() { buf = AppendHelloFrame(buf[:0], &h) },
		"AppendChallengeFrame": func() { buf = AppendChallengeFrame(buf[:0], &c) },
		"AppendProofFrame":     func() { buf = AppendProofFrame(buf[:0], &p) },
		"DecodeHello":          func() { _, _ = DecodeHello(he, &h) },
		"DecodeChallenge":      func() { _, _ = DecodeChallenge(ce, &c) },
		"DecodeProof":          func() { _, _ = DecodeProof(pe, &p) },
	})
}

// Reading a stream of every frame (1 MiB ones included) allocates nothing once the Reader's buffer
// has grown to the largest.
func TestReaderAllocs(t *testing.T) {
	stream, types := allFrames()
	r := NewReader(&loopReader{b: stream}, 2<<20, AllTypes)
	for range types {
		if _, _, err := r.Next(); err != nil {
			t.Fatal(err)
		}
	}
	if n := testing.AllocsPerRun(3*len(types), func() { _, _, _ = r.Next() }); n != 0 {
		t.Errorf("Reader.Next: %v allocs, want 0", n)
	}
	if _, _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
}

func checkAllocs(t *testing.T, name string, fns map[string]func()) {
	t.Helper()
	for fn, f := range fns {
		if n := testing.AllocsPerRun(20, f); n != 0 {
			t.Errorf("%s: %s: %v allocs, want 0", name, fn, n)
		}
	}
}
