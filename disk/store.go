package disk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/sofadb/sofadb/paxos"
	"github.com/sofadb/sofadb/wire/peerwire"
)

// ErrCorrupt is returned by Open when a stored record does not decode or contradicts its key: the
// data directory was damaged or written by something else. Nothing is guessed or skipped.
var ErrCorrupt = errors.New("disk: corrupt record")

// ErrTooLarge is Persist's answer for a record with a value over RecordBytesMax. It is a
// configuration error (the core's batch bytes against Options.MemTableBytes): nothing of the
// record is queued, and the store carries on.
var ErrTooLarge = errors.New("disk: record over RecordBytesMax")

// DefaultMemTableBytes is Options.MemTableBytes's default. badger builds each level-0 table in
// memory, in an allocator that doubles to about twice the memtable, and keeps up to 8 such
// allocators pooled at their largest (compactions reuse them) for as long as it is writing: the
// store's memory is about 8 x 2 x MemTableBytes besides the memtables themselves. Under 60 KB
// values (issue 12) the pooled builders held 220 MB with 32 MiB memtables and 80 MB with 8 MiB;
// the replicas' CPU at 10,000 writes/s of 128 B did not measurably change between the two.
const DefaultMemTableBytes = 8 << 20

// Options configures a Store. A zero field takes its default.
type Options struct {
	// QueueRecordsMax bounds the records waiting for the flusher; submitters block beyond it.
	// Default 4096.
	QueueRecordsMax int
	// QueueBytesMax bounds the bytes waiting for the flusher. Default 64 MiB.
	QueueBytesMax int
	// MemTableBytes is badger's memtable size: the WAL rotation unit, and the size of a level-0
	// table. The store's memory is about 3 memtables and the tables being built from them. Under
	// 14 MiB it also lowers RecordBytesMax. Default DefaultMemTableBytes.
	MemTableBytes int64
	// SnapshotChunkBytes is the size of one snapshot chunk record, the format of stores written before
	// snapshots became files (only tests write it now). Default 256 KiB.
	SnapshotChunkBytes int
	// Logger receives badger's warnings and errors. Default slog.Default().
	Logger *slog.Logger
	// SyncDelayMax bounds the commit delay: after an fsync that acknowledged many records, the
	// syncer waits up to this long (and at most that fsync's duration) for their writers to submit
	// again, so that the next fsync covers them too. Zero takes the default, 200 us; negative
	// disables the delay.
	SyncDelayMax time.Duration
	// Fault, when set, is called before every group write ("write") and every fsync ("sync"); an
	// error it returns is what that step returns, as if the disk had said it (ENOSPC, EIO). It is
	// fault injection for the runtime's tests: the store takes its failure path exactly as it
	// would for the real error.
	Fault func(step string) error
}

