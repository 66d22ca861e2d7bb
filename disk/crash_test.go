package disk

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sofadb/sofadb/kv"
	"github.com/sofadb/sofadb/paxos"
)

// crashChildEnv names the directory the re-executed test binary writes to when it plays the child.
const crashChildEnv = "SOFADB_DISK_CRASH_CHILD"

// crashSnapshotEveryEnv, when set, is how often the child saves a snapshot (a Go duration).
const crashSnapshotEveryEnv = "SOFADB_DISK_CRASH_SNAPSHOT_EVERY"

// crashOptions: a small memtable so the child's WALs rotate and flush while it is killed, and
// small chunks so a snapshot is many records.
// crashMemTableEnv, when set, is the memtable size in bytes instead (smaller: more rotations).
func crashOptions() Options {
	mem := int64(4 << 20)
	if n, err := strconv.ParseInt(os.Getenv(crashMemTableEnv), 10, 64); err == nil {
		mem = n
	}
	return Options{MemTableBytes: mem, SnapshotChunkBytes: 16 << 10,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

const crashMemTableEnv = "SOFADB_DISK_CRASH_MEMTABLE"

// crashNoSyncEnv, when set, makes the child persist without syncing (MustSync false, as a replica
// with -fsync=false does) and still call what it wrote acknowledged: the power-loss test's control.
const crashNoSyncEnv = "SOFADB_DISK_CRASH_NOSYNC"

// TestSIGKILLLosesNothingAcknowledged kills a child writing through the store at random points,
// many times over the same directory, and after each kill reopens the store and checks that it
// opens cleanly and holds everything the child ever printed as acknowledged: each slot's exact
// value (or a snapshot covering it), the highest promised ballot, the latest snapshot.
//
// SIGKILL keeps the page cache, so this tests recovery and atomicity (torn WAL tails, a snapshot
// cut in the middle, truncation racing a kill), not fsync; the fake-disk tests cover fsync order.
func TestSIGKILLLosesNothingAcknowledged(t *testing.T) {
	iterations, budget := 40, 20*time.Second
	if testing.Short() {
		iterations = 10
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	dir := t.TempDir()
	acked := &crashFacts{slots: map[uint64]bool{}}
	start, midSnapshot, i := time.Now(), 0, 0
	for ; i < iterations && time.Since(start) < budget; i++ {
		killedMidSnapshot := runAndKill(t, dir, time.Duration(5+rng.IntN(200))*time.Millisecond, acked, nil, nil)
		if killedMidSnapshot {
			midSnapshot++
		}
		checkAfterCrash(t, dir, acked)
	}
	t.Logf("%d SIGKILLs in %v (%d during SaveSnapshot); %d slots, %d snapshots acknowledged; last snapshot at %d",
		i, time.Since(start).Round(time.Millisecond), midSnapshot, len(acked.slots), acked.snapshots, acked.snapSlot)
	if len(acked.slots) == 0 {
		t.Fatal("the child never acknowledged anything: the test tested nothing")
	}
}

// crashFacts is everything the children acknowledged, over all runs.
type crashFacts struct {
	slots     map[uint64]bool
	promised  paxos.Ballot
	snapSlot  uint64
	snapshots int
}

// runAndKill starts a child (with env added to its environment), lets it write for runFor after it
// is ready, calls cut (when not nil: a power loss), SIGKILLs it, and records what it acknowledged.
// It reports whether the kill fell inside a SaveSnapshot.
func runAndKill(t *testing.T, dir string, runFor time.Duration, facts *crashFacts, cut func(), env []string) (midSnapshot bool) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(append(os.Environ(), crashChildEnv+"="+dir), env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	var lines []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if sc.Text() == "ready" {
				close(ready)
			}
			lines = append(lines, sc.Text())
		}
	}()
	select {
	case <-ready:
		time.Sleep(runFor)
	case <-done:
	case <-time.After(10 * time.Second):
	}
	if cut != nil {
		cut()
	}
	cmd.Process.Kill() // SIGKILL
	<-done
	cmd.Wait()
	if len(lines) == 0 || lines[0] != "ready" {
		t.Fatalf("child did not start: %q\n%s", lines, stderr.String())
	}
	return facts.record(t, lines)
}

func (f *crashFacts) record(t *testing.T, lines []string) (midSnapshot bool) {
	for _, line := range lines {
		var n uint64
		switch {
		case line == "ready":
		case line == "snapshot-start":
			midSnapshot = true
		case scan(line, "ack %d", &n):
			f.slots[n] = true
		case scan(line, "promised %d", &n):
			f.promised = max(f.promised, paxos.Ballot(n))
		case scan(line, "snapshot %d", &n):
			f.snapSlot, midSnapshot = max(f.snapSlot, n), false
			f.snapshots++
		default:
			t.Fatalf("child printed %q", line)
		}
	}
	return midSnapshot
}

func scan(line, format string, n *uint64) bool {
	_, err := fmt.Sscanf(line, format, n)
	return err == nil
}

// checkAfterCrash opens the store as a restarting replica would and checks every acknowledged fact.
func checkAfterCrash(t *testing.T, dir string, f *crashFacts) {
	t.Helper()
	r, err := openRecovered(dir)
	if err != nil {
		t.Fatalf("Open after the crash: %v", err)
	}
	r.check(t, f)
}

// crashRecovered is what a store opened after a crash holds, as far as the crash tests check it.
type crashRecovered struct {
	Promised   paxos.Ballot
	Applied    uint64
	SnapshotOK string          // "" when the snapshot restores at Applied (or there is none), else what is wrong
	Order      string          // "" when the entries are in slot order above Applied, else where not
	Slots      map[uint64]bool // slot stored -> it holds exactly crashValue(slot)
}

// openRecovered opens dir, reads what the crash tests check, and closes it.
func openRecovered(dir string) (*crashRecovered, error) {
	s, rec, err := Open(dir, crashOptions())
	if err != nil {
		return nil, err
	}
	defer s.Close()
	d := rec.Durable
	r := &crashRecovered{Promised: d.Promised, Applied: d.Applied, Slots: map[uint64]bool{}}
	if d.Applied > 0 {
		st := kv.NewState()
		if err := st.Restore(rec.Snapshot); err != nil || st.Applied() != d.Applied {
			r.SnapshotOK = fmt.Sprintf("snapshot does not restore: %v (applied %d, want %d)", err, st.Applied(), d.Applied)
		}
	}
	for i := range d.Entries {
		e := &d.Entries[i]
		if r.Order == "" && (i > 0 && e.Slot <= d.Entries[i-1].Slot || e.Slot <= d.Applied) {
			r.Order = fmt.Sprintf("entries out of order or under the snapshot: %d after %d (applied %d)", e.Slot, d.Entries[max(i-1, 0)].Slot, d.Applied)
		}
		r.Slots[e.Slot] = len(e.Cmds) == 1 && valueOf(&e.Cmds[0]) == crashValue(e.Slot)
	}
	return r, nil
}

func (r *crashRecovered) check(t *testing.T, f *crashFacts) {
	t.Helper()
	if err := r.verify(f); err != nil {
		t.Fatal(err)
	}
}

// verify says how what was recovered falls short of what was acknowledged, or nil.
func (r *crashRecovered) verify(f *crashFacts) error {
	switch {
	case r.Promised < f.promised:
		return fmt.Errorf("promised %v after crash, acknowledged %v", r.Promised, f.promised)
	case r.Applied < f.snapSlot:
		return fmt.Errorf("snapshot at %d after crash, acknowledged one at %d", r.Applied, f.snapSlot)
	case r.SnapshotOK != "":
		return errors.New(r.SnapshotOK)
	case r.Order != "":
		return errors.New(r.Order)
	}
	lost, first := 0, uint64(0)
	for slot := range f.slots {
		if slot <= r.Applied {
			continue // covered by the snapshot, possibly truncated
		}
		if ok := r.Slots[slot]; !ok {
			if lost == 0 || slot < first {
				first = slot
			}
			lost++
		}
	}
	if lost > 0 {
		return fmt.Errorf("%d acknowledged slots lost or damaged after the crash, the first %d (applied %d)", lost, first, r.Applied)
	}
	return nil
}

func crashValue(slot uint64) string { return fmt.Sprintf("value-of-slot-%d", slot) }

// TestCrashChild is the child of TestSIGKILLLosesNothingAcknowledged; it does nothing unless
// started by it. It writes until killed and prints each fact once the store acknowledged it.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashChildEnv)
	if dir == "" {
		t.Skip("only runs as the child of TestSIGKILLLosesNothingAcknowledged")
	}
	s, rec, err := Open(dir, crashOptions())
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		os.Exit(2)
	}
	c := &crashChild{s: s}
	c.next.Store(rec.Durable.Applied)
	if n := len(rec.Durable.Entries); n > 0 {
		c.next.Store(rec.Durable.Entries[n-1].Slot)
	}
	c.round.Store(rec.Durable.Promised.Round())
	c.state = kv.NewState()
	if rec.Snapshot != nil {
		if err := c.state.Restore(rec.Snapshot); err != nil {
			fmt.Fprintln(os.Stderr, "child restore:", err)
			os.Exit(2)
		}
	}
	c.print("ready")
	for w := range 8 {
		go c.writer(w)
	}
	c.snapshotter() // until killed
}

