package peerwire

import (
	"encoding/binary"

	"github.com/sofadb/sofadb/paxos"
	"github.com/sofadb/sofadb/wire"
)

// Smallest encodings, in bytes, used to refuse counts the remaining input could not hold.
const (
	// minCommandBytes: client id, seq, data length, one byte each at least.
	minCommandBytes = 3
	// minEntryBytes: slot, ballot, flags, command count, one byte each at least.
	minEntryBytes = 4
)

// AppendEntry appends the encoding of one log slot's proposal: slot, ballot, a flags byte (bit 0 =
// Chosen), then the batch of commands (a count, then each command's client id, seq and data - the
// state machine's payload, opaque here). disk/ stores slots in this form and the peer messages carry
// them in it, so a slot is encoded once and read back by either without conversion. An empty batch
// is a no-op and costs one byte.
func AppendEntry(dst []byte, e *paxos.Entry) []byte {
	dst = binary.AppendUvarint(dst, e.Slot)
	dst = binary.AppendUvarint(dst, uint64(e.Ballot))
	dst = wire.AppendFlag(dst, e.Chosen)
	return appendCommands(dst, e.Cmds)
}

// DecodeEntry decodes one entry from the start of src into e and returns the number of bytes it
// used; bytes after the entry are left for the caller (disk/ may store entries back to back).
//
// e.Cmds is reused: its capacity is kept and grown only when the batch does not fit, so decoding
// into the same Entry again allocates nothing. Each command's Data aliases src (an empty one is
// nil): copy it, or keep src unchanged, for as long as e is used. On error e holds a partial decode
// and must not be used.
func DecodeEntry(src []byte, e *paxos.Entry) (n int, err error) {
	d := wire.NewDecoder(src)
	decodeEntry(&d, e)
	if d.Err() != nil {
		return 0, d.Err()
	}
	return d.Offset(), nil
}

// appendCommands appends a count, then each command.
func appendCommands(dst []byte, cmds []paxos.Command) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(cmds)))
	for i := range cmds {
		dst = binary.AppendUvarint(dst, cmds[i].ClientID)
		dst = binary.AppendUvarint(dst, cmds[i].Seq)
		dst = wire.AppendBytes(dst, cmds[i].Data)
	}
	return dst
}

// decodeEntry decodes one entry into e, reusing e.Cmds.
func decodeEntry(d *wire.Decoder, e *paxos.Entry) {
	e.Slot = d.Uvarint("entry slot")
	e.Ballot = paxos.Ballot(d.Uvarint("entry ballot"))
	e.Chosen = d.Flag("entry flags")
	e.Cmds = decodeCommands(d, e.Cmds)
}

// decodeCommands decodes a batch into cmds' storage and returns it resliced to the batch.
func decodeCommands(d *wire.Decoder, cmds []paxos.Command) []paxos.Command {
	n := d.Count(minCommandBytes, "command count")
	cmds = wire.Resize(cmds, n)
	for i := range cmds {
		c := &cmds[i]
		c.ClientID = d.Uvarint("client id")
		c.Seq = d.Uvarint("seq")
		c.Data = d.Bytes("data")
		if d.Err() != nil {
			return cmds[:0]
		}
	}
	return cmds
}