func (o Options) withDefaults() Options {
	if o.QueueRecordsMax <= 0 {
		o.QueueRecordsMax = 4096
	}
	if o.QueueBytesMax <= 0 {
		o.QueueBytesMax = 64 << 20
	}
	if o.MemTableBytes <= 0 {
		o.MemTableBytes = DefaultMemTableBytes
	}
	if o.SnapshotChunkBytes <= 0 {
		o.SnapshotChunkBytes = 256 << 10
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.SyncDelayMax == 0 {
		o.SyncDelayMax = 200 * time.Microsecond
	}
	return o
}

// Recovered is what a restarting replica needs from its disk.
type Recovered struct {
	// Durable is the acceptor state for the core. Applied is the snapshot's slot (0 without one);
	// Entries are the stored slots above it, in slot order, sharing no memory with the store;
	// ChosenTo is at least Applied.
	Durable paxos.Durable
	// Snapshot is the latest durable State.AppendSnapshot bytes (through Durable.Applied), or nil
	// when none was ever saved. Hand it to State.Restore.
	Snapshot []byte
}

// Store is a replica's durable acceptor state and snapshots, on badger. Every write goes through
// one group committer, so writes are ordered and each fsync covers many of them. All methods are
// safe for concurrent use; the runtime calls Persist from its loop and may run SaveSnapshot and
// Truncate from another goroutine.
type Store struct {
	db  *badger.DB
	be  *badgerBackend
	c   *committer
	opt Options

	recordBytesMax int

	dir string

	snapMu sync.Mutex // one SaveSnapshot at a time; held across its writes and syncs

	mu          sync.Mutex
	snap        snapPointer // the durable snapshot (gen 0: none)
	truncatedTo uint64      // slot keys at or below it are deleted or queued for deletion

	closed    atomic.Bool // set when Close begins: SaveSnapshot and Truncate refuse from then on
	closeOnce sync.Once
	closeErr  error

	namesStop, namesDone chan struct{} // the directory watch (dirNames.watch)
}

// Open opens (or creates) the store in dir and returns what a restart needs. Everything it returns
// is durable: Open fsyncs the logs it recovered from before returning, since a killed process's
// unsynced writes survive in the page cache and would otherwise be acted on and then lost.
func Open(dir string, opt Options) (*Store, Recovered, error) {
	opt = opt.withDefaults()
	db, err := badger.Open(badgerOptions(dir, opt))
	if err != nil {
		return nil, Recovered{}, fmt.Errorf("disk: open %s: %w", dir, err)
	}
	// Below the value threshold, so no value goes to the value log (a checksum ends every value);
	// and at most half a batch.
	recordBytesMax := int(min(db.MaxBatchSize()/2, valueThresholdBytes(opt)-1-crcBytes))
	if err := checkFormat(db); err != nil {
		db.Close()
		return nil, Recovered{}, fmt.Errorf("disk: open %s: %w", dir, err)
	}
	s := &Store{db: db, dir: dir, opt: opt, recordBytesMax: recordBytesMax,
		be: &badgerBackend{db: db, dir: dir, memTableBytes: opt.MemTableBytes, fault: opt.Fault}}
	rec, err := s.open()
	if err != nil {
		db.Close()
		return nil, Recovered{}, fmt.Errorf("disk: open %s: %w", dir, err)
	}
	s.c = newCommitter(s.be, opt.QueueRecordsMax, opt.QueueBytesMax, opt.SyncDelayMax)
	return s, rec, nil
}

func (s *Store) open() (Recovered, error) {
	if s.opt.SnapshotChunkBytes > s.recordBytesMax {
		return Recovered{}, fmt.Errorf("SnapshotChunkBytes %d over the %d bytes one badger batch allows",
			s.opt.SnapshotChunkBytes, s.recordBytesMax)
	}
	rec, err := s.recover()
	if err != nil {
		return Recovered{}, err
	}
	last, qbase, err := checkGroups(s.db, s.dir)
	if err != nil {
		return Recovered{}, err
	}
	s.be.group.Store(last)
	s.be.qbase = qbase
	if err := s.deleteOrphanChunks(); err != nil {
		return Recovered{}, err
	}
	if err := s.be.syncAllLogs(); err != nil {
		return Recovered{}, err
	}
	// Everything recovered is durable now: the witness starts from it.
	if s.be.wit, err = openWitness(s.dir, s.be.group.Load()); err != nil {
		return Recovered{}, err
	}
	if err := s.be.names.open(s.dir); err != nil {
		s.be.wit.close()
		return Recovered{}, err
	}
	s.namesStop, s.namesDone = make(chan struct{}), make(chan struct{})
	go s.be.names.watch(s.namesStop, s.namesDone)
	return rec, nil
}

// recover reads the acceptor state, the snapshot and the slots above it in one read transaction.
func (s *Store) recover() (rec Recovered, err error) {
	err = s.db.View(func(txn *badger.Txn) error {
		d := &rec.Durable
		promised, err := readU64(txn, keyPromised)
		if err != nil {
			return err
		}
		d.Promised = paxos.Ballot(promised)
		if d.ChosenTo, err = readU64(txn, keyChosen); err != nil {
			return err
		}
		if s.snap, rec.Snapshot, err = readSnapshot(txn, s.dir); err != nil {
			return err
		}
		d.Applied = s.snap.slot
		d.ChosenTo = max(d.ChosenTo, d.Applied)
		d.Entries, err = readEntries(txn, d.Applied)
		if err != nil {
			return err
		}
		s.truncatedTo, err = lowestSlot(txn)
		return err
	})
	return rec, err
}

// readU64 reads an 8-byte big-endian value; a missing key reads as 0.
func readU64(txn *badger.Txn, key []byte) (uint64, error) {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	b, err := itemValue(item)
	if err != nil {
		return 0, err
	}
	if len(b) != 8 {
		return 0, fmt.Errorf("%w: %s holds %d bytes", ErrCorrupt, key, len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}

// readEntries decodes every slot above applied. Each value is copied out of badger once and the
// decoded commands alias that copy, which the caller then owns.
func readEntries(txn *badger.Txn, applied uint64) ([]paxos.Entry, error) {
	opts := badger.DefaultIteratorOptions
	opts.Prefix = prefixSlot
	it := txn.NewIterator(opts)
	defer it.Close()
	var entries []paxos.Entry
	for it.Seek(appendSlotKey(nil, applied+1)); it.Valid(); it.Next() {
		item := it.Item()
		slot, ok := slotOfKey(item.Key())
		if !ok {
			return nil, fmt.Errorf("%w: key %q", ErrCorrupt, item.Key())
		}
		val, err := itemValue(item)
		if err != nil {
			return nil, err
		}
		var e paxos.Entry
		n, err := peerwire.DecodeEntry(val, &e)
		if err != nil || n != len(val) || e.Slot != slot {
			return nil, fmt.Errorf("%w: slot %d (decoded %d of %d bytes, slot %d): %v",
				ErrCorrupt, slot, n, len(val), e.Slot, err)
		}
		entries = append(entries, e)
	}
	return entries, nil
}

// lowestSlot returns one below the lowest stored slot (0 if none), where truncation resumes.
func lowestSlot(txn *badger.Txn) (uint64, error) {
	opts := badger.IteratorOptions{Prefix: prefixSlot}
	it := txn.NewIterator(opts)
	defer it.Close()
	it.Rewind()
	if !it.Valid() {
		return 0, nil
	}
	slot, ok := slotOfKey(it.Item().Key())
	if !ok || slot == 0 {
		return 0, fmt.Errorf("%w: key %q", ErrCorrupt, it.Item().Key())
	}
	return slot - 1, nil
}

// Persist queues what rd asks to persist (Promised, Entries, ChosenTo) as one record and returns
// its ticket; the record is synced when rd.MustSync. Send rd.AfterSync only once Durable reaches
// the ticket's Seq. Persist encodes everything before it returns: the caller may reuse rd and all
// the memory it points to at once.
//
// Call it for every Ready that has something to persist or AfterSync messages: an empty Ready
// still gets a sequence number, ordered behind every earlier one. Persist never blocks: check
// Backlog to stop taking new work while the disk is behind. On a failed store the record resolves,
// in order, with the sticky error; after Close began the ticket carries ErrClosed. A record with a
// value over RecordBytesMax is refused with ErrTooLarge and nothing is queued.
func (s *Store) Persist(rd *paxos.Ready) (Ticket, error) {
	var b recordBuilder
	b.grow(rd)
	if rd.Promised != 0 {
		b.set(keyPromised)
		b.buf = binary.BigEndian.AppendUint64(b.buf, uint64(rd.Promised))
	}
	for i := range rd.Entries {
		b.setSlot(rd.Entries[i].Slot)
		b.buf = peerwire.AppendEntry(b.buf, &rd.Entries[i])
	}
	if rd.ChosenTo != 0 {
		b.set(keyChosen)
		b.buf = binary.BigEndian.AppendUint64(b.buf, rd.ChosenTo)
	}
	return s.submit(&b, rd.MustSync)
}

// Sync returns a ticket that resolves once everything submitted before it is durable: a barrier
// for a runtime that wants it (at shutdown, after a burst of records that did not ask for sync).
func (s *Store) Sync() Ticket {
	return s.c.submit(&record{mustSync: true})
}

// Durable is the highest sequence number resolved: every record up to it is written, and durable
// if it asked for sync or any later synced record is resolved too. It never goes back; after a
// failure it stops (and Err says why).
func (s *Store) Durable() uint64 { return s.c.durable() }

// DurableC is signalled (capacity one, never closed) whenever Durable moves or the store fails:
// the runtime's loop selects on it beside the network and the clock, then reads Durable and Err.
func (s *Store) DurableC() <-chan struct{} { return s.c.durableC }

// Backlog is what Persist queued that is not resolved yet, in records and bytes, and whether that
// is over Options.QueueRecordsMax or QueueBytesMax: the runtime stops proposing new commands
// (clients get Busy) while it is, and keeps answering peers.
func (s *Store) Backlog() (records, bytes int, full bool) { return s.c.backlog() }

// RecordBytesMax is the largest key plus value (one slot's encoded batch, one snapshot chunk) the
// store accepts: under badger's value threshold (1 MB, or 15% of a memtable under 7 MiB), so that
// nothing needs the value log, and under half of badger's batch limit. The core's batch byte limit
// must stay below it.
func (s *Store) RecordBytesMax() int { return s.recordBytesMax }

func (s *Store) submit(b *recordBuilder, mustSync bool) (Ticket, error) {
	ops := b.ops()
	for i := range ops {
		if n := len(ops[i].key) + len(ops[i].value); n > s.recordBytesMax {
			return Ticket{}, fmt.Errorf("%w: %d bytes, at most %d", ErrTooLarge, n, s.recordBytesMax)
		}
	}
	t := s.c.submit(&record{ops: ops, mustSync: mustSync, sizeBytes: len(b.buf)})
	return t, t.err
}

// Stats returns copies of the group committer's counters and histograms.
func (s *Store) Stats() Stats {
	st := s.c.stats.snapshot()
	st.RotatedSyncs = s.be.rotatedSyncs.Load()
	st.DirSyncs = s.be.names.syncs.Load()
	return st
}

// Err is the sticky failure (wrapping ErrFailed), or nil while the store is healthy. A replica
// whose store failed must stop acknowledging and restart from what is on disk.
func (s *Store) Err() error { return s.c.failure() }

// usable is the error SaveSnapshot and Truncate refuse with: the sticky failure or ErrClosed.
func (s *Store) usable() error {
	if s.closed.Load() {
		return ErrClosed
	}
	return s.Err()
}

// Close syncs everything queued, stops the flusher and closes badger. Tickets submitted after
// Close began resolve with ErrClosed. Close is idempotent.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		s.snapMu.Lock() // let a SaveSnapshot in progress finish; later ones see closed and refuse
		defer s.snapMu.Unlock()
		s.Sync().Wait() // a failure is already sticky and reported by Err
		s.c.close()
		close(s.namesStop)
		<-s.namesDone
		s.closeErr = errors.Join(s.be.wit.close(), s.db.Close(), s.be.names.close())
	})
	return s.closeErr
}

