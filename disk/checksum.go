package disk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/dgraph-io/badger/v4"
)

// Every value the store writes ends with a CRC32C of its key and value (crcBytes, little-endian),
// checked on every read: a flipped byte in a stored vote, ballot or snapshot pointer is a named
// ErrCorrupt, never a value the replica acts on. badger's own table and block checksums catch
// damage to its files' structure (see badgerOptions); this one also covers a value that reaches
// badger whole but wrong, and names the record.
const crcBytes = 4

// ErrFormat is Open's answer for a data directory written by an older SofaDB, whose records carry
// no checksums: it cannot be checked, so it is not used. Recovery: wipe the directory and start
// the replica empty; it rejoins from a peer's snapshot (safe while a majority keeps its data).
var ErrFormat = errors.New("disk: data directory of another format")

// keyFormat marks a store whose records are checksummed; its value names the format.
var (
	keyFormat   = []byte("m/format")
	formatValue = []byte("sofadb-store/2 crc32c")
)

// recordCRC is the checksum of one stored record: its key, then its value.
func recordCRC(key, value []byte) uint32 {
	return crc32.Update(crc32.Checksum(key, castagnoli), castagnoli, value)
}

// appendCRC appends the checksum of key and value (which must be the bytes just before it).
func appendCRC(dst, key, value []byte) []byte {
	return binary.LittleEndian.AppendUint32(dst, recordCRC(key, value))
}

// sealed returns value with its checksum, in a new slice.
func sealed(key, value []byte) []byte {
	out := make([]byte, 0, len(value)+crcBytes)
	out = append(out, value...)
	return appendCRC(out, key, value)
}

// unseal checks a stored value's checksum and returns the value without it (aliasing stored).
func unseal(key, stored []byte) ([]byte, error) {
	if len(stored) < crcBytes {
		return nil, fmt.Errorf("%w: record %q: %d bytes, too short for its checksum", ErrCorrupt, key, len(stored))
	}
	value := stored[:len(stored)-crcBytes]
	want := binary.LittleEndian.Uint32(stored[len(value):])
	if got := recordCRC(key, value); got != want {
		return nil, fmt.Errorf("%w: record %q (%d bytes): checksum %08x, stored %08x", ErrCorrupt, key, len(value), got, want)
	}
	return value, nil
}

// itemValue reads an item's value and checks it; the result is a copy the caller owns.
func itemValue(item *badger.Item) ([]byte, error) {
	stored, err := item.ValueCopy(nil)
	if err != nil {
		return nil, fmt.Errorf("%w: record %q: %v", ErrCorrupt, item.Key(), err)
	}
	return unseal(item.Key(), stored)
}

// checkFormat makes sure the store's records are checksummed: an empty store is marked (and the
// mark synced) before anything else is written; a store without the mark that holds anything was
// written by an older SofaDB and is refused, and so is one marked with another format.
func checkFormat(db *badger.DB) error {
	var mark []byte
	empty := true
	err := db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(keyFormat)
		if err == nil {
			mark, err = itemValue(item)
			return err
		}
		if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		it := txn.NewIterator(badger.IteratorOptions{})
		defer it.Close()
		it.Rewind()
		empty = !it.Valid()
		return nil
	})
	switch {
	case err != nil:
		return err
	case mark != nil && string(mark) != string(formatValue):
		return fmt.Errorf("%w: it says %q, this build reads %q", ErrFormat, mark, formatValue)
	case mark != nil:
		return nil
	case !empty:
		return fmt.Errorf("%w: written by a SofaDB from before checksummed records (no %q key); "+
			"wipe it and restart the replica empty: it rejoins from a peer's snapshot", ErrFormat, keyFormat)
	}
	if err := db.Update(func(txn *badger.Txn) error { return txn.Set(keyFormat, sealed(keyFormat, formatValue)) }); err != nil {
		return err
	}
	return db.Sync()
}
