package disk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"

	"github.com/dgraph-io/badger/v4"

	"github.com/sofadb/sofadb/kv"
)

// ErrSnapshotOlder refuses a snapshot below the durable one: the log above the durable snapshot
// may already be truncated, so going back would leave slots that nothing covers.
var ErrSnapshotOlder = errors.New("disk: snapshot older than the durable one")

// ErrTruncateBeyondSnapshot refuses to delete slots the durable snapshot does not cover: a replica
// must never lose a slot its recoverable state has not applied.
var ErrTruncateBeyondSnapshot = errors.New("disk: truncation past the durable snapshot")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// snapPointer names the durable snapshot: which generation, where it is, and how to check it. It is
// written in one synced record after the snapshot is durable, so a crash leaves either the old
// pointer (with the old snapshot, deleted only after the flip is durable) or the new one.
//
// A snapshot is a file of its own in the data directory (snapFileName), written once, fsynced and
// renamed into place before the flip. Stores written before that kept snapshots as chunk records
// in badger (chunks > 0); those are still read, and replaced by a file at the next save.
type snapPointer struct {
	gen       uint64 // 0: no snapshot
	slot      uint64
	chunks    uint32 // chunk records of an older store; 0: the snapshot is in snapFileName(gen)
	sizeBytes uint64
	crc       uint32 // CRC-32C of the whole snapshot
}

const snapPointerBytes = 8 + 8 + 4 + 8 + 4

func (p snapPointer) encode() []byte {
	b := make([]byte, 0, snapPointerBytes)
	b = binary.BigEndian.AppendUint64(b, p.gen)
	b = binary.BigEndian.AppendUint64(b, p.slot)
	b = binary.BigEndian.AppendUint32(b, p.chunks)
	b = binary.BigEndian.AppendUint64(b, p.sizeBytes)
	return binary.BigEndian.AppendUint32(b, p.crc)
}

// record is the synced record that makes p the durable snapshot.
func (p snapPointer) record() *record {
	return &record{ops: []op{{key: keySnapPointer, value: sealed(keySnapPointer, p.encode())}}, mustSync: true,
		sizeBytes: snapPointerBytes + crcBytes}
}

func decodeSnapPointer(b []byte) (snapPointer, error) {
	if len(b) != snapPointerBytes {
		return snapPointer{}, fmt.Errorf("%w: snapshot pointer of %d bytes", ErrCorrupt, len(b))
	}
	return snapPointer{
		gen:       binary.BigEndian.Uint64(b),
		slot:      binary.BigEndian.Uint64(b[8:]),
		chunks:    binary.BigEndian.Uint32(b[16:]),
		sizeBytes: binary.BigEndian.Uint64(b[20:]),
		crc:       binary.BigEndian.Uint32(b[28:]),
	}, nil
}

// SaveSnapshot makes data (State.AppendSnapshot bytes) the durable snapshot and returns once it is:
// chunks are written through the group committer, synced, and only then is the pointer flipped (in
// one synced record); the previous snapshot's chunks are deleted after. A crash at any point leaves
// the old snapshot or the new one, never a mix. Truncate may go up to data's slot once it returns.
//
// data is read until SaveSnapshot returns and never kept: the caller may reuse it afterwards. It
// is safe to call from a goroutine other than the runtime loop (snapshots can be tens of MB); one
// runs at a time. Errors: kv.ErrBadSnapshot, ErrSnapshotOlder, ErrClosed, or the sticky failure.
func (s *Store) SaveSnapshot(data []byte) error {
	slot, err := kv.SnapshotSlot(data)
	if err != nil {
		return err
	}
	s.snapMu.Lock()
	defer s.snapMu.Unlock()
	if err := s.usable(); err != nil {
		return err
	}
	s.mu.Lock()
	old := s.snap
	s.mu.Unlock()
	if slot < old.slot {
		return fmt.Errorf("%w: slot %d, durable snapshot at %d", ErrSnapshotOlder, slot, old.slot)
	}
	p := snapPointer{gen: old.gen + 1, slot: slot, sizeBytes: uint64(len(data)),
		crc: crc32.Checksum(data, castagnoli)}
	// The snapshot must be durable before a durable pointer can name it. It is written beside the
	// log, not through it: as chunk records it shared the group committer with the log, waited
	// behind its fsyncs four chunks at a time, and went through badger's memtables, flushes and
	// compactions (80-146 MB took 3-27 s under load, issue 12 item 2).
	if err := s.writeSnapFile(p.gen, data); err != nil {
		return err
	}
	if err := s.c.submit(p.record()).Wait(); err != nil {
		os.Remove(filepath.Join(s.dir, snapFileName(p.gen)))
		return err
	}
	s.mu.Lock()
	s.snap = p
	s.mu.Unlock()
	s.deleteSnapshot(old) // not synced: a crash just leaves orphans for Open to delete
	return nil
}

