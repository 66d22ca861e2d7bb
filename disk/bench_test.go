package disk

import (
	"bytes"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sofadb/sofadb/kv"
	"github.com/sofadb/sofadb/paxos"
	"github.com/sofadb/sofadb/wire/peerwire"
)

// benchRecordBytes is the encoded size of one benchmark record (one slot, one command).
const benchRecordBytes = 128

const tmpfsMagic = 0x01021994

// benchDir returns a fresh directory on a real disk: $SOFADB_BENCH_DIR if set, else b.TempDir().
// fsync on tmpfs costs nothing, so a benchmark there would measure nothing: it refuses.
func benchDir(b *testing.B) string {
	b.Helper()
	dir := b.TempDir()
	if base := os.Getenv("SOFADB_BENCH_DIR"); base != "" {
		var err error
		if dir, err = os.MkdirTemp(base, "sofadb-disk-bench-"); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(dir) })
	}
	var fs syscall.Statfs_t
	if err := syscall.Statfs(dir, &fs); err != nil {
		b.Fatal(err)
	}
	if fs.Type == tmpfsMagic {
		b.Fatalf("%s is on tmpfs: fsync is free there; set SOFADB_BENCH_DIR to a directory on disk", dir)
	}
	return dir
}

// benchEntry is a one-command slot whose wire encoding is benchRecordBytes long (for 3-byte slot
// varints, slots 16384 to 2 million: the benchmarks stay in that range).
func benchEntry(slot uint64) paxos.Entry {
	e := paxos.Entry{Slot: slot, Ballot: paxos.MakeBallot(1, 1), Cmds: []paxos.Command{
		put(1, 1, "key-0123456789ab", string(benchValue()))}}
	return e
}

// benchValue pads the command so that a slot in the benchmarks' range encodes to benchRecordBytes.
var benchValue = sync.OnceValue(func() []byte {
	e := paxos.Entry{Slot: 1 << 14, Ballot: paxos.MakeBallot(1, 1), Cmds: []paxos.Command{
		put(1, 1, "key-0123456789ab", "")}}
	return bytes.Repeat([]byte("v"), benchRecordBytes-len(peerwire.AppendEntry(nil, &e)))
})

// reportGroups reports what the group committer did during the timed part of a benchmark.
func reportGroups(b *testing.B, before, after Stats, elapsed time.Duration) {
	syncs := after.Syncs - before.Syncs
	records := after.Records - before.Records
	if syncs == 0 {
		return
	}
	b.ReportMetric(float64(records)/float64(syncs), "records/fsync")
	b.ReportMetric(float64(syncs)/elapsed.Seconds(), "fsyncs/s")
	b.ReportMetric(float64(records)/elapsed.Seconds(), "records/s")
	b.ReportMetric(float64(after.SyncLatencyNs.ValueAtQuantile(50))/1e3, "p50-fsync-µs")
	b.ReportMetric(float64(after.SyncLatencyNs.ValueAtQuantile(99))/1e3, "p99-fsync-µs")
}

