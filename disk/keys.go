package disk

import "encoding/binary"

// Key layout. Every key starts with a one-letter prefix and a slash, so a key-only iteration over a
// prefix visits one kind of record, and numbers are fixed-width big-endian, so badger's byte order
// is numeric order:
//
//	m/promised                 the acceptor's promised ballot: 8 bytes, big-endian
//	m/chosen                   the persisted chosen prefix (paxos.Durable.ChosenTo): 8 bytes
//	m/snapshot                 the durable snapshot's pointer: see snapPointer
//	s/<slot:8>                 one log slot: the whole batch, wire.AppendEntry encoding
//	c/<gen:8><index:4>         chunk index of snapshot generation gen
var (
	keyPromised    = []byte("m/promised")
	keyChosen      = []byte("m/chosen")
	keySnapPointer = []byte("m/snapshot")
	prefixSlot     = []byte("s/")
	prefixChunk    = []byte("c/")
)

const (
	slotKeyBytes  = 2 + 8
	chunkKeyBytes = 2 + 8 + 4
)

func appendSlotKey(dst []byte, slot uint64) []byte {
	dst = append(dst, prefixSlot...)
	return binary.BigEndian.AppendUint64(dst, slot)
}

// slotOfKey returns the slot a slot key names; ok is false for anything else.
func slotOfKey(key []byte) (slot uint64, ok bool) {
	if len(key) != slotKeyBytes || string(key[:2]) != string(prefixSlot) {
		return 0, false
	}
	return binary.BigEndian.Uint64(key[2:]), true
}

func chunkKey(gen uint64, index uint32) []byte {
	k := make([]byte, 0, chunkKeyBytes)
	k = append(k, prefixChunk...)
	k = binary.BigEndian.AppendUint64(k, gen)
	return binary.BigEndian.AppendUint32(k, index)
}

// genOfChunkKey returns the snapshot generation a chunk key belongs to.
func genOfChunkKey(key []byte) (gen uint64, ok bool) {
	if len(key) != chunkKeyBytes || string(key[:2]) != string(prefixChunk) {
		return 0, false
	}
	return binary.BigEndian.Uint64(key[2:]), true
}