type crashChild struct {
	s        *Store
	next     atomic.Uint64 // last slot handed out
	round    atomic.Uint64
	maxAcked atomic.Uint64
	state    *kv.State // the snapshotter's
	outMu    sync.Mutex
	submitMu sync.Mutex
}

// print writes one line straight to the file descriptor: nothing is buffered in the process, so
// whatever the parent reads was acknowledged before it was printed.
func (c *crashChild) print(format string, args ...any) {
	c.outMu.Lock()
	fmt.Fprintf(os.Stdout, format+"\n", args...)
	c.outMu.Unlock()
}

// writer persists one slot per record, now and then with a new promise or a chosen mark, and
// prints what each resolved ticket acknowledged.
func (c *crashChild) writer(w int) {
	for i := 0; ; i++ {
		slot := c.next.Add(1)
		rd := &paxos.Ready{MustSync: os.Getenv(crashNoSyncEnv) == "", Entries: []paxos.Entry{{Slot: slot, Ballot: 1,
			Cmds: []paxos.Command{put(uint64(w), slot, "k", crashValue(slot))}}}}
		if i%8 == 0 {
			rd.ChosenTo = slot
		}
		// Like the runtime's single loop, submit promises in ballot order: the store keeps the
		// last promise it was given, so concurrent submitters racing would make it go back.
		c.submitMu.Lock()
		if i%16 == 0 {
			rd.Promised = paxos.MakeBallot(c.round.Add(1), 1)
		}
		tk := persistTicket(c.s, rd)
		c.submitMu.Unlock()
		if err := tk.Wait(); err != nil {
			fmt.Fprintln(os.Stderr, "child persist:", err)
			os.Exit(3)
		}
		c.print("ack %d", slot)
		if rd.Promised != 0 {
			c.print("promised %d", rd.Promised)
		}
		for m := c.maxAcked.Load(); slot > m && !c.maxAcked.CompareAndSwap(m, slot); m = c.maxAcked.Load() {
		}
	}
}

