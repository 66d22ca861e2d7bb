package disk

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
)

// badgerOptions opens badger for SofaDB's use: a write-heavy, WAL-like log of small records with a
// handful of metadata keys and occasional snapshot chunks, on a 2-core machine shared with the rest
// of the replica, where the group committer, not badger, decides when to fsync.
func badgerOptions(dir string, opt Options) badger.Options {
	return badger.DefaultOptions(dir).
		// SofaDB decides when data is durable: one DB.Sync per group, from the flusher. With
		// SyncWrites=true badger would msync after every write request instead.
		WithSyncWrites(false).
		// The rotation unit of the WAL and the size of each L0 table. Bigger means fewer flushes
		// and compactions, but more memory and more WAL to replay at open.
		WithMemTableSize(opt.MemTableBytes).
		// Memtables (current + waiting to flush) before writes stall; 3 bounds memory at about
		// 3x MemTableBytes per replica while still absorbing a flush in progress.
		WithNumMemtables(3).
		// badger refuses exactly 1 compactor; 2 is the least above 0. The default 4 would compete
		// with the replica's own goroutines for 2 cores.
		WithNumCompactors(2).
		// The data is small binary commands and the CPU is the scarce resource: no compression.
		WithCompression(options.None).
		// Reads happen at open and when truncation scans slot keys; a small cache is enough (the
		// default is 256 MB). Table indexes stay in memory regardless.
		WithBlockCacheSize(8 << 20).
		// A table block is built in one buffer that doubles whenever an entry does not fit: with
		// badger's 4 KiB blocks, a 60 KB value takes 4 KiB, then 64 KiB, then 128 KiB when the
		// block is finished, about 3x the data, in allocators badger keeps pooled (issue 12: 220 MB
		// of table builders while values of 60 KB were written). Blocks as large as the largest
		// record (a 256 KiB batch, a 64 KiB value) hold them without regrowing. Reads are rare
		// (start-up, truncation scans), so a bigger block costs little there.
		WithBlockSize(tableBlockBytes).
		// One logical writer (the flusher): conflict detection would only cost per-key tracking.
		WithDetectConflicts(false).
		// badger's expvar counters cost atomics on the hot path; SofaDB keeps its own (Stats).
		WithMetricsEnabled(false).
		// Every value lives in the LSM tree with its key: the store refuses any value at or above
		// this threshold (RecordBytesMax), so the value log holds nothing but its header and never
		// needs garbage collection. Deleted slots are reclaimed by compaction alone.
		WithValueThreshold(valueThresholdBytes(opt)).
		// Unused (see above); small so that its sparse preallocation stays small too.
		WithValueLogFileSize(16 << 20).
		// Every table's blocks are checked when the table is opened (at start-up, and each one a
		// flush or compaction builds): a damaged file is an error, not data. (badger's default
		// checks nothing.) Not OnTableAndBlockRead: with it, a table whose block fails its
		// checksum at open makes badger v4.9.6 panic (Table.VerifyChecksum formats its error
		// from the nil block), where OnTableRead returns the error.
		WithChecksumVerificationMode(options.OnTableRead).
		// Warnings and errors to the replica's logger, and the INFO lines that say data was
		// dropped or replayed (a truncated write-ahead log); the rest of INFO is per-flush noise.
		WithLogger(badgerLogger{opt.Logger})
}

// tableBlockBytes is the size of one block of a badger table (see badgerOptions).
const tableBlockBytes = 512 << 10

// valueThresholdBytes is badger's largest threshold (1 MB), lowered to its batch limit (15% of the
// memtable) which the threshold may not exceed.
func valueThresholdBytes(opt Options) int64 {
	return min(1<<20, 15*opt.MemTableBytes/100)
}

// badgerLogger routes badger's warnings and errors to slog and drops its info and debug lines.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, v ...any) {
	b.l.Error("badger: " + strings.TrimSpace(fmt.Sprintf(f, v...)))
}

func (b badgerLogger) Warningf(f string, v ...any) {
	b.l.Warn("badger: " + strings.TrimSpace(fmt.Sprintf(f, v...)))
}

