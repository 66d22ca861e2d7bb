package wire

import (
	"errors"
	"fmt"
)

// Framing errors. Each says why a frame was refused, so a connection can log it before it closes:
// the stream after a refused frame is not trusted, and a Reader keeps returning the error.
var (
	// ErrShortFrame is a stream that ended inside a frame (it also matches io.ErrUnexpectedEOF).
	ErrShortFrame = errors.New("wire: stream ended inside a frame")
	// ErrFrameTooLarge is a length field above the reader's maximum, refused before any allocation.
	ErrFrameTooLarge = errors.New("wire: frame larger than the maximum")
	// ErrEmptyFrame is a length field of zero: every frame holds at least its type byte.
	ErrEmptyFrame = errors.New("wire: empty frame")
	// ErrUnknownType is a type byte this version does not know or this stream does not accept (a
	// client frame on the peer port, say), or a decoder given another type's encoding.
	ErrUnknownType = errors.New("wire: unknown or unexpected type")
	// ErrVersion is a frame written in a format version this build cannot read.
	ErrVersion = errors.New("wire: unknown format version")
	// ErrChecksum is a frame whose CRC32C does not match its contents.
	ErrChecksum = errors.New("wire: checksum mismatch")
	// ErrMalformed is a body that cannot be a valid encoding; the errors below say how, and each of
	// them also matches ErrMalformed.
	ErrMalformed = errors.New("wire: malformed body")
)

// Body errors, each matching ErrMalformed, so callers that only care whether to drop the peer test
// one error and tests can check the precise cause.
var (
	// ErrTruncated is a body that ends inside a field, or a length larger than what remains.
	ErrTruncated = malformed("body ends inside a field")
	// ErrVarint is a varint that overflows 64 bits or is not in its shortest form.
	ErrVarint = malformed("bad varint")
	// ErrCount is an element count larger than the remaining bytes could hold; it is refused before
	// anything is allocated for it.
	ErrCount = malformed("count larger than the remaining input can hold")
	// ErrBadOp is a command whose op is not a kv.Op the state machine knows.
	ErrBadOp = malformed("unknown op")
	// ErrRange is a field outside the values an encoder writes (a replica id above 65535, a flag
	// byte other than 0 or 1, an unknown status).
	ErrRange = malformed("field out of range")
	// ErrTrailing is a message followed by bytes that belong to nothing.
	ErrTrailing = malformed("trailing bytes after the message")
)

func malformed(why string) error { return fmt.Errorf("%w: %s", ErrMalformed, why) }
