package disk

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/sofadb/sofadb/kv"
	"github.com/sofadb/sofadb/paxos"
)

// testOptions keeps test stores small: a 4 MiB memtable rotates the WAL often (which the rotation
// syncs must handle) and keeps memory low when tests run in parallel with everything else.
func testOptions() Options {
	return Options{MemTableBytes: 4 << 20, SnapshotChunkBytes: 64 << 10}
}

func openStore(t testing.TB, dir string, opt Options) (*Store, Recovered) {
	t.Helper()
	s, rec, err := Open(dir, opt)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, rec
}

func entry(slot uint64, ballot paxos.Ballot, vals ...string) paxos.Entry {
	e := paxos.Entry{Slot: slot, Ballot: ballot}
	for i, v := range vals {
		e.Cmds = append(e.Cmds, put(slot, uint64(i+1), fmt.Sprint("k", slot), v))
	}
	return e
}

// sameEntries compares entries field by field (a decoded empty batch may be nil or empty).
func sameEntries(t *testing.T, got, want []paxos.Entry) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d entries, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Slot != w.Slot || g.Ballot != w.Ballot || g.Chosen != w.Chosen || len(g.Cmds) != len(w.Cmds) {
			t.Fatalf("entry %d = %+v, want %+v", i, g, w)
		}
		for j := range w.Cmds {
			gc, wc := g.Cmds[j], w.Cmds[j]
			if gc.ClientID != wc.ClientID || gc.Seq != wc.Seq || !bytes.Equal(gc.Data, wc.Data) {
				t.Fatalf("entry %d command %d = %+v, want %+v", i, j, gc, wc)
			}
		}
	}
}

func persist(t testing.TB, s *Store, rd *paxos.Ready) {
	t.Helper()
	if err := persistTicket(s, rd).Wait(); err != nil {
		t.Fatal(err)
	}
}

func TestPersistedStateIsWhatReopenReturns(t *testing.T) {
	dir := t.TempDir()
	s, rec := openStore(t, dir, testOptions())
	if rec.Durable.Promised != 0 || len(rec.Durable.Entries) != 0 || rec.Snapshot != nil {
		t.Fatalf("fresh store recovered %+v", rec)
	}
	b3, b5 := paxos.MakeBallot(3, 1), paxos.MakeBallot(5, 2)
	persist(t, s, &paxos.Ready{Promised: b3, Entries: []paxos.Entry{entry(1, b3, "a"), entry(2, b3, "b")}, MustSync: true})
	// A later ballot's vote overwrites slot 2; a no-op fills slot 3; the chosen prefix moves.
	noop := paxos.Entry{Slot: 3, Ballot: b5, Chosen: true}
	persist(t, s, &paxos.Ready{Promised: b5, Entries: []paxos.Entry{entry(2, b5, "b2", "c2"), noop}, ChosenTo: 2, MustSync: true})
	s.Close()

	_, rec = openStore(t, dir, testOptions())
	d := rec.Durable
	if d.Promised != b5 || d.ChosenTo != 2 || d.Applied != 0 {
		t.Fatalf("durable = promised %v chosen %d applied %d", d.Promised, d.ChosenTo, d.Applied)
	}
	sameEntries(t, d.Entries, []paxos.Entry{entry(1, b3, "a"), entry(2, b5, "b2", "c2"), noop})
}

