package peerwire

import (
	"testing"

	"github.com/sofadb/sofadb/paxos"
	"github.com/sofadb/sofadb/wire"
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

func decodeInto(m *paxos.Message) func([]byte) error {
	return func(p []byte) error { _, err := DecodeMessage(p, m); return err }
}

// BenchmarkReader reads a long stream of accept frames through wire.Reader.Next (checksum included),
// and with the body decoded too, as a replica's connection loop does.
func BenchmarkReader(b *testing.B) {
	accept := benchMessages()["accept-64x16x128"]
	for _, bm := range []struct {
		name   string
		decode func([]byte) error
	}{{"accept-64x16x128", nil}, {"accept-64x16x128+decode", decodeInto(new(paxos.Message))}} {
		b.Run(bm.name, func(b *testing.B) {
			frame := AppendMessageFrame(nil, accept)
			var stream []byte
			for len(stream) < 1<<20 {
				stream = append(stream, frame...)
			}
			r := wire.NewReader(&loopReader{b: stream}, 0, Types)
			b.SetBytes(int64(len(frame)))
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

func BenchmarkCloneMessage(b *testing.B) {
	m := benchMessages()["accept-64x16x128"]
	b.SetBytes(int64(len(AppendMessage(nil, m))))
	b.ReportAllocs()
	for b.Loop() {
		_ = CloneMessage(m)
	}
}
