package wire

import (
	"encoding/binary"
	"fmt"

	"github.com/sofadb/sofadb/kv"
)

// Request is one client command on the binary client port. The protocol is pipelined: a client
// keeps many requests in flight on one connection and the server answers each by Seq, in whatever
// order they complete. (ClientID, Seq) names the command for good: a retry reuses both, so the
// state machine applies a command chosen twice only once. Seq values in flight on one connection
// must therefore be distinct (one ClientID per connection is the simple way).
//
// ClientID is a session the cluster gave out: a client first sends Op kv.OpOpen (ClientID any
// nonce, Seq 0 or any unused seq, no key), and the OK response's Value is the new id, 8 bytes big
// endian. Puts and deletes under an id the cluster does not hold are answered StatusSessionExpired.
type Request struct {
	ClientID uint64
	Seq      uint64
	Op       kv.Op
	Key      []byte
	Value    []byte
}

// Response answers the Request with the same Seq on the same connection.
type Response struct {
	Seq    uint64
	Status Status
	// Leader and LeaderAddr are the hint that comes with StatusNotLeader: where to retry. Either may be
	// empty when the server knows no leader (LeaderAddr is then nil and Leader 0).
	Leader     uint16
	LeaderAddr []byte
	// Value is what a get read; nil for every other op and status.
	Value []byte
}

// Status is the outcome of a request, and for failures what the client should do next. Zero is
// not a status, so a Response nobody filled in is refused on both ends instead of reading as OK.
type Status uint8

// Statuses. The comment on each says what the client does on receiving it.
const (
	// StatusOK: the command was applied (a get's Value is the value read).
	StatusOK Status = iota + 1
	// StatusNotFound: a get or delete found no such key; the command is done.
	StatusNotFound
	// StatusNotLeader: this replica does not lead; retry at Leader/LeaderAddr, or elsewhere if empty.
	StatusNotLeader
	// StatusBusy: the server is overloaded (a queue is full); nothing was done, retry later.
	StatusBusy
	// StatusTooLarge: the key or value exceeds the server's limits; do not retry.
	StatusTooLarge
	// StatusBadRequest: the request made no sense (an empty key, say); do not retry.
	StatusBadRequest
	// StatusUnavailable: no quorum, or a failed disk; the outcome is unknown, retry with the same Seq.
	StatusUnavailable
	// StatusStale: Seq fell below the server's window for this client; it was not applied.
	StatusStale
	// StatusSessionExpired: the server holds no session for ClientID (it was never opened, or it was
	// evicted); the command was not applied. Open a new session and send it again under the new id.
	StatusSessionExpired
	statusLimit
)

var statusNames = [...]string{"status(0)", "ok", "not-found", "not-leader", "busy", "too-large",
	"bad-request", "unavailable", "stale", "session-expired"}

// String names a status for logs and reports.
func (s Status) String() string {
	if s < statusLimit {
		return statusNames[s]
	}
	return fmt.Sprintf("status(%d)", uint8(s))
}

// Valid reports whether s is a status this version knows; decoders use it to reject input.
func (s Status) Valid() bool { return s >= StatusOK && s < statusLimit }

// AppendRequest appends the encoding of r: type byte TypeRequest, client id, seq, op, key, value.
// r.Op must be valid: the decoder refuses any other.
func AppendRequest(dst []byte, r *Request) []byte {
	dst = append(dst, byte(TypeRequest))
	dst = binary.AppendUvarint(dst, r.ClientID)
	dst = binary.AppendUvarint(dst, r.Seq)
	dst = append(dst, byte(r.Op))
	dst = AppendBytes(dst, r.Key)
	return AppendBytes(dst, r.Value)
}

// DecodeRequest decodes a request that fills src exactly and returns len(src). Key and Value
// alias src (an empty one is nil): copy them before src is reused, since the core keeps the
// commands it is given.
func DecodeRequest(src []byte, r *Request) (n int, err error) {
	d := Decoder{src: src}
	d.typ(TypeRequest)
	r.ClientID = d.Uvarint("client id")
	r.Seq = d.Uvarint("seq")
	r.Op = d.op()
	r.Key = d.Bytes("key")
	r.Value = d.Bytes("value")
	return d.Finish()
}

// AppendResponse appends the encoding of r: type byte TypeResponse, seq, status, leader, leader
// address, value. r.Status must be valid: the decoder refuses any other.
func AppendResponse(dst []byte, r *Response) []byte {
	dst = append(dst, byte(TypeResponse))
	dst = binary.AppendUvarint(dst, r.Seq)
	dst = append(dst, byte(r.Status))
	dst = binary.AppendUvarint(dst, uint64(r.Leader))
	dst = AppendBytes(dst, r.LeaderAddr)
	return AppendBytes(dst, r.Value)
}

// DecodeResponse decodes a response that fills src exactly and returns len(src). LeaderAddr and
// Value alias src (an empty one is nil).
func DecodeResponse(src []byte, r *Response) (n int, err error) {
	d := Decoder{src: src}
	d.typ(TypeResponse)
	r.Seq = d.Uvarint("seq")
	r.Status = d.status()
	r.Leader = d.ReplicaID("leader")
	r.LeaderAddr = d.Bytes("leader address")
	r.Value = d.Bytes("value")
	return d.Finish()
}

// op reads a command's op and refuses the ones the state machine does not know, so nothing
// downstream has to.
func (d *Decoder) op() kv.Op {
	op := kv.Op(d.Byte("op"))
	if d.err == nil && !op.Valid() {
		d.Fail(ErrBadOp, "op")
	}
	return op
}

// status reads a response status and refuses the ones this version does not know.
func (d *Decoder) status() Status {
	s := Status(d.Byte("status"))
	if d.err == nil && !s.Valid() {
		d.Fail(ErrRange, "status")
	}
	return s
}

// typ reads the leading type byte of an encoding and refuses any type but want: a response handed
// to DecodeRequest is as foreign as a byte no version ever used.
func (d *Decoder) typ(want Type) {
	if t := Type(d.Byte("type")); d.err == nil && t != want {
		d.Fail(ErrUnknownType, "type")
	}
}

// Finish checks that the whole input was used and returns what a top-level decoder returns.
func (d *Decoder) Finish() (int, error) {
	d.End()
	if d.err != nil {
		return 0, d.err
	}
	return d.off, nil
}
