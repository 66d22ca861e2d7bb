package wire

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Decoder reads the fields of one encoding in order. Its first error sticks and every later read
// returns a zero value, so a decode function reads all its fields straight through and checks the
// error once at the end instead of after every field. It is exported for the peer message codec
// (wire/peerwire), which shares these rules.
type Decoder struct {
	src []byte
	off int
	err error
}

// NewDecoder starts decoding src.
func NewDecoder(src []byte) Decoder { return Decoder{src: src} }

// Err is the first error, or nil.
func (d *Decoder) Err() error { return d.err }

// Offset is the number of bytes read so far.
func (d *Decoder) Offset() int { return d.off }

// Fail records the first error, with the field and offset that caused it for the log of whoever
// drops the connection. Only bad input gets here, so the allocation of the wrap is off the hot path.
func (d *Decoder) Fail(err error, what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w (%s at byte %d)", err, what, d.off)
	}
}

// Remaining is the number of bytes not yet read.
func (d *Decoder) Remaining() int { return len(d.src) - d.off }

// Uvarint reads a varint in its shortest form: refusing padded forms (a trailing 0x00 group) keeps
// one encoding per value, so decode-then-encode reproduces the input exactly.
func (d *Decoder) Uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	if d.off < len(d.src) && d.src[d.off] < 0x80 {
		v := d.src[d.off]
		d.off++
		return uint64(v)
	}
	v, n := binary.Uvarint(d.src[d.off:])
	switch {
	case n == 0:
		d.Fail(ErrTruncated, what)
		return 0
	case n < 0 || d.src[d.off+n-1] == 0:
		d.Fail(ErrVarint, what)
		return 0
	}
	d.off += n
	return v
}

// Byte reads one raw byte.
func (d *Decoder) Byte(what string) byte {
	if d.err != nil {
		return 0
	}
	if d.off >= len(d.src) {
		d.Fail(ErrTruncated, what)
		return 0
	}
	b := d.src[d.off]
	d.off++
	return b
}

// Flag reads a boolean written as exactly 0 or 1.
func (d *Decoder) Flag(what string) bool {
	b := d.Byte(what)
	if b > 1 {
		d.Fail(ErrRange, what)
	}
	return b == 1
}

// ReplicaID reads a varint that must fit a replica id's 16 bits.
func (d *Decoder) ReplicaID(what string) uint16 {
	v := d.Uvarint(what)
	if v > math.MaxUint16 {
		d.Fail(ErrRange, what)
		return 0
	}
	return uint16(v)
}

// Bytes reads a length-prefixed byte string. The result aliases src, capped at its own length so
// that appending to it can never overwrite the bytes after it; an empty string decodes as nil.
func (d *Decoder) Bytes(what string) []byte {
	n := d.Uvarint(what)
	if d.err != nil {
		return nil
	}
	if n > uint64(d.Remaining()) {
		d.Fail(ErrTruncated, what)
		return nil
	}
	if n == 0 {
		return nil
	}
	end := d.off + int(n)
	b := d.src[d.off:end:end]
	d.off = end
	return b
}

// Fixed copies exactly len(dst) raw bytes, for the fixed-size nonces and MACs of the handshake.
func (d *Decoder) Fixed(dst []byte, what string) {
	if d.err != nil {
		return
	}
	if len(dst) > d.Remaining() {
		d.Fail(ErrTruncated, what)
		return
	}
	d.off += copy(dst, d.src[d.off:])
}

// Count reads an element count and refuses it when the remaining bytes could not hold that many
// elements of at least minBytes each. This is what bounds every allocation by the input's size: a
// 5-byte varint claiming four billion commands is refused before anything is made for it.
func (d *Decoder) Count(minBytes int, what string) int {
	n := d.Uvarint(what)
	if d.err != nil {
		return 0
	}
	if n > uint64(d.Remaining()/minBytes) {
		d.Fail(ErrCount, what)
		return 0
	}
	return int(n)
}

// End refuses bytes after a complete message: a frame holds exactly one message, so leftovers mean
// the peer and this build disagree about the format.
func (d *Decoder) End() {
	if d.err == nil && d.off != len(d.src) {
		d.Fail(ErrTrailing, "end")
	}
}

// Resize returns s with length n, reusing its capacity when it suffices. When it grows, the old
// elements up to cap(s) are kept, so nested slices inside them (an Entry's Cmds) keep their
// capacity for the next decode too.
func Resize[T any](s []T, n int) []T {
	if n <= cap(s) {
		return s[:n]
	}
	s = s[:cap(s)]
	return append(s, make([]T, n-len(s))...)
}

// AppendBytes appends a length-prefixed byte string.
func AppendBytes(dst, b []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

// AppendFlag appends a boolean as one byte, 0 or 1.
func AppendFlag(dst []byte, v bool) []byte {
	if v {
		return append(dst, 1)
	}
	return append(dst, 0)
}
