package wire

import (
	"testing"

	"github.com/sofadb/sofadb/paxos"
)

// benchMessages are the hot messages of a stable leader: the accept of a full batch (64 commands of
// 16-byte keys and 128-byte values, the shape of the published benchmarks), its reply, a commit
// heartbeat, and a promise reporting 8 accepted slots of 8 commands after a leader change.
func benchMessages() map[string]*paxos.Message {
	b := paxos.MakeBallot(12, 1)
	promise := &paxos.Message{Type: paxos.MsgPromise, From: 2, To: 1, Ballot: b, Slot: 1000, Commit: 999}
	for i := range 8 {
		promise.Entries = append(promise.Entries, paxos.Entry{Slot: 1000 + uint64(i), Ballot: b, Cmds: batch(8, 16, 128)})
	}
	return map[string]*paxos.Message{
		"accept-64x16x128": {Type: paxos.MsgAccept, From: 1, To: 2, Ballot: b, Commit: 123455,
			Entries: []paxos.Entry{{Slot: 123456, Ballot: b, Cmds: batch(64, 16, 128)}}},
		"accepted":        {Type: paxos.MsgAccepted, From: 2, To: 1, Ballot: b, Slot: 123456},
		"commit":          {Type: paxos.MsgCommit, From: 1, To: 2, Ballot: b, Commit: 123456, Stamp: 987654},
		"promise-8x8x128": promise,
	}
}

var (
	benchRequest  = Request{ClientID: 42, Seq: 1_000_000, Op: paxos.OpPut, Key: filled(16, 1), Value: filled(128, 2)}
	benchResponse = Response{Seq: 1_000_000, Status: StatusOK, Value: filled(128, 3)}
)

func BenchmarkAppendMessage(b *testing.B) {
	for name, m := range benchMessages() {
		b.Run(name, func(b *testing.B) {
			buf := AppendMessage(nil, m)
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			for b.Loop() {
				buf = AppendMessage(buf[:0], m)
			}
		})
	}
}

func BenchmarkAppendMessageFrame(b *testing.B) {
	for name, m := range benchMessages() {
		b.Run(name, func(b *testing.B) {
			buf := AppendMessageFrame(nil, m)
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			for b.Loop() {
				buf = AppendMessageFrame(buf[:0], m)
			}
		})
	}
}

func BenchmarkDecodeMessage(b *testing.B) {
	for name, m := range benchMessages() {
		b.Run(name, func(b *testing.B) {
			enc := AppendMessage(nil, m)
			var got paxos.Message
			b.SetBytes(int64(len(enc)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := DecodeMessage(enc, &got); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

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
// the body decoded too, as a replica's connection loop does.
func BenchmarkReader(b *testing.B) {
	accept := benchMessages()["accept-64x16x128"]
	for _, bm := range []struct {
		name   string
		frame  []byte
		decode func([]byte) error
	}{
		{"accept-64x16x128", AppendMessageFrame(nil, accept), nil},
		{"accept-64x16x128+decode", AppendMessageFrame(nil, accept), decodeInto(new(paxos.Message))},
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

func decodeInto(m *paxos.Message) func([]byte) error {
	return func(p []byte) error { _, err := DecodeMessage(p, m); return err }
}

func BenchmarkCloneMessage(b *testing.B) {
	m := benchMessages()["accept-64x16x128"]
	b.SetBytes(int64(len(AppendMessage(nil, m))))
	b.ReportAllocs()
	for b.Loop() {
		_ = CloneMessage(m)
	}
}
