package disk

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// rec builds a one-op record whose value names its key, so a survivor can be checked byte for byte.
func rec(key string, mustSync bool) *record {
	o := op{key: []byte(key), value: []byte("v-" + key)}
	return &record{ops: []op{o}, mustSync: mustSync, sizeBytes: len(o.key) + len(o.value)}
}

func isDone(t Ticket) bool { return !errors.Is(t.Err(), ErrPending) }

// startCommitter runs a committer over f and closes it when the test ends, releasing held syncs
// first so that a failing test ends instead of deadlocking in close.
func startCommitter(t *testing.T, f *fakeDisk, queueMax int) *committer {
	c := newCommitter(f, queueMax, 1<<20, 0)
	t.Cleanup(func() {
		if f.releaseAll != nil {
			f.releaseAll()
		}
		c.close()
	})
	return c
}

func TestTicketIsNotResolvedBeforeTheSyncCoveringItReturns(t *testing.T) {
	f := newFakeDisk()
	entered := f.holdSyncs()
	c := startCommitter(t, f, 64)

	t1 := c.submit(rec("a", true))
	<-entered // the flusher wrote "a" and is inside the sync
	time.Sleep(10 * time.Millisecond)
	if isDone(t1) {
		t.Fatal("ticket resolved while the sync covering it was still in flight")
	}
	f.releaseOne()
	if err := t1.Wait(); err != nil {
		t.Fatal(err)
	}
	f.releaseAll()
}

func TestRecordsSubmittedDuringASyncWaitForTheNextSync(t *testing.T) {
	f := newFakeDisk()
	entered := f.holdSyncs()
	c := startCommitter(t, f, 64)

	t1 := c.submit(rec("a", true))
	<-entered
	t2 := c.submit(rec("b", true)) // submitted while sync 1 is in flight
	f.waitWrites(2)                // and written while it is: the writer runs ahead
	f.releaseOne()                 // sync 1 returns
	if err := t1.Wait(); err != nil {
		t.Fatal(err)
	}
	if isDone(t2) {
		t.Fatal("record written during sync 1 was acknowledged by it")
	}
	select {
	case n := <-entered:
		if n != 2 {
			t.Fatalf("second record entered sync %d, want 2", n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no second sync for the second record")
	}
	time.Sleep(10 * time.Millisecond)
	if isDone(t2) {
		t.Fatal("record submitted during sync 1 was acknowledged before sync 2 returned")
	}
	f.releaseOne()
	if err := t2.Wait(); err != nil {
		t.Fatal(err)
	}
	f.releaseAll()
}

func TestFailedSyncFailsEveryPendingAndLaterTicket(t *testing.T) {
	f := newFakeDisk()
	f.failSyncAt = 1
	entered := f.holdSyncs()
	c := startCommitter(t, f, 64)

	inFlight := c.submit(rec("a", true))
	<-entered
	queued := []Ticket{c.submit(rec("b", true)), c.submit(rec("c", false))}
	f.releaseAll() // sync 1 fails
	later := c.submit(rec("d", true))
	for i, tk := range append(append([]Ticket{inFlight}, queued...), later) {
		err := tk.Wait()
		if !errors.Is(err, ErrFailed) || !errors.Is(err, errInjectedSync) {
			t.Fatalf("ticket %d: err = %v, want ErrFailed wrapping the sync error", i, err)
		}
	}
	if !errors.Is(c.failure(), ErrFailed) {
		t.Fatalf("failure() = %v", c.failure())
	}
	// The writer may have written b, c (and d) while sync 1 was in flight, but no sync follows.
	if _, syncs := f.counts(); syncs != 1 {
		t.Fatalf("after a failed sync: %d syncs; want no sync after it", syncs)
	}
}

func TestFailedWriteIsPermanentLikeAFailedSync(t *testing.T) {
	f := newFakeDisk()
	f.failWriteAt = 2 // the disk fills up on the second group
	c := startCommitter(t, f, 64)

	if err := c.submit(rec("a", true)).Wait(); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"b", "c"} {
		err := c.submit(rec(k, true)).Wait()
		if !errors.Is(err, ErrFailed) || !errors.Is(err, errInjectedWrite) {
			t.Fatalf("record %s: err = %v", k, err)
		}
	}
	if _, syncs := f.counts(); syncs != 1 {
		t.Fatalf("syncs = %d: a failed write must not be followed by a sync that acknowledges it", syncs)
	}
	// A record after the failure knows its fate at once; the syncer counts it when it drains.
	for deadline := time.Now().Add(5 * time.Second); c.stats.snapshot().Records < 3 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if st := c.stats.snapshot(); st.Records != 3 || st.Failures != 2 {
		t.Fatalf("Records = %d, Failures = %d; want 3, 2", st.Records, st.Failures)
	}
}

func TestGroupWithoutASyncRecordIsWrittenButNotSynced(t *testing.T) {
	f := newFakeDisk()
	c := startCommitter(t, f, 64)
	if err := c.submit(rec("chosen-mark", false)).Wait(); err != nil {
		t.Fatal(err)
	}
	if writes, syncs := f.counts(); writes != 1 || syncs != 0 {
		t.Fatalf("%d writes, %d syncs; want 1, 0", writes, syncs)
	}
	// A later sync record covers it: once that resolves, both are durable.
	if err := c.submit(rec("vote", true)).Wait(); err != nil {
		t.Fatal(err)
	}
	if got := f.crash(); got["chosen-mark"] == "" || got["vote"] == "" {
		t.Fatalf("after the covering sync, survivors = %v", got)
	}
}

func TestTicketsResolveInSubmissionOrder(t *testing.T) {
	f := newFakeDisk()
	c := startCommitter(t, f, 8) // a small queue makes groups of every size
	const n = 2000
	tickets := make([]Ticket, n)
	for i := range tickets {
		tickets[i] = c.submit(rec(fmt.Sprint(i), i%3 != 0))
	}
	for i := n - 1; i >= 0; i-- { // wait from the newest: it must imply every older one
		if err := tickets[i].Wait(); err != nil {
			t.Fatal(err)
		}
		if i == n-1 {
			for j := range i {
				if !isDone(tickets[j]) {
					t.Fatalf("ticket %d resolved before earlier ticket %d", i, j)
				}
			}
		}
	}
	// Strict check on every ticket: when i is seen resolved, every j < i already is.
	f2 := newFakeDisk()
	c2 := startCommitter(t, f2, 4)
	var wg sync.WaitGroup
	ts := make([]Ticket, 300)
	for i := range ts {
		ts[i] = c2.submit(rec(fmt.Sprint(i), true))
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			ts[i].Wait()
			for j := range i {
				if !isDone(ts[j]) {
					t.Errorf("ticket %d resolved before earlier ticket %d", i, j)
					return
				}
			}
		}(i)
	}
	wg.Wait()
}

