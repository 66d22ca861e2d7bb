package peerwire

import (
	"encoding/binary"
	"fmt"

	"github.com/sofadb/sofadb/paxos"
	"github.com/sofadb/sofadb/wire"
)

// field is one optional field of a paxos.Message; a fields set says which a message type carries.
type field uint8

const (
	fieldBallot field = 1 << iota
	fieldSlot
	fieldCommit
	fieldStamp
	fieldEntries
	fieldCmds
	fieldData
)

// layouts says, per message type, which fields are on the wire, following the comments on
// paxos.MsgType: a field a type does not use is neither sent nor decoded (it decodes as zero), so a
// message costs only what its type needs. From and To are always sent, so a receiver can check a
// frame against the peer its connection authenticated and against itself.
//
// Promise carries Slot although its comment names Slot only as the Prepare's: the core may echo it,
// and one byte is cheaper than a silently dropped field.
var layouts = [...]field{
	paxos.MsgPrepare:      fieldBallot | fieldSlot,
	paxos.MsgPromise:      fieldBallot | fieldSlot | fieldCommit | fieldEntries,
	paxos.MsgAccept:       fieldBallot | fieldCommit | fieldEntries,
	paxos.MsgAccepted:     fieldBallot | fieldSlot,
	paxos.MsgNack:         fieldBallot | fieldSlot,
	paxos.MsgCommit:       fieldBallot | fieldSlot | fieldCommit | fieldStamp,
	paxos.MsgCommitAck:    fieldBallot | fieldSlot | fieldCommit | fieldStamp,
	paxos.MsgCatchup:      fieldSlot | fieldCommit,
	paxos.MsgCatchupReply: fieldSlot | fieldCommit | fieldEntries,
	paxos.MsgForward:      fieldCmds,
	paxos.MsgSnapshot:     fieldSlot | fieldData,
	paxos.MsgPreVote:      fieldCommit | fieldStamp,
	paxos.MsgPreVoteOK:    fieldStamp,
}

// layout returns the fields of type t and whether this version knows t.
func layout(t paxos.MsgType) (field, bool) {
	if int(t) >= len(layouts) || layouts[t] == 0 {
		return 0, false
	}
	return layouts[t], true
}

// AppendMessage appends the encoding of a peer message: its type byte (the paxos.MsgType, which is
// also its frame type), From, To, then only the fields its type uses, in the order Ballot, Slot,
// Commit, Stamp, Entries, Cmds, Data. Fields the type does not use are not sent.
//
// A message of a type this package does not know is a bug in the caller, not bad input, and panics.
func AppendMessage(dst []byte, m *paxos.Message) []byte {
	f, ok := layout(m.Type)
	if !ok {
		panic(fmt.Sprintf("wire: AppendMessage of unknown message type %v", m.Type))
	}
	dst = append(dst, byte(m.Type))
	dst = binary.AppendUvarint(dst, uint64(m.From))
	dst = binary.AppendUvarint(dst, uint64(m.To))
	if f&fieldBallot != 0 {
		dst = binary.AppendUvarint(dst, uint64(m.Ballot))
	}
	if f&fieldSlot != 0 {
		dst = binary.AppendUvarint(dst, m.Slot)
	}
	if f&fieldCommit != 0 {
		dst = binary.AppendUvarint(dst, m.Commit)
	}
	if f&fieldStamp != 0 {
		dst = binary.AppendUvarint(dst, m.Stamp)
	}
	return appendPayload(dst, f, m)
}

// appendPayload appends the variable-length fields of m that f selects.
func appendPayload(dst []byte, f field, m *paxos.Message) []byte {
	if f&fieldEntries != 0 {
		dst = binary.AppendUvarint(dst, uint64(len(m.Entries)))
		for i := range m.Entries {
			dst = AppendEntry(dst, &m.Entries[i])
		}
	}
	if f&fieldCmds != 0 {
		dst = appendCommands(dst, m.Cmds)
	}
	if f&fieldData != 0 {
		dst = wire.AppendBytes(dst, m.Data)
	}
	return dst
}