// BenchmarkGroupCommit is many writers persisting 128-byte records that each ask for sync,
// through the real path (Persist, the flusher, badger, DB.Sync on this machine's disk). ns/op is
// per record; records/fsync is the group-commit factor.
//
// The default store waits briefly after a busy fsync for the writers it released (the commit
// delay, Options.SyncDelayMax); the no-delay cases beside them show what that buys.
func BenchmarkGroupCommit(b *testing.B) {
	type bc struct {
		writers int
		delay   time.Duration
	}
	cases := []bc{{1, 0}, {16, 0}, {64, 0}, {256, 0}, {64, -1}, {256, -1}}
	for _, c := range cases {
		name := fmt.Sprintf("writers=%d", c.writers)
		if c.delay < 0 {
			name += "/no-delay"
		}
		writers := c.writers
		b.Run(name, func(b *testing.B) {
			s, _ := openStore(b, benchDir(b), Options{SyncDelayMax: c.delay})
			b.SetBytes(benchRecordBytes)
			var next atomic.Uint64
			next.Store(1 << 14)
			limit := uint64(1<<14) + uint64(b.N)
			before := s.Stats()
			start := time.Now()
			b.ResetTimer()
			var wg sync.WaitGroup
			for range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for slot := next.Add(1); slot <= limit; slot = next.Add(1) {
						rd := paxos.Ready{Entries: []paxos.Entry{benchEntry(slot)}, MustSync: true}
						if err := persistTicket(s, &rd).Wait(); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			reportGroups(b, before, s.Stats(), time.Since(start))
		})
	}
}

// BenchmarkSyncEach is the baseline without group commit: one writer, each 128-byte record
// written by itself and synced by itself, through the same badger write and sync the flusher uses.
func BenchmarkSyncEach(b *testing.B) {
	s, _ := openStore(b, benchDir(b), Options{})
	s.Sync().Wait()
	be := s.be // the flusher is idle: nothing else is submitted during the benchmark
	b.SetBytes(benchRecordBytes)
	start := time.Now()
	b.ResetTimer()
	for i := range b.N {
		e := benchEntry(uint64(1<<14 + i))
		o := op{key: appendSlotKey(nil, e.Slot), value: peerwire.AppendEntry(nil, &e)}
		if err := be.write([]op{o}); err != nil {
			b.Fatal(err)
		}
		if err := be.sync(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	elapsed := time.Since(start)
	b.ReportMetric(1, "records/fsync")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "fsyncs/s")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "records/s")
}

// benchState builds a state of n keys of 16 bytes with 128-byte values.
func benchState(n int) *kv.State {
	st := kv.NewState()
	val := bytes.Repeat([]byte("v"), 128)
	cmds := []kv.Command{{Op: kv.OpOpen}} // session 1, then its puts
	slot := uint64(0)
	for i := 0; i < n; {
		for ; len(cmds) < 64 && i < n; i++ {
			cmds = append(cmds, kv.Command{ClientID: 1, Seq: uint64(i + 1), Op: kv.OpPut,
				Key: fmt.Appendf(nil, "key-%012d", i), Value: val})
		}
		slot++
		st.Apply(slot, cmds, nil)
		cmds = cmds[:0]
	}
	return st
}

// BenchmarkSaveSnapshot saves a 100,000-key state (about 15 MB): chunking, two syncs, the pointer
// flip and deleting the previous snapshot's chunks. MB/s is snapshot bytes made durable.
func BenchmarkSaveSnapshot(b *testing.B) {
	s, _ := openStore(b, benchDir(b), Options{})
	data := benchState(100_000).AppendSnapshot(nil)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := s.SaveSnapshot(data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpen is a restart's recovery: 4,096 stored slots of 16 commands (16-byte keys, 128-byte
// values; about 10 MB) above a 10,000-key snapshot, read back and decoded by Open.
func BenchmarkOpen(b *testing.B) {
	dir := benchDir(b)
	s, _, err := Open(dir, Options{})
	if err != nil {
		b.Fatal(err)
	}
	st := benchState(10_000)
	if err := s.SaveSnapshot(st.AppendSnapshot(nil)); err != nil {
		b.Fatal(err)
	}
	const slots = 4096
	val := bytes.Repeat([]byte("v"), 128)
	for i := range uint64(slots) {
		e := paxos.Entry{Slot: st.Applied() + 1 + i, Ballot: 1}
		for j := range 16 {
			e.Cmds = append(e.Cmds, put(2, i*16+uint64(j), fmt.Sprintf("key-%012d", j), string(val)))
		}
		persistTicket(s, &paxos.Ready{Entries: []paxos.Entry{e}})
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		s, rec, err := Open(dir, Options{})
		if err != nil {
			b.Fatal(err)
		}
		if len(rec.Durable.Entries) != slots {
			b.Fatalf("recovered %d slots", len(rec.Durable.Entries))
		}
		b.StopTimer()
		s.Close()
		b.StartTimer()
	}
	b.ReportMetric(slots, "slots")
}