// Infof passes on the lines that matter to an operator: badger truncating or replaying a log,
// or finding something corrupt, is reported at INFO, and was dropped with the rest.
func (b badgerLogger) Infof(f string, v ...any) {
	line := strings.TrimSpace(fmt.Sprintf(f, v...))
	if l := strings.ToLower(line); strings.Contains(l, "truncat") || strings.Contains(l, "corrupt") ||
		strings.Contains(l, "checksum") || strings.Contains(l, "replay") || strings.Contains(l, "recover") {
		b.l.Warn("badger: " + line)
	}
}

func (badgerLogger) Debugf(string, ...any) {}

// opOverheadBytes bounds what badger adds to one op in the memtable arena (skiplist node with its
// tower, 8-byte version, value header, alignment: about 120 bytes) and in the WAL (header, version,
// CRC), and to one transaction (its commit marker). Used only to bound the memtable fill.
const opOverheadBytes = 256

// badgerBackend is the production backend: one badger transaction per group (more when a group
// exceeds badger's batch limit), and DB.Sync plus the rotated-file syncs described on sync.
// write runs on the committer's writer goroutine, sync on its syncer, possibly at the same time.
type badgerBackend struct {
	db            *badger.DB
	dir           string
	memTableBytes int64

	memFid  int // newest memtable WAL (.mem) seen at the last check; syncer-owned
	vlogFid int // newest value log file (.vlog) seen at the last check; syncer-owned

	// fillBytes bounds from above the memtable arena bytes of every write that completed since the
	// last check: the writer adds when a write returns, the check swaps it to 0 before probing.
	fillBytes atomic.Int64

	rotatedSyncs atomic.Uint64 // read by Stats

	names dirNames // the directory's names made durable when they change

	// Lost-write detection (witness.go): the last group written (the writer stores, the syncer
	// reads), the lowest group key kept (writer-owned), and the DURABLE file's writer.
	group atomic.Uint64
	qbase uint64
	wit   *witness

	fault func(step string) error // Options.Fault
}

func (b *badgerBackend) write(ops []op) error {
	if len(ops) == 0 {
		return nil
	}
	if b.fault != nil {
		if err := b.fault("write"); err != nil {
			return err
		}
	}
	g := b.group.Load() + 1
	var qbase uint64
	ops, qbase = groupOps(ops, g, b.qbase)
	fill := int64(opOverheadBytes)
	defer func() { b.fillBytes.Add(fill) }()
	txn := b.db.NewTransaction(true)
	defer func() { txn.Discard() }()
	for i := range ops {
		o := &ops[i]
		fill += int64(len(o.key)+len(o.value)) + opOverheadBytes
		err := txnApply(txn, o)
		if errors.Is(err, badger.ErrTxnTooBig) {
			// The group is bigger than one badger batch: commit what fits and go on. Atomicity
			// across the split is not needed: nothing in the group is acknowledged before the sync.
			if err = txn.Commit(); err != nil {
				return err
			}
			txn = b.db.NewTransaction(true)
			fill += opOverheadBytes
			err = txnApply(txn, o)
		}
		if err != nil {
			return err
		}
	}
	if err := txn.Commit(); err != nil {
		return err
	}
	b.group.Store(g)
	b.qbase = qbase
	return nil
}

func txnApply(txn *badger.Txn, o *op) error {
	if o.del {
		return txn.Delete(o.key)
	}
	return txn.Set(o.key, o.value)
}

// sync makes every write that returned before it durable. DB.Sync alone does not: it msyncs only
// the current memtable WAL and the current value log file, and when badger rotates either (a full
// memtable, a full value log) it neither syncs the old file (ensureRoomForWrite, doneWriting) nor
// waits for the old WAL's flush to a table. Records written before the rotation would then be
// acknowledged while still only in the page cache. So after DB.Sync, sync finds the files rotated
// out since the last check and fsyncs them too.
func (b *badgerBackend) sync() error {
	if b.fault != nil {
		if err := b.fault("sync"); err != nil {
			return err
		}
	}
	g := b.group.Load() // every group up to it was written before this sync began
	if err := b.db.Sync(); err != nil {
		return err
	}
	if err := b.syncRotated(); err != nil {
		return err
	}
	if err := b.names.syncIfChanged(); err != nil {
		return err
	}
	if b.wit != nil {
		return b.wit.advance(g)
	}
	return nil
}

