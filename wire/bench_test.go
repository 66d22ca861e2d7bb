package wire

import (
	"testing"

	"github.com/sofadb/sofadb/kv"
)

var (
	benchRequest  = Request{ClientID: 42, Seq: 1_000_000, Op: kv.OpPut, Key: filled(16, 1), Value: filled(128, 2)}
	benchResponse = Response{Seq: 1_000_000, Status: StatusOK, Value: filled(128, 3)}
)

func BenchmarkClient(b *testing.B) {
	req, resp := AppendRequest(nil, &benchRequest), AppendResponse(nil, &benchResponse)
	var buf []byte
	var gotReq Request
	var gotResp Response
	for _, bm := range []struct {
		name  string
		bytes int
		f     func() error
	}{
		{"append-request", len(req), func() error { buf = AppendRequest(buf[:0], &benchRequest); return nil }},
		{"append-request-frame", len(req) + prefixBytes, func() error { buf = AppendRequestFrame(buf[:0], &benchRequest); return nil }},
		{"decode-request", len(req), func() error { _, err := DecodeRequest(req, &gotReq); return err }},
		{"append-response", len(resp), func() error { buf = AppendResponse(buf[:0], &benchResponse); return nil }},
		{"append-response-frame", len(resp) + prefixBytes, func() error { buf = AppendResponseFrame(buf[:0], &benchResponse); return nil }},
		{"decode-response", len(resp), func() error { _, err := DecodeResponse(resp, &gotResp); return err }},
	} {
		b.Run(bm.name, func(b *testing.B) {
			b.SetBytes(int64(bm.bytes))
			b.ReportAllocs()
			for b.Loop() {
				if err := bm.f(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkReader reads a long stream of frames through Reader.Next (checksum included), and with
// the body decoded too, as a server's connection loop does. (Peer frames: peerwire's BenchmarkReader.)
func BenchmarkReader(b *testing.B) {
	for _, bm := range []struct {
		name   string
		frame  []byte
		decode func([]byte) error
	}{
		{"request", AppendRequestFrame(nil, &benchRequest), nil},
		{"request+decode", AppendRequestFrame(nil, &benchRequest), func(p []byte) error {
			var r Request
			_, err := DecodeRequest(p, &r)
			return err
		}},
	} {
		b.Run(bm.name, func(b *testing.B) {
			var stream []byte
			for len(stream) < 1<<20 {
				stream = append(stream, bm.frame...)
			}
			r := NewReader(&loopReader{b: stream}, 0, AllTypes)
			b.SetBytes(int64(len(bm.frame)))
			b.ReportAllocs()
			for b.Loop() {
				_, p, err := r.Next()
				if err == nil && bm.decode != nil {
					err = bm.decode(p)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
