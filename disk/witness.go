package disk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Lost-write detection. badger replays its write-ahead logs at open and, at the first entry that
// does not check out, truncates that log there and carries on, reporting it only at INFO: a
// damaged log silently took thousands of acknowledged votes with it (issue 13), and Paxos assumes
// an acceptor never forgets a vote it acknowledged. So the store keeps its own witness:
//
//   - every group it writes carries one more key, q/<group:8>, numbering groups 1, 2, 3, ... in
//     write order (q/ keys below m/qbase are deleted now and then, in the same write that moves it);
//   - after a sync, the highest group it covered is written to the file DURABLE in the data
//     directory and fdatasync'ed, by a goroutine of its own, off the acknowledgement path, at most
//     once per witnessEvery (one fdatasync per sync cost 15-60 % of group-commit throughput);
//   - Open requires the q/ keys from m/qbase up to at least the number DURABLE holds, without a
//     gap, and refuses to start otherwise (ErrLostWrites), saying which groups are missing.
//
// The witness lags the acknowledgements by up to witnessEvery and one fdatasync: a log damaged in
// just the writes of that last moment before a crash goes unnoticed. Everything older is checked.
var ErrLostWrites = errors.New("disk: lost writes")

var (
	prefixGroup = []byte("q/")
	keyQBase    = []byte("m/qbase")
)

const (
	groupKeyBytes = 2 + 8
	witnessFile   = "DURABLE"
	witnessBytes  = 8 + 4 // group, CRC32C of it
	// groupKeysKept is how many group keys stay behind m/qbase when it moves, and groupKeysTrimEvery
	// how often it moves: at most about their sum are kept.
	groupKeysKept      = 1024
	groupKeysTrimEvery = 4096
	// witnessEvery spaces the witness's writes.
	witnessEvery = 10 * time.Millisecond
)

func groupKey(g uint64) []byte {
	k := make([]byte, 0, groupKeyBytes)
	k = append(k, prefixGroup...)
	return binary.BigEndian.AppendUint64(k, g)
}

// groupOps are the ops a write of group g adds: its key, and every groupKeysTrimEvery groups the
// deletion of the keys from qbase to g-groupKeysKept and the new qbase. It returns the new qbase.
func groupOps(ops []op, g, qbase uint64) ([]op, uint64) {
	k := groupKey(g)
	ops = append(ops, op{key: k, value: sealed(k, nil)})
	if g%groupKeysTrimEvery != 0 || g <= groupKeysKept {
		return ops, qbase
	}
	nb := g - groupKeysKept
	for q := max(qbase, 1); q < nb; q++ {
		ops = append(ops, op{key: groupKey(q), del: true})
	}
	v := binary.BigEndian.AppendUint64(nil, nb)
	return append(ops, op{key: keyQBase, value: sealed(keyQBase, v)}), nb
}

// checkGroups reads the group keys and the witness and returns the last group written and qbase,
// or ErrLostWrites when groups the witness says were durable are missing.
func checkGroups(db *badger.DB, dir string) (last, qbase uint64, err error) {
	durable, err := readWitness(dir)
	if err != nil {
		return 0, 0, err
	}
	var gapFrom, gapTo uint64
	err = db.View(func(txn *badger.Txn) error {
		if qbase, err = readU64(txn, keyQBase); err != nil {
			return err
		}
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixGroup})
		defer it.Close()
		next := max(qbase, 1) // a store that never trimmed starts at group 1
		for it.Seek(groupKey(next)); it.Valid(); it.Next() {
			key := it.Item().Key()
			if len(key) != groupKeyBytes {
				return fmt.Errorf("%w: key %q", ErrCorrupt, key)
			}
			g := binary.BigEndian.Uint64(key[2:])
			if g != next && gapTo == 0 {
				gapFrom, gapTo = next, g-1
			}
			next, last = g+1, g
		}
		return nil
	})
	switch {
	case err != nil:
		return 0, 0, err
	case gapTo != 0 && gapFrom <= durable:
		return 0, 0, fmt.Errorf("%w: groups %d to %d are missing, and every group up to %d had been made durable "+
			"(%s): the write-ahead log was truncated or damaged, and votes this replica acknowledged may be gone; "+
			"it must not vote again with this directory", ErrLostWrites, gapFrom, min(gapTo, durable), durable, witnessFile)
	case last < durable:
		return 0, 0, fmt.Errorf("%w: the store recovered writes up to group %d, and every group up to %d had been made "+
			"durable (%s): the write-ahead log was truncated or damaged, and votes this replica acknowledged may be gone; "+
			"it must not vote again with this directory", ErrLostWrites, last, durable, witnessFile)
	}
	return max(last, durable), qbase, nil
}

func readWitness(dir string) (uint64, error) {
	b, err := os.ReadFile(filepath.Join(dir, witnessFile))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if len(b) != witnessBytes || crc32.Checksum(b[:8], castagnoli) != binary.LittleEndian.Uint32(b[8:]) {
		return 0, fmt.Errorf("%w: %s: %d bytes that do not check out", ErrCorrupt, witnessFile, len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}

// witness writes the highest durable group to DURABLE, one fdatasync at a time, always the latest.
type witness struct {
	f    *os.File
	mu   sync.Mutex
	want uint64 // highest group a sync covered
	has  uint64 // what DURABLE holds, synced
	err  error  // sticky: the next sync reports it
	wake chan struct{}
	done chan struct{}
}

func openWitness(dir string, has uint64) (*witness, error) {
	f, err := os.OpenFile(filepath.Join(dir, witnessFile), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	w := &witness{f: f, want: has, has: has, wake: make(chan struct{}, 1), done: make(chan struct{})}
	if err := w.write(has); err != nil { // a new file's size and name are durable from the start
		f.Close()
		return nil, err
	}
	if err := fsyncIfExists(dir); err != nil {
		f.Close()
		return nil, err
	}
	go w.run()
	return w, nil
}

func (w *witness) write(g uint64) error {
	var b [witnessBytes]byte
	binary.BigEndian.PutUint64(b[:], g)
	binary.LittleEndian.PutUint32(b[8:], crc32.Checksum(b[:8], castagnoli))
	if _, err := w.f.WriteAt(b[:], 0); err != nil {
		return err
	}
	return w.f.Sync()
}

// advance records that group g is durable; the goroutine writes it down when it can.
func (w *witness) advance(g uint64) error {
	w.mu.Lock()
	err := w.err
	if g > w.want {
		w.want = g
	}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return err
}

func (w *witness) run() {
	defer close(w.done)
	for range w.wake {
		w.mu.Lock()
		g, has := w.want, w.has
		w.mu.Unlock()
		if g == has {
			continue
		}
		err := w.write(g)
		w.mu.Lock()
		if err != nil && w.err == nil {
			w.err = fmt.Errorf("%s: %w", witnessFile, err)
		} else if err == nil {
			w.has = g
		}
		w.mu.Unlock()
		time.Sleep(witnessEvery) // syncs meanwhile only raise want; the next write covers them all
	}
}

// close writes the last durable group down and closes the file.
func (w *witness) close() error {
	close(w.wake)
	<-w.done
	w.mu.Lock()
	g, has, err := w.want, w.has, w.err
	w.mu.Unlock()
	if err == nil && g != has {
		err = w.write(g)
	}
	return errors.Join(err, w.f.Close())
}