// recordBuilder lays a record's keys and values out in one buffer (one allocation for the bytes)
// and remembers where each op starts; ops are cut from the buffer only once it stops growing.
type recordBuilder struct {
	buf   []byte
	spans []span
}

type span struct {
	keyStart, valueStart int
	del, sealed          bool
}

func (b *recordBuilder) grow(rd *paxos.Ready) {
	n := 64 + 2*crcBytes
	for i := range rd.Entries {
		n += slotKeyBytes + rd.Entries[i].Size() + crcBytes
	}
	b.buf = make([]byte, 0, n)
	b.spans = make([]span, 0, len(rd.Entries)+2)
}

func (b *recordBuilder) set(key []byte) {
	b.seal()
	b.spans = append(b.spans, span{keyStart: len(b.buf), valueStart: len(b.buf) + len(key)})
	b.buf = append(b.buf, key...)
}

func (b *recordBuilder) setSlot(slot uint64) {
	b.seal()
	start := len(b.buf)
	b.buf = appendSlotKey(b.buf, slot)
	b.spans = append(b.spans, span{keyStart: start, valueStart: len(b.buf)})
}

func (b *recordBuilder) delete(key []byte) {
	b.set(key)
	b.spans[len(b.spans)-1].del = true
}

// seal ends the last value written with its checksum (see checksum.go).
func (b *recordBuilder) seal() {
	if len(b.spans) == 0 {
		return
	}
	sp := &b.spans[len(b.spans)-1]
	if sp.del || sp.sealed {
		return
	}
	b.buf = appendCRC(b.buf, b.buf[sp.keyStart:sp.valueStart], b.buf[sp.valueStart:])
	sp.sealed = true
}

// ops cuts the buffer into ops; each slice is capped so nothing can append into a neighbour.
func (b *recordBuilder) ops() []op {
	b.seal()
	ops := make([]op, len(b.spans))
	for i, sp := range b.spans {
		end := len(b.buf)
		if i+1 < len(b.spans) {
			end = b.spans[i+1].keyStart
		}
		ops[i] = op{key: b.buf[sp.keyStart:sp.valueStart:sp.valueStart],
			value: b.buf[sp.valueStart:end:end], del: sp.del}
	}
	return ops
}