func TestPersistCopiesTheReadySoTheCallerMayReuseIt(t *testing.T) {
	dir := t.TempDir()
	s, _ := openStore(t, dir, testOptions())
	e := entry(1, 7, "original")
	rd := &paxos.Ready{Entries: []paxos.Entry{e}, MustSync: true}
	tk := persistTicket(s, rd)
	copy(e.Cmds[0].Data, "XXXXXXXX") // reuse the memory before the ticket resolves
	rd.Entries[0].Slot = 99
	if err := tk.Wait(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, rec := openStore(t, dir, testOptions())
	sameEntries(t, rec.Durable.Entries, []paxos.Entry{entry(1, 7, "original")})
}

func TestSnapshotIsStoredWithItsSlotAndReopenResumesAfterIt(t *testing.T) {
	dir := t.TempDir()
	s, _ := openStore(t, dir, testOptions())
	st := buildState(3000) // several chunks of 64 KiB
	for slot := uint64(2990); slot <= 3005; slot++ {
		persist(t, s, &paxos.Ready{Entries: []paxos.Entry{entry(slot, 1, "v")}, MustSync: true})
	}
	snap := st.AppendSnapshot(nil)
	if err := s.SaveSnapshot(snap); err != nil {
		t.Fatal(err)
	}
	if s.SnapshotSlot() != 3000 {
		t.Fatalf("SnapshotSlot = %d", s.SnapshotSlot())
	}
	s.Close()

	_, rec := openStore(t, dir, testOptions())
	if !bytes.Equal(rec.Snapshot, snap) || rec.Durable.Applied != 3000 || rec.Durable.ChosenTo != 3000 {
		t.Fatalf("applied %d chosen %d, snapshot equal %v", rec.Durable.Applied, rec.Durable.ChosenTo,
			bytes.Equal(rec.Snapshot, snap))
	}
	if e := rec.Durable.Entries; len(e) != 5 || e[0].Slot != 3001 || e[4].Slot != 3005 {
		t.Fatalf("entries above the snapshot: %d, first %+v", len(e), e)
	}
	restored := kv.NewState()
	if err := restored.Restore(rec.Snapshot); err != nil || restored.Digest() != st.Digest() {
		t.Fatalf("restore: %v, digest %x want %x", err, restored.Digest(), st.Digest())
	}
}

func TestSnapshotRefusesGarbageAndGoingBack(t *testing.T) {
	s, _ := openStore(t, t.TempDir(), testOptions())
	if err := s.SaveSnapshot([]byte{9, 9}); !errors.Is(err, kv.ErrBadSnapshot) {
		t.Fatalf("garbage: %v", err)
	}
	if err := s.SaveSnapshot(buildState(20).AppendSnapshot(nil)); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveSnapshot(buildState(10).AppendSnapshot(nil)); !errors.Is(err, ErrSnapshotOlder) {
		t.Fatalf("older snapshot: %v", err)
	}
}

// chunkGens counts stored chunk keys per snapshot generation.
func chunkGens(t *testing.T, s *Store) map[uint64]int {
	t.Helper()
	gens := map[uint64]int{}
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixChunk})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			gen, _ := genOfChunkKey(it.Item().Key())
			gens[gen]++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return gens
}

// snapFiles lists the snapshot files in dir (temporary ones included).
func snapFiles(t *testing.T, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "snapshot-*"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range names {
		names[i] = filepath.Base(names[i])
	}
	return names
}

func TestCrashDuringSaveSnapshotLeavesOneWholeSnapshot(t *testing.T) {
	dir := t.TempDir()
	s, _ := openStore(t, dir, testOptions())
	old := buildState(2000).AppendSnapshot(nil)
	if err := s.SaveSnapshot(old); err != nil {
		t.Fatal(err)
	}
	// Crash after the new file is written and synced, before the pointer flips; and another crash's
	// half-written temporary file beside it.
	newer := buildState(2500).AppendSnapshot(nil)
	if err := s.writeSnapFile(2, newer); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, snapFileName(3)+snapTempSuffix), newer[:100], 0o600); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, rec := openStore(t, dir, testOptions())
	if !bytes.Equal(rec.Snapshot, old) {
		t.Fatal("a snapshot without its pointer flip replaced the old one")
	}
	if f := snapFiles(t, dir); len(f) != 1 || f[0] != snapFileName(1) {
		t.Fatalf("orphan snapshot files not deleted at open: %v", f)
	}
	// Crash after the flip, before the old file is deleted.
	p := snapPointer{gen: 2, slot: 2500, sizeBytes: uint64(len(newer)), crc: crc32.Checksum(newer, castagnoli)}
	if err := s.writeSnapFile(2, newer); err != nil {
		t.Fatal(err)
	}
	flip := p.record()
	if err := s.c.submit(flip).Wait(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, rec = openStore(t, dir, testOptions())
	if !bytes.Equal(rec.Snapshot, newer) || rec.Durable.Applied != 2500 {
		t.Fatal("flipped snapshot not the one recovered")
	}
	if f := snapFiles(t, dir); len(f) != 1 || f[0] != snapFileName(2) {
		t.Fatalf("old snapshot file not deleted at open: %v", f)
	}
	s.Close()
	// A snapshot file that does not match its pointer is corruption, not a quiet fresh start.
	if err := os.WriteFile(filepath.Join(dir, snapFileName(2)), old, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Open(dir, testOptions()); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("open with a snapshot file that fails its checksum: %v, want ErrCorrupt", err)
	}
}

