package wire

import (
	"encoding/binary"

	"github.com/sofadb/sofadb/paxos"
)

// Smallest encodings, in bytes, used to refuse counts the remaining input could not hold.
const (
	// minCommandBytes: client id, seq, op, key length, value length, one byte each at least.
	minCommandBytes = 5
	// minEntryBytes: slot, ballot, flags, command count, one byte each at least.
	minEntryBytes = 4
)

// AppendEntry appends the encoding of one log slot's proposal: slot, ballot, a flags byte (bit 0 =
// Chosen), then the batch of commands (a count, then each command's client id, seq, op, key and
// value). disk/ stores slots in this form and the peer messages carry them in it, so a slot is
// encoded once and read back by either without conversion. Every command must carry a valid Op (the
// core logs no other); an empty batch is a no-op and costs one byte.
func AppendEntry(dst []byte, e *paxos.Entry) []byte {
	dst = binary.AppendUvarint(dst, e.Slot)
	dst = binary.AppendUvarint(dst, uint64(e.Ballot))
	dst = appendFlag(dst, e.Chosen)
	return appendCommands(dst, e.Cmds)
}

// DecodeEntry decodes one entry from the start of src into e and returns the number of bytes it
// used; bytes after the entry are left for the caller (disk/ may store entries back to back).
//
// e.Cmds is reused: its capacity is kept and grown only when the batch does not fit, so decoding
// into the same Entry again allocates nothing. Each command's Key and Value alias src (an empty one
// is nil): copy them, or keep src unchanged, for as long as e is used. On error e holds a partial
// decode and must not be used.
func DecodeEntry(src []byte, e *paxos.Entry) (n int, err error) {
	d := decoder{src: src}
	d.entry(e)
	if d.err != nil {
		return 0, d.err
	}
	return d.off, nil
}

// appendCommands appends a count, then each command.
func appendCommands(dst []byte, cmds []paxos.Command) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(cmds)))
	for i := range cmds {
		dst = appendCommand(dst, &cmds[i])
	}
	return dst
}

// appendCommand appends one command: client id, seq, op, key, value.
func appendCommand(dst []byte, c *paxos.Command) []byte {
	dst = binary.AppendUvarint(dst, c.ClientID)
	dst = binary.AppendUvarint(dst, c.Seq)
	dst = append(dst, byte(c.Op))
	dst = appendBytes(dst, c.Key)
	return appendBytes(dst, c.Value)
}

// entry decodes one entry into e, reusing e.Cmds.
func (d *decoder) entry(e *paxos.Entry) {
	e.Slot = d.uvarint("entry slot")
	e.Ballot = paxos.Ballot(d.uvarint("entry ballot"))
	e.Chosen = d.flag("entry flags")
	e.Cmds = d.commands(e.Cmds)
}

// commands decodes a batch into cmds' storage and returns it resliced to the batch.
func (d *decoder) commands(cmds []paxos.Command) []paxos.Command {
	n := d.count(minCommandBytes, "command count")
	cmds = resize(cmds, n)
	for i := range cmds {
		d.command(&cmds[i])
		if d.err != nil {
			return cmds[:0]
		}
	}
	return cmds
}

// command decodes one command; Key and Value alias the input.
func (d *decoder) command(c *paxos.Command) {
	c.ClientID = d.uvarint("client id")
	c.Seq = d.uvarint("seq")
	c.Op = d.op()
	c.Key = d.bytes("key")
	c.Value = d.bytes("value")
}

// op reads a command's op and refuses the ones the state machine does not know, so nothing
// downstream has to.
func (d *decoder) op() paxos.Op {
	op := paxos.Op(d.byte1("op"))
	if d.err == nil && !op.Valid() {
		d.fail(ErrBadOp, "op")
	}
	return op
}