// snapFileName is the file of snapshot generation gen in the data directory; snapTempSuffix marks
// one being written (Open deletes those, and any generation but the durable one).
func snapFileName(gen uint64) string { return fmt.Sprintf("snapshot-%016x.sofa", gen) }

const snapTempSuffix = ".tmp"

// writeSnapFile writes data as generation gen's file and makes it durable: written under a
// temporary name, fsynced, renamed, and the directory fsynced, so the name never shows a partial
// file. A failure removes what it wrote and is not sticky: the log is untouched, and a later save
// can succeed (after space is freed, say).
func (s *Store) writeSnapFile(gen uint64, data []byte) (err error) {
	if s.opt.Fault != nil {
		if err := s.opt.Fault("snapshot"); err != nil {
			return err
		}
	}
	final := filepath.Join(s.dir, snapFileName(gen))
	tmp := final + snapTempSuffix
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("disk: snapshot file: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("disk: snapshot file: %w", err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("disk: snapshot file: %w", err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("disk: snapshot file: %w", err)
	}
	if err = os.Rename(tmp, final); err != nil {
		return fmt.Errorf("disk: snapshot file: %w", err)
	}
	if err = syncDir(s.dir); err != nil {
		os.Remove(final)
		return fmt.Errorf("disk: snapshot file: %w", err)
	}
	return nil
}

// syncDir fsyncs a directory, making the names created or removed in it durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// deleteSnapshot removes a snapshot that is no longer the durable one: its file, or the deletion of
// its chunks is queued; nothing to do for gen 0.
func (s *Store) deleteSnapshot(p snapPointer) {
	if p.gen == 0 {
		return
	}
	if p.chunks == 0 {
		os.Remove(filepath.Join(s.dir, snapFileName(p.gen)))
		return
	}
	var b recordBuilder
	for i := range p.chunks {
		b.delete(chunkKey(p.gen, i))
	}
	s.submit(&b, false)
}

// readSnapshot loads and checks the durable snapshot; (zero, nil, nil) when there is none.
func readSnapshot(txn *badger.Txn, dir string) (snapPointer, []byte, error) {
	item, err := txn.Get(keySnapPointer)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return snapPointer{}, nil, nil
	}
	if err != nil {
		return snapPointer{}, nil, err
	}
	raw, err := itemValue(item)
	if err != nil {
		return snapPointer{}, nil, err
	}
	p, err := decodeSnapPointer(raw)
	if err != nil {
		return p, nil, err
	}
	var data []byte
	if p.chunks == 0 && p.gen != 0 {
		data, err = os.ReadFile(filepath.Join(dir, snapFileName(p.gen)))
		if err != nil {
			return p, nil, fmt.Errorf("%w: snapshot %d: %v", ErrCorrupt, p.gen, err)
		}
	} else if data, err = readChunks(txn, p); err != nil {
		return p, nil, err
	}
	return p, data, checkSnapshot(p, data)
}

func readChunks(txn *badger.Txn, p snapPointer) ([]byte, error) {
	data := make([]byte, 0, min(p.sizeBytes, 1<<30))
	for i := range p.chunks {
		item, err := txn.Get(chunkKey(p.gen, i))
		if err != nil {
			return nil, fmt.Errorf("%w: snapshot %d chunk %d: %v", ErrCorrupt, p.gen, i, err)
		}
		v, err := itemValue(item)
		if err != nil {
			return nil, err
		}
		data = append(data, v...)
	}
	return data, nil
}