// DecodeMessage decodes one peer message, as written by AppendMessage, that must fill src exactly
// (a frame payload is one message), and returns len(src).
//
// m is overwritten, fields its type does not use included, but the capacity of m.Entries, of every
// m.Entries[i].Cmds and of m.Cmds is reused, so decoding frame after frame into one Message
// allocates nothing once it has grown. Data and every command's Key and Value alias src. The core
// keeps what Step is given, so a caller that reuses src or m must hand Step a copy that owns its
// memory (CloneMessage). On error m holds a partial decode and must not be used.
//
// Memory: counts are checked against the remaining input before anything is made for them, but a
// command encodes in as little as 5 bytes and occupies 72 in memory (an entry: 4 and 48), so the
// slices grown for one message can reach about 15 times its size: 240 MiB for a 16 MiB frame of
// empty commands. Choose the peer frame limit with that in mind.
func DecodeMessage(src []byte, m *paxos.Message) (n int, err error) {
	d := wire.NewDecoder(src)
	decodeMessage(&d, m)
	return d.Finish()
}

// message decodes the type byte and the fields its layout names into m.
func decodeMessage(d *wire.Decoder, m *paxos.Message) {
	t := paxos.MsgType(d.Byte("type"))
	f, ok := layout(t)
	if d.Err() == nil && !ok {
		d.Fail(wire.ErrUnknownType, "message type")
	}
	*m = paxos.Message{Type: t, Entries: m.Entries[:0], Cmds: m.Cmds[:0]}
	m.From = paxos.ReplicaID(d.ReplicaID("from"))
	m.To = paxos.ReplicaID(d.ReplicaID("to"))
	if f&fieldBallot != 0 {
		m.Ballot = paxos.Ballot(d.Uvarint("ballot"))
	}
	if f&fieldSlot != 0 {
		m.Slot = d.Uvarint("slot")
	}
	if f&fieldCommit != 0 {
		m.Commit = d.Uvarint("commit")
	}
	if f&fieldStamp != 0 {
		m.Stamp = d.Uvarint("stamp")
	}
	decodePayload(d, f, m)
}

// payload decodes the variable-length fields f selects, reusing m's slices.
func decodePayload(d *wire.Decoder, f field, m *paxos.Message) {
	if f&fieldEntries != 0 {
		m.Entries = decodeEntries(d, m.Entries)
	}
	if f&fieldCmds != 0 {
		m.Cmds = decodeCommands(d, m.Cmds)
	}
	if f&fieldData != 0 {
		m.Data = d.Bytes("data")
	}
}

// entries decodes a count of entries into es' storage, reusing each element's Cmds.
func decodeEntries(d *wire.Decoder, es []paxos.Entry) []paxos.Entry {
	n := d.Count(minEntryBytes, "entry count")
	es = wire.Resize(es, n)
	for i := range es {
		decodeEntry(d, &es[i])
		if d.Err() != nil {
			return es[:0]
		}
	}
	return es
}

// AppendMessageFrame appends m as one whole frame; see AppendMessage.
func AppendMessageFrame(dst []byte, m *paxos.Message) []byte {
	dst, start := wire.BeginFrame(dst)
	return wire.FinishFrame(AppendMessage(dst, m), start)
}

// MessageTypes is the set of frame types this package has a layout for: every paxos.MsgType.
var MessageTypes = messageTypes()

// Types are the frames of an authenticated peer connection: every peer message this version knows,
// fragments of large ones (TypeFragment), and the handshake (which frames a connection accepts before the handshake ends is the runtime's
// call: wire.HandshakeTypes).
var Types = MessageTypes.With(TypeFragment) | wire.HandshakeTypes

func messageTypes() wire.TypeSet {
	var s wire.TypeSet
	for t := wire.Type(1); t < wire.PeerTypeLimit; t++ {
		if _, ok := layout(paxos.MsgType(t)); ok {
			s = s.With(t)
		}
	}
	return s
}

func init() {
	wire.RegisterPeerTypes(MessageTypes.With(TypeFragment), func(t wire.Type) string {
		if t == TypeFragment {
			return "fragment"
		}
		return paxos.MsgType(t).String()
	})
}
