// Package kv is SofaDB's replicated state machine: the operations clients send, the encoding of a
// command as the opaque payload the Paxos core carries, and State, the deterministic key-value map
// with exactly-once client sessions that every replica applies the chosen log to. It imports
// nothing of the project: the core, the disk, the runtime, the simulator and the load generator
// all build on it, never the other way round.
package kv

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Op is what a client command does to the key-value state.
type Op uint8

// Client operations. OpGet goes through the log only when reads are not served from a lease.
//
// OpOpen opens a client session: the state machine gives the client an id, from a counter in the
// replicated state, under which its puts and deletes are de-duplicated. A put or delete under an id
// the state machine does not hold (never issued, or its session evicted) is refused as expired
// rather than applied, so a retry from a client whose session was forgotten is never applied twice.
const (
	OpPut Op = iota + 1
	OpGet
	OpDelete
	OpOpen
	opLimit
)

// Valid reports whether o is an operation the state machine knows; decoders use it to reject input.
func (o Op) Valid() bool { return o >= OpPut && o < opLimit }

// Mutates reports whether applying the op changes the key-value state, and so must be applied at
// most once. (OpOpen changes only the session table; opening twice just opens two sessions.)
func (o Op) Mutates() bool { return o == OpPut || o == OpDelete }

func (o Op) String() string {
	switch o {
	case OpPut:
		return "put"
	case OpGet:
		return "get"
	case OpDelete:
		return "delete"
	case OpOpen:
		return "open"
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// Command is one client command as the state machine applies it. (ClientID, Seq) names it for good:
// a command retried by its client and chosen in two slots is applied once.
type Command struct {
	ClientID uint64
	Seq      uint64
	Op       Op
	Key      []byte
	Value    []byte
}

// ErrBadPayload is returned by DecodePayload for bytes that are not a command payload.
var ErrBadPayload = errors.New("kv: malformed command payload")

// AppendPayload appends the payload of a command - what the Paxos core carries for it, opaque to
// the core: the op, the key's length, the key, then the value (the rest). One buffer holds key and
// value, so a replica copies a client's request once.
func AppendPayload(dst []byte, op Op, key, value []byte) []byte {
	dst = append(dst, byte(op))
	dst = binary.AppendUvarint(dst, uint64(len(key)))
	dst = append(dst, key...)
	return append(dst, value...)
}

// PayloadBytes is the size of the payload AppendPayload writes.
func PayloadBytes(key, value []byte) int {
	return 1 + uvarintLen(uint64(len(key))) + len(key) + len(value)
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// DecodePayload reads a payload written by AppendPayload. key and value alias data (an empty one
// is nil); it allocates nothing.
func DecodePayload(data []byte) (op Op, key, value []byte, err error) {
	if len(data) == 0 {
		return 0, nil, nil, fmt.Errorf("%w: empty", ErrBadPayload)
	}
	op = Op(data[0])
	if !op.Valid() {
		return 0, nil, nil, fmt.Errorf("%w: op %d", ErrBadPayload, data[0])
	}
	n, w := binary.Uvarint(data[1:])
	if w <= 0 || n > uint64(len(data)-1-w) {
		return 0, nil, nil, fmt.Errorf("%w: key length", ErrBadPayload)
	}
	start := 1 + w
	end := start + int(n)
	if n > 0 {
		key = data[start:end:end]
	}
	if end < len(data) {
		value = data[end:len(data):len(data)]
	}
	return op, key, value, nil
}

// Decode fills c from a command's identity and payload; c's Key and Value alias data.
func (c *Command) Decode(clientID, seq uint64, data []byte) error {
	op, key, value, err := DecodePayload(data)
	c.ClientID, c.Seq, c.Op, c.Key, c.Value = clientID, seq, op, key, value
	return err
}