// TestSubmitNeverBlocksAndBacklogSaysWhenTheDiskIsBehind: the loop must keep answering peers while
// the disk is slow, so submit returns at once however far behind the disk is, and backlog tells the
// caller to stop taking new work. Everything submitted is resolved, in order, once the disk is back.
func TestSubmitNeverBlocksAndBacklogSaysWhenTheDiskIsBehind(t *testing.T) {
	f := newFakeDisk()
	entered := f.holdSyncs()
	const queueMax = 2
	c := startCommitter(t, f, queueMax)

	c.submit(rec("a", true)) // written; the syncer now holds it in sync
	<-entered
	returned := make(chan Ticket, 100)
	go func() {
		for i := range 100 {
			returned <- c.submit(rec(fmt.Sprint("r", i), true))
		}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for len(returned) < 100 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := len(returned); n != 100 {
		t.Fatalf("only %d of 100 submits returned while the disk was stuck: submit blocked", n)
	}
	if records, bytes, full := c.backlog(); !full || records < 100 || bytes == 0 {
		t.Fatalf("backlog = %d records, %d bytes, full %v while the disk is stuck", records, bytes, full)
	}
	if d := c.durable(); d != 0 {
		t.Fatalf("durable = %d while the first sync is held", d)
	}
	f.releaseAll()
	for range 100 {
		if err := (<-returned).Wait(); err != nil {
			t.Fatal(err)
		}
	}
	if records, _, full := c.backlog(); records != 0 || full {
		t.Fatalf("backlog after the disk caught up: %d records, full %v", records, full)
	}
	if d := c.durable(); d != 101 {
		t.Fatalf("durable = %d after 101 records resolved", d)
	}
	select {
	case <-c.durableC:
	default:
		t.Fatal("durableC not signalled")
	}
}

func TestCloseSyncsWhatIsQueuedAndRefusesLaterRecords(t *testing.T) {
	f := newFakeDisk()
	entered := f.holdSyncs()
	c := newCommitter(f, 64, 1<<20, 0)
	t1 := c.submit(rec("a", true))
	<-entered
	t2 := c.submit(rec("b", true))
	closed := make(chan struct{})
	go func() { c.close(); close(closed) }()
	f.releaseAll()
	<-closed
	if t1.Err() != nil || t2.Err() != nil {
		t.Fatalf("queued records not flushed by close: %v, %v", t1.Err(), t2.Err())
	}
	if err := c.submit(rec("c", true)).Wait(); !errors.Is(err, ErrClosed) {
		t.Fatalf("submit after close: %v", err)
	}
}

// TestCrashOfTheFakeLosesNothingAcknowledged drives pipelined writers against a fake disk that
// crashes at a random moment, dropping unsynced writes, and checks the ordering promise: for every
// writer, every record up to its last acknowledged sync record survived with its exact value.
func TestCrashOfTheFakeLosesNothingAcknowledged(t *testing.T) {
	for seed := range uint64(20) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) { crashOnce(t, seed) })
	}
}

func crashOnce(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 1))
	f := newFakeDisk()
	f.syncTime = time.Duration(rng.IntN(300)) * time.Microsecond
	c := startCommitter(t, f, 1+rng.IntN(64))
	const writers = 8
	tickets := make([][]Ticket, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tickets[w] = pipelinedWriter(c, w)
		}()
	}
	time.Sleep(time.Duration(1+rng.IntN(15)) * time.Millisecond)
	survivors := f.crash()
	wg.Wait()
	acked := 0
	for w, ts := range tickets {
		last := -1
		for i, tk := range ts {
			if tk.Err() == nil && tk.mustSync {
				last = i
			}
		}
		for i := 0; i <= last; i++ {
			key := fmt.Sprintf("w%d-%d", w, i)
			if survivors[key] != "v-"+key {
				t.Fatalf("writer %d: record %d lost although record %d was acknowledged", w, i, last)
			}
		}
		acked += last + 1
	}
	if acked == 0 {
		t.Logf("seed %d: crash came before any acknowledgement", seed)
	}
}

// pipelinedWriter keeps up to 16 records in flight, one in four without sync, until the store fails.
func pipelinedWriter(c *committer, w int) []Ticket {
	var ts []Ticket
	for i := 0; ; i++ {
		ts = append(ts, c.submit(rec(fmt.Sprintf("w%d-%d", w, i), i%4 != 3)))
		if i >= 16 {
			if err := ts[i-16].Wait(); err != nil {
				for _, tk := range ts {
					tk.Wait()
				}
				return ts
			}
		}
	}
}