func checkSnapshot(p snapPointer, data []byte) error {
	if uint64(len(data)) != p.sizeBytes || crc32.Checksum(data, castagnoli) != p.crc {
		return fmt.Errorf("%w: snapshot %d: %d bytes (want %d) or checksum mismatch",
			ErrCorrupt, p.gen, len(data), p.sizeBytes)
	}
	slot, err := kv.SnapshotSlot(data)
	if err != nil || slot != p.slot {
		return fmt.Errorf("%w: snapshot %d: slot %d, pointer says %d (%v)", ErrCorrupt, p.gen, slot, p.slot, err)
	}
	return nil
}

// deleteOrphanChunks removes chunks of any generation but the durable one: left by a crash during
// SaveSnapshot (new chunks, no flip) or after it (old chunks not yet deleted). Open runs it before
// the flusher starts, so it writes directly; Open's final sync covers it.
func (s *Store) deleteOrphanChunks() error {
	var orphans [][]byte
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixChunk})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if gen, ok := genOfChunkKey(it.Item().Key()); !ok || gen != s.snap.gen {
				orphans = append(orphans, it.Item().KeyCopy(nil))
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := s.deleteOrphanFiles(); err != nil {
		return err
	}
	if len(orphans) == 0 {
		return nil
	}
	ops := make([]op, len(orphans))
	for i, k := range orphans {
		ops[i] = op{key: k, del: true}
	}
	return s.be.write(ops)
}

// deleteOrphanFiles removes snapshot files of any generation but the durable one, and files a crash
// left half written.
func (s *Store) deleteOrphanFiles() error {
	names, err := filepath.Glob(filepath.Join(s.dir, "snapshot-*.sofa*"))
	if err != nil {
		return err
	}
	keep := ""
	if s.snap.gen != 0 && s.snap.chunks == 0 {
		keep = filepath.Join(s.dir, snapFileName(s.snap.gen))
	}
	removed := false
	for _, name := range names {
		if name != keep {
			if err := os.Remove(name); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
			removed = true
		}
	}
	if removed {
		return syncDir(s.dir)
	}
	return nil
}

// SnapshotSlot is the slot of the durable snapshot (0 without one): the highest Truncate accepts.
func (s *Store) SnapshotSlot() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snap.slot
}

// Truncate deletes the stored slots up to upTo (paxos.Ready.CompactTo), so a long run does not
// fill the disk. It refuses with ErrTruncateBeyondSnapshot when upTo is above the durable
// snapshot's slot. The deletions go through the group committer without a sync of their own (a
// slot that reappears after a crash is at or below the snapshot and ignored by Open); Truncate
// queues them and returns without waiting.
// Space comes back through badger's compactions, which drop deleted and overwritten keys; the
// value log needs no garbage collection because no value is ever stored in it (badgerOptions).
//
// It scans the stored slot keys it deletes (a key-only iteration from where the last truncation
// stopped), so its cost grows with the slots deleted, not with the log. A slot record still queued
// (not yet written) during that scan is not deleted; it is at or below the snapshot, so Open
// ignores it, and truncation after the next Open resumes below it.
func (s *Store) Truncate(upTo uint64) error {
	if err := s.usable(); err != nil {
		return err
	}
	s.mu.Lock()
	from, snapSlot := s.truncatedTo, s.snap.slot
	if upTo > snapSlot {
		s.mu.Unlock()
		return fmt.Errorf("%w: up to %d, snapshot at %d", ErrTruncateBeyondSnapshot, upTo, snapSlot)
	}
	if upTo <= from {
		s.mu.Unlock()
		return nil
	}
	s.truncatedTo = upTo
	s.mu.Unlock()
	var b recordBuilder
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixSlot})
		defer it.Close()
		for it.Seek(appendSlotKey(nil, from+1)); it.Valid(); it.Next() {
			if slot, ok := slotOfKey(it.Item().Key()); !ok || slot > upTo {
				break
			}
			b.delete(it.Item().Key())
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("disk: truncate scan: %w", err)
	}
	if len(b.spans) > 0 {
		s.c.submit(&record{ops: b.ops(), sizeBytes: len(b.buf)})
	}
	return nil
}