// snapshotter saves a snapshot every 20 ms (or crashSnapshotEveryEnv) at the highest acknowledged
// slot, with a couple of hundred KB of keys so it spans many chunks, then truncates the log up to it.
func (c *crashChild) snapshotter() {
	value := strings.Repeat("s", 100)
	every := 20 * time.Millisecond
	if d, err := time.ParseDuration(os.Getenv(crashSnapshotEveryEnv)); err == nil {
		every = d
	}
	for {
		time.Sleep(every)
		upTo := c.maxAcked.Load()
		if upTo <= c.state.Applied() {
			continue
		}
		for slot := c.state.Applied() + 1; slot <= upTo; slot++ {
			var cmds []kv.Command
			switch {
			case slot == 1:
				cmds = []kv.Command{{Op: kv.OpOpen}} // session 1
			case slot%7 == 0:
				cmds = []kv.Command{{ClientID: 1, Seq: slot, Op: kv.OpPut, Key: fmt.Appendf(nil, "key-%d", slot%2000), Value: []byte(value)}}
			}
			c.state.Apply(slot, cmds, nil)
		}
		c.print("snapshot-start")
		if err := c.s.SaveSnapshot(c.state.AppendSnapshot(nil)); err != nil {
			fmt.Fprintln(os.Stderr, "child snapshot:", err)
			os.Exit(4)
		}
		c.print("snapshot %d", upTo)
		if err := c.s.Truncate(upTo); err != nil {
			fmt.Fprintln(os.Stderr, "child truncate:", err)
			os.Exit(5)
		}
	}
}
