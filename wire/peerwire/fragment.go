package peerwire

import (
	"errors"
	"fmt"

	"github.com/sofadb/sofadb/wire"
)

// TypeFragment is a frame that carries a piece of one large peer message (a snapshot): the sender
// cuts the message's payload (what AppendMessage writes) into fragments and may send other frames
// between them, so heartbeats, acknowledgements and votes do not wait behind hundreds of megabytes
// on the same connection. The fragments of one message are sent in order, one message at a time
// per connection; each is an ordinary frame with its own checksum.
//
// Payload: the type byte, a flags byte (FragmentFirst, FragmentLast), then the piece.
const TypeFragment wire.Type = wire.PeerTypeLimit - 1

// Fragment flags.
const (
	FragmentFirst = 1 << iota
	FragmentLast
)

// fragmentHeaderBytes is the fragment payload before the piece: type and flags.
const fragmentHeaderBytes = 2

// ErrFragment is the error of a fragment out of sequence, malformed, or assembling to more than
// the limit: the connection carrying it is broken or hostile.
var ErrFragment = errors.New("peerwire: bad fragment")

// AppendFragmentFrame appends one fragment frame carrying piece.
func AppendFragmentFrame(dst []byte, flags byte, piece []byte) []byte {
	dst, start := wire.BeginFrame(dst)
	dst = append(dst, byte(TypeFragment), flags)
	dst = append(dst, piece...)
	return wire.FinishFrame(dst, start)
}

// Assembler puts the fragments of one connection back together. Not safe for concurrent use.
type Assembler struct {
	max  int // largest message payload it assembles
	buf  []byte
	open bool
}

// NewAssembler returns an Assembler that refuses messages above maxBytes.
func NewAssembler(maxBytes int) *Assembler { return &Assembler{max: maxBytes} }

// Add takes one TypeFragment payload. When it completes a message, Add returns that message's
// payload (as DecodeMessage takes it), which the caller then owns: the Assembler keeps no
// reference to it. Otherwise it returns nil. A fragment out of sequence (a continuation with no
// first fragment, a first one while another message is open), a malformed one, or a message over
// the limit is an ErrFragment, and the Assembler should be dropped with its connection.
func (a *Assembler) Add(payload []byte) ([]byte, error) {
	if len(payload) < fragmentHeaderBytes || wire.Type(payload[0]) != TypeFragment {
		return nil, fmt.Errorf("%w: %d bytes", ErrFragment, len(payload))
	}
	flags, piece := payload[1], payload[fragmentHeaderBytes:]
	if flags&^(FragmentFirst|FragmentLast) != 0 {
		return nil, fmt.Errorf("%w: flags %#x", ErrFragment, flags)
	}
	first := flags&FragmentFirst != 0
	switch {
	case first && a.open:
		return nil, fmt.Errorf("%w: a first fragment while a message of %d bytes is open", ErrFragment, len(a.buf))
	case !first && !a.open:
		return nil, fmt.Errorf("%w: a continuation with no first fragment", ErrFragment)
	case len(a.buf)+len(piece) > a.max:
		return nil, fmt.Errorf("%w: message over %d bytes", ErrFragment, a.max)
	}
	if first {
		a.open, a.buf = true, nil
	}
	a.buf = append(a.buf, piece...)
	if flags&FragmentLast == 0 {
		return nil, nil
	}
	msg := a.buf
	a.open, a.buf = false, nil
	if len(msg) == 0 || !MessageTypes.Has(wire.Type(msg[0])) {
		return nil, fmt.Errorf("%w: assembled %d bytes that are not a peer message", ErrFragment, len(msg))
	}
	return msg, nil
}