// syncRotated checks, cheaply, whether a .mem or .vlog file was rotated out since the last check,
// and if so lists the directory and fsyncs every rotated-out file that still exists.
//
// The cheap check is two stats of the next file numbers, which badger assigns consecutively. A
// rotation always creates the next file, and a rotated-out WAL is deleted only after it is flushed
// to a synced table, which needs a whole memtable of writes after it was created, so after the
// last check's probe. So when neither next file exists and less than a memtable's worth
// (fillBytes) was written since the last check, no WAL the writes before this sync landed in was
// rotated out unseen. A rotation racing the check (the writer runs concurrently) happens after
// DB.Sync, so it rotates out a file DB.Sync covered up to the writes this sync answers for; the
// next check finds it. The value log is checked the same way, defensively: no value reaches it
// (see badgerOptions), and its files are deleted only by value-log GC, which SofaDB never runs.
func (b *badgerBackend) syncRotated() error {
	fill := b.fillBytes.Swap(0) // before the probes: a write completing later counts next time
	scan := fill >= b.memTableBytes ||
		exists(memPath(b.dir, b.memFid+1)) || exists(vlogPath(b.dir, b.vlogFid+1))
	if !scan {
		return nil
	}
	mems, vlogs, err := listLogFiles(b.dir)
	if err != nil {
		return err
	}
	n := 0
	for _, f := range rotatedOut(mems, b.memFid) {
		if err := fsyncIfExists(memPath(b.dir, f)); err != nil {
			return err
		}
		n++
	}
	for _, f := range rotatedOut(vlogs, b.vlogFid) {
		if err := fsyncIfExists(vlogPath(b.dir, f)); err != nil {
			return err
		}
		n++
	}
	if n > 0 {
		b.rotatedSyncs.Add(uint64(n)) // the new files' names: dirNames, next
	}
	b.memFid = max(b.memFid, lastOr(mems, 0))
	b.vlogFid = max(b.vlogFid, lastOr(vlogs, 0))
	return nil
}

// rotatedOut returns the files from the one current at the last check up to, but not including,
// the newest: the ones that may hold writes no DB.Sync covered.
func rotatedOut(fids []int, lastCurrent int) []int {
	var out []int
	for i, f := range fids {
		if f >= lastCurrent && i < len(fids)-1 {
			out = append(out, f)
		}
	}
	return out
}

func lastOr(fids []int, def int) int {
	if len(fids) == 0 {
		return def
	}
	return fids[len(fids)-1]
}

// syncAllLogs fsyncs every WAL and value log file and the directory. Open calls it so that what a
// restart reads back (which may include writes the previous process made but never synced: a
// SIGKILL keeps the page cache) is durable before the replica acts on it.
func (b *badgerBackend) syncAllLogs() error {
	mems, vlogs, err := listLogFiles(b.dir)
	if err != nil {
		return err
	}
	for _, f := range mems {
		if err := fsyncIfExists(memPath(b.dir, f)); err != nil {
			return err
		}
	}
	for _, f := range vlogs {
		if err := fsyncIfExists(vlogPath(b.dir, f)); err != nil {
			return err
		}
	}
	b.memFid, b.vlogFid = lastOr(mems, 0), lastOr(vlogs, 0)
	return fsyncIfExists(b.dir)
}

// memPath and vlogPath follow badger's naming (memtable.go mtFilePath, value.go vlogFilePath).
func memPath(dir string, fid int) string {
	return filepath.Join(dir, fmt.Sprintf("%05d.mem", fid))
}

func vlogPath(dir string, fid int) string {
	return filepath.Join(dir, fmt.Sprintf("%06d.vlog", fid))
}

