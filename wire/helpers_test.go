package wire

import (
	"bytes"
	"math"

	"github.com/sofadb/sofadb/kv"
)

// filled returns n bytes of a recognisable pattern, so a decode that reads the wrong bytes shows.
func filled(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7)
	}
	return b
}

// sampleRequests and sampleResponses cover every op and status, empty and large fields.
func sampleRequests() []Request {
	return []Request{
		{ClientID: 1, Seq: 1, Op: kv.OpPut, Key: filled(16, 1), Value: filled(128, 2)},
		{ClientID: 1, Seq: 2, Op: kv.OpGet, Key: filled(16, 1)},
		{ClientID: 1, Seq: 3, Op: kv.OpDelete, Key: []byte{}},
		{ClientID: math.MaxUint64, Seq: math.MaxUint64, Op: kv.OpPut, Key: filled(1000, 3), Value: filled(1<<20, 4)},
	}
}

func sampleResponses() []Response {
	rs := []Response{
		{Seq: 1, Status: StatusOK, Value: filled(128, 5)},
		{Seq: math.MaxUint64, Status: StatusOK, Value: filled(1<<20, 6)},
		{Seq: 3, Status: StatusNotLeader, Leader: 3, LeaderAddr: []byte("10.0.0.3:7000")},
		{Seq: 4, Status: StatusNotLeader},
		{Seq: 5, Status: StatusNotLeader, Leader: math.MaxUint16},
	}
	for s := StatusOK; s.Valid(); s++ {
		rs = append(rs, Response{Seq: uint64(s), Status: s})
	}
	return rs
}

func sameRequest(a, b *Request) bool {
	return a.ClientID == b.ClientID && a.Seq == b.Seq && a.Op == b.Op &&
		bytes.Equal(a.Key, b.Key) && bytes.Equal(a.Value, b.Value)
}

func sameResponse(a, b *Response) bool {
	return a.Seq == b.Seq && a.Status == b.Status && a.Leader == b.Leader &&
		bytes.Equal(a.LeaderAddr, b.LeaderAddr) && bytes.Equal(a.Value, b.Value)
}

// loopReader serves the same bytes forever, for reading a stream of frames without allocating.
type loopReader struct {
	b   []byte
	off int
}

func (l *loopReader) Read(p []byte) (int, error) {
	n := copy(p, l.b[l.off:])
	l.off = (l.off + n) % len(l.b)
	return n, nil
}