// TestSnapshotOfAnOlderStoreIsReadAndReplaced: stores written before snapshots became files kept
// them as chunk records in badger. Such a store opens with its snapshot, and the next save writes
// a file and deletes the chunks.
func TestSnapshotOfAnOlderStoreIsReadAndReplaced(t *testing.T) {
	dir := t.TempDir()
	s, _ := openStore(t, dir, testOptions())
	old := buildState(2000).AppendSnapshot(nil)
	p := snapPointer{gen: 1, slot: 2000, sizeBytes: uint64(len(old)), crc: crc32.Checksum(old, castagnoli)}
	var err error
	if p.chunks, err = s.writeChunks(1, old); err != nil || p.chunks == 0 {
		t.Fatalf("%d chunks: %v", p.chunks, err)
	}
	flip := p.record()
	if err := s.c.submit(flip).Wait(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, rec := openStore(t, dir, testOptions())
	if !bytes.Equal(rec.Snapshot, old) || rec.Durable.Applied != 2000 {
		t.Fatal("the chunked snapshot of an older store was not recovered")
	}
	newer := buildState(2500).AppendSnapshot(nil)
	if err := s.SaveSnapshot(newer); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, rec = openStore(t, dir, testOptions())
	if !bytes.Equal(rec.Snapshot, newer) {
		t.Fatal("the snapshot saved after the chunked one was not recovered")
	}
	if g := chunkGens(t, s); len(g) != 0 {
		t.Fatalf("chunks left after the snapshot became a file: %v", g)
	}
	if f := snapFiles(t, dir); len(f) != 1 || f[0] != snapFileName(2) {
		t.Fatalf("snapshot files %v, want only generation 2's", f)
	}
}

// slotKeys returns the slots stored.
func slotKeys(t *testing.T, s *Store) []uint64 {
	t.Helper()
	var slots []uint64
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixSlot})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			slot, _ := slotOfKey(it.Item().Key())
			slots = append(slots, slot)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return slots
}

func TestTruncateDeletesSlotsOnlyUpToTheDurableSnapshot(t *testing.T) {
	dir := t.TempDir()
	s, _ := openStore(t, dir, testOptions())
	st := kv.NewState()
	for slot := uint64(1); slot <= 100; slot++ {
		e := entry(slot, 1, "v")
		persist(t, s, &paxos.Ready{Entries: []paxos.Entry{e}, MustSync: true})
		if slot <= 50 {
			applyEntry(st, &e)
		}
	}
	if err := s.Truncate(10); !errors.Is(err, ErrTruncateBeyondSnapshot) {
		t.Fatalf("truncate without a snapshot: %v", err)
	}
	if err := s.SaveSnapshot(st.AppendSnapshot(nil)); err != nil {
		t.Fatal(err)
	}
	if err := s.Truncate(51); !errors.Is(err, ErrTruncateBeyondSnapshot) {
		t.Fatalf("truncate past the snapshot: %v", err)
	}
	if err := s.Truncate(50); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync().Wait(); err != nil {
		t.Fatal(err)
	}
	if slots := slotKeys(t, s); len(slots) != 50 || slots[0] != 51 {
		t.Fatalf("after truncating to 50: %d slots from %v", len(slots), slots[:1])
	}
	s.Close()
	_, rec := openStore(t, dir, testOptions())
	if d := rec.Durable; d.Applied != 50 || len(d.Entries) != 50 || d.Entries[0].Slot != 51 {
		t.Fatalf("reopen after truncate: applied %d, %d entries", d.Applied, len(d.Entries))
	}
}