// listLogFiles returns the numbers of the .mem and .vlog files in dir, ascending.
func listLogFiles(dir string) (mems, vlogs []int, err error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, nil, err
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return nil, nil, err
	}
	for _, name := range names {
		base, ext, _ := strings.Cut(name, ".")
		fid, convErr := strconv.Atoi(base)
		switch {
		case convErr != nil:
		case ext == "mem":
			mems = append(mems, fid)
		case ext == "vlog":
			vlogs = append(vlogs, fid)
		}
	}
	slices.Sort(mems)
	slices.Sort(vlogs)
	return mems, vlogs, nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// fsyncIfExists fsyncs path through a new descriptor: fsync flushes the inode's dirty pages,
// including those badger wrote through its shared mmap. A file that vanished was a WAL flushed to a
// (synced) table and deleted, or a value-log file collected: nothing of it needs syncing.
func fsyncIfExists(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// dirNames makes the data directory's names durable soon after they change. badger creates files
// (a rotated write-ahead log, a table a memtable flush wrote) and deletes them without syncing the
// directory in every case: its memtable flush writes a new table, syncs it and records it in the
// MANIFEST, but never syncs the directory, so after a power loss on a file system that keeps a
// new name only once its directory is synced, the MANIFEST names a table that is not there and
// badger refuses to open (found by the power-loss test on powerfs). On ext4 a file's own fsync
// commits its name too; elsewhere it may not.
//
// When the names changed, every write-ahead log file is synced before the directory (see
// syncIfChanged). The check is one fstat of the directory: a change of name changes its mtime. The mtime can be
// coarse (a few ms on Linux), so a change in the same tick as the last sync would not show: the
// directory is synced again while its mtime is within dirQuiet of the last sync. Run from the
// syncer before a sync is acknowledged (so the names every acknowledged write needs are durable)
// and every dirCheckInterval by watch (so a flush while writes have stopped is covered too).
type dirNames struct {
	mu       sync.Mutex
	path     string
	dir      *os.File
	mtime    time.Time // the directory's mtime when it was last synced
	syncedAt time.Time // when it was last synced
	syncs    atomic.Uint64
	err      error // sticky: a failed directory sync fails every sync after it
}

const (
	dirQuiet         = 50 * time.Millisecond
	dirCheckInterval = 20 * time.Millisecond
)

func (d *dirNames) open(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	d.path, d.dir = dir, f
	return d.syncIfChanged()
}

func (d *dirNames) syncIfChanged() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.err != nil || d.dir == nil {
		return d.err
	}
	fi, err := d.dir.Stat()
	if err != nil {
		d.err = fmt.Errorf("disk: stat the data directory: %w", err)
		return d.err
	}
	m := fi.ModTime()
	if m.Equal(d.mtime) && m.Before(d.syncedAt.Add(-dirQuiet)) {
		return nil
	}
	now := time.Now()
	// A new log file's size and contents first: a name made durable before them would come back
	// after a power loss as an empty file, which badger refuses to open ("Create a new file").
	mems, vlogs, err := listLogFiles(d.path)
	if err == nil {
		for _, f := range mems {
			if err = fsyncIfExists(memPath(d.path, f)); err != nil {
				break
			}
		}
	}
	if err == nil {
		for _, f := range vlogs {
			if err = fsyncIfExists(vlogPath(d.path, f)); err != nil {
				break
			}
		}
	}
	if err != nil {
		d.err = fmt.Errorf("disk: fsync the data directory's logs: %w", err)
		return d.err
	}
	if err := d.dir.Sync(); err != nil {
		d.err = fmt.Errorf("disk: fsync the data directory: %w", err)
		return d.err
	}
	d.mtime, d.syncedAt = m, now
	d.syncs.Add(1)
	return nil
}

// watch checks the directory every dirCheckInterval until stop is closed.
func (d *dirNames) watch(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(dirCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			d.syncIfChanged() // an error is sticky: the next group's sync reports it
		}
	}
}

func (d *dirNames) close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.dir == nil {
		return nil
	}
	err := d.dir.Close()
	d.dir = nil
	return err
}