// diskBytes is the space the directory's files occupy (allocated blocks, not apparent size: badger
// preallocates its WAL and value log sparsely).
func diskBytes(t *testing.T, dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		var st syscall.Stat_t
		if syscall.Stat(path, &st) == nil {
			n += st.Blocks * 512
		}
		return nil
	})
	return n
}

// TestLongRunKeepsTheDiskBounded writes many times more log than it keeps, snapshotting and
// truncating as the runtime will, and checks that the space used stays bounded.
func TestLongRunKeepsTheDiskBounded(t *testing.T) {
	dir := t.TempDir()
	opt := testOptions()
	opt.MemTableBytes = 1 << 20 // a small structural bound, so the run can write many times it
	s, _ := openStore(t, dir, opt)
	st := kv.NewState()
	value := bytes.Repeat([]byte("x"), 1000)
	const cycles, slotsPerCycle = 80, 1000 // about 1 MB of log per cycle
	slot := uint64(0)
	var peak int64
	for c := range cycles {
		for range slotsPerCycle {
			slot++
			e := paxos.Entry{Slot: slot, Ballot: 1, Cmds: []paxos.Command{put(1, slot, fmt.Sprintf("k%d", slot%100), string(value))}}
			tk := persistTicket(s, &paxos.Ready{Entries: []paxos.Entry{e}, MustSync: slot%50 == 0})
			applyEntry(st, &e)
			if slot%50 == 0 {
				if err := tk.Wait(); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := s.SaveSnapshot(st.AppendSnapshot(nil)); err != nil {
			t.Fatal(err)
		}
		if err := s.Truncate(slot); err != nil {
			t.Fatal(err)
		}
		if err := s.Sync().Wait(); err != nil {
			t.Fatal(err)
		}
		peak = max(peak, diskBytes(t, dir))
		if c == cycles-1 {
			t.Logf("%d cycles, %.1f MB of log written: %.1f MB on disk now, peak %.1f MB",
				cycles, float64(cycles*slotsPerCycle*len(value))/1e6, float64(diskBytes(t, dir))/1e6, float64(peak)/1e6)
		}
	}
	if slots := slotKeys(t, s); len(slots) != 0 {
		t.Fatalf("%d slot keys left after truncating everything", len(slots))
	}
	// Bounded by the structure, not by the run: level 0 collects memtable-sized tables until a
	// compaction drops the deleted slots (at 5 tables, or at most 15 when compaction lags: then
	// badger stalls writes), beside up to 3 memtables' WALs and a small level 1; each file is up
	// to a quarter larger than the memtable (table index and bloom filter, WAL entry headers).
	// Measured peaks: 7-11 MB alone, 21.2 MB under heavy CPU contention. The run writes 3x it.
	bound := int64(15+3+2) * opt.MemTableBytes * 5 / 4
	if peak > bound {
		t.Fatalf("peak disk use %.1f MB, over the %.1f MB bound", float64(peak)/1e6, float64(bound)/1e6)
	}
	s.Close()
	_, rec := openStore(t, dir, opt)
	if d := rec.Durable; d.Applied != slot || len(d.Entries) != 0 {
		t.Fatalf("reopen: applied %d (want %d), %d entries", d.Applied, slot, len(d.Entries))
	}
}

func TestWALsRotatedOutBetweenSyncsAreSyncedToo(t *testing.T) {
	s, _ := openStore(t, t.TempDir(), testOptions())
	value := bytes.Repeat([]byte("r"), 4000)
	for slot := uint64(1); slot <= 3000; slot++ { // 12 MB through a 4 MiB memtable
		e := paxos.Entry{Slot: slot, Cmds: []paxos.Command{put(1, slot, "k", string(value))}}
		tk := persistTicket(s, &paxos.Ready{Entries: []paxos.Entry{e}, MustSync: slot%100 == 0})
		if slot%100 == 0 {
			if err := tk.Wait(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if st := s.Stats(); st.RotatedSyncs == 0 {
		t.Fatalf("12 MB through a 4 MiB memtable and no rotated WAL synced: %+v", st)
	}
}

func TestRotatedOutIsEveryFileFromTheLastCurrentButTheNewest(t *testing.T) {
	for _, c := range []struct {
		fids []int
		last int
		want string
	}{
		{[]int{7}, 7, "[]"},
		{[]int{7, 8}, 7, "[7]"},
		{[]int{5, 7, 8, 9}, 7, "[7 8]"},
		{[]int{9, 10}, 7, "[9]"}, // 7 and 8 flushed and deleted already
		{nil, 3, "[]"},
	} {
		if got := fmt.Sprint(rotatedOut(c.fids, c.last)); got != c.want {
			t.Errorf("rotatedOut(%v, %d) = %s, want %s", c.fids, c.last, got, c.want)
		}
	}
}

func TestOpenRefusesACorruptSlotRecord(t *testing.T) {
	dir := t.TempDir()
	s, _ := openStore(t, dir, testOptions())
	persist(t, s, &paxos.Ready{Entries: []paxos.Entry{entry(1, 1, "v")}, MustSync: true})
	// Slot 2's key holding slot 3's entry, and a value that does not decode.
	var b recordBuilder
	b.setSlot(2)
	b.buf = append(b.buf, 3, 1, 0, 0)
	if tk, err := s.submit(&b, true); err != nil || tk.Wait() != nil {
		t.Fatal(err, tk.Wait())
	}
	s.Close()
	if _, _, err := Open(dir, testOptions()); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open of a mislabelled slot: %v", err)
	}
}

func TestOversizedRecordFailsAloneAndTheStoreCarriesOn(t *testing.T) {
	s, _ := openStore(t, t.TempDir(), testOptions())
	huge := entry(1, 1, string(make([]byte, s.RecordBytesMax())))
	if err := persistTicket(s, &paxos.Ready{Entries: []paxos.Entry{huge}, MustSync: true}).Wait(); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized record: %v", err)
	}
	persist(t, s, &paxos.Ready{Entries: []paxos.Entry{entry(1, 1, "ok")}, MustSync: true})
	if s.Err() != nil {
		t.Fatal(s.Err())
	}
}

func TestStatsCountGroupsSyncsAndRecords(t *testing.T) {
	s, _ := openStore(t, t.TempDir(), testOptions())
	for slot := uint64(1); slot <= 10; slot++ {
		persist(t, s, &paxos.Ready{Entries: []paxos.Entry{entry(slot, 1, "v")}, MustSync: slot%2 == 0})
	}
	st := s.Stats()
	if st.Records != 10 || st.Batches != 10 || st.Syncs != 5 || st.Failures != 0 {
		t.Fatalf("stats = %+v", st)
	}
	if st.SyncLatencyNs.TotalCount() != 5 || st.RecordsPerSync.Max() != 1 || st.Bytes == 0 {
		t.Fatalf("histograms: %d syncs, max records per sync %d", st.SyncLatencyNs.TotalCount(), st.RecordsPerSync.Max())
	}
}

func TestEveryEntryPointRefusesAfterClose(t *testing.T) {
	s, _, err := Open(t.TempDir(), testOptions())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := persistTicket(s, &paxos.Ready{MustSync: true}).Wait(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Persist after Close: %v", err)
	}
	if err := s.SaveSnapshot(kv.NewState().AppendSnapshot(nil)); !errors.Is(err, ErrClosed) {
		t.Fatalf("SaveSnapshot after Close: %v", err)
	}
	if err := s.Truncate(0); !errors.Is(err, ErrClosed) {
		t.Fatalf("Truncate after Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// persistTicket is Persist for tests that treat a refused record like a failed one: the returned ticket
// carries Persist's error.
func persistTicket(s *Store, rd *paxos.Ready) Ticket {
	t, err := s.Persist(rd)
	if err != nil {
		return Ticket{err: err}
	}
	return t
}
