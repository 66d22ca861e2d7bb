package driver

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/sofadb/sofadb/kv"
	"github.com/sofadb/sofadb/paxos"
)

// testIO is the smallest world a driver can run in: a clock the test moves, a store that is
// durable as soon as the test says, a transport that records, and an executor that runs jobs when
// the test says.
type testIO struct {
	now     time.Time
	seq     uint64
	durable uint64
	err     error
	behind  bool
	sent    []paxos.Message
	jobs    []func() func()
	saved   [][]byte
}

func (t *testIO) Now() time.Time { return t.now }
func (t *testIO) Persist(rd *paxos.Ready) (uint64, error) {
	if t.err != nil {
		return 0, t.err
	}
	t.seq++
	return t.seq, nil
}
func (t *testIO) Durable() uint64                { return t.durable }
func (t *testIO) Err() error                     { return t.err }
func (t *testIO) Behind() bool                   { return t.behind }
func (t *testIO) SaveSnapshot(data []byte) error { t.saved = append(t.saved, data); return nil }
func (t *testIO) Truncate(upTo uint64) error     { return nil }
func (t *testIO) Send(m *paxos.Message)          { t.sent = append(t.sent, *m) }
func (t *testIO) Flush()                         {}
func (t *testIO) Go(job func() func()) bool      { t.jobs = append(t.jobs, job); return true }

// runOne runs the first queued background job and its completion, as the loop would.
func (t *testIO) runOne(d *Driver) {
	job := t.jobs[0]
	t.jobs = t.jobs[1:]
	done := job()
	d.Begin()
	done()
	d.End()
}

// runJobs runs the queued background jobs and their completions, as the loop would.
func (t *testIO) runJobs(d *Driver) {
	for len(t.jobs) > 0 {
		t.runOne(d)
	}
}

func newTestDriver(t *testing.T, mut Mutation) (*Driver, *testIO) {
	t.Helper()
	io_ := &testIO{now: time.Unix(1000, 0)}
	cfg := Config{Core: paxos.DefaultConfig(1, []paxos.ReplicaID{1, 2, 3}), TickInterval: 10 * time.Millisecond,
		RequestTimeout: time.Second, Fsync: true, Mutation: mut,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	d, err := New(cfg, io_, io_, io_, io_, Hooks{}, kv.NewState(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return d, io_
}

func stateThrough(slots uint64) *kv.State {
	st := kv.NewState()
	for slot := uint64(1); slot <= slots; slot++ {
		st.Apply(slot, []kv.Command{{Op: kv.OpOpen}}, nil)
	}
	return st
}

// TestPeerSnapshotIsValidatedBeforeTheCoreTakesIt: a snapshot the state machine cannot restore, or
// whose contents disagree with the slot it claims, is refused before the core moves its log past
// that slot (which made the next applied slot out of order and panicked the replica); a good one
// is installed, saved in the background, and only then reported to the core.
func TestPeerSnapshotIsValidatedBeforeTheCoreTakesIt(t *testing.T) {
	d, tio := newTestDriver(t, MutNone)
	good := stateThrough(11)
	data := good.AppendSnapshot(nil)
	for name, m := range map[string]paxos.Message{
		"garbage":         {Type: paxos.MsgSnapshot, From: 2, To: 1, Slot: 11, Data: []byte{1, 2, 3}},
		"slot disagrees":  {Type: paxos.MsgSnapshot, From: 2, To: 1, Slot: 50, Data: data},
		"newer version":   {Type: paxos.MsgSnapshot, From: 2, To: 1, Slot: 11, Data: append([]byte{7}, data[1:]...)},
		"truncated bytes": {Type: paxos.MsgSnapshot, From: 2, To: 1, Slot: 11, Data: data[:len(data)/2]},
	} {
		d.Begin()
		d.Step(&m)
		d.End()
		tio.runJobs(d) // the validation, in the background
		if st := d.Core().Status(); st.Commit != 0 || d.Failed() != nil {
			t.Fatalf("%s: the core took a bad snapshot (commit %d, failed %v)", name, st.Commit, d.Failed())
		}
	}
	d.Begin()
	d.Step(&paxos.Message{Type: paxos.MsgSnapshot, From: 2, To: 1, Slot: 11, Data: data})
	d.End()
	if d.State().Applied() != 0 || len(tio.jobs) != 1 {
		t.Fatalf("the snapshot must be validated in the background, not on the loop: applied %d, jobs %d", d.State().Applied(), len(tio.jobs))
	}
	tio.runOne(d) // validated: the core takes it, and its save is queued
	if d.Failed() != nil || d.State().Applied() != 11 || d.State().Digest() != good.Digest() {
		t.Fatalf("installed: failed=%v applied=%d", d.Failed(), d.State().Applied())
	}
	if len(tio.saved) != 0 || len(tio.jobs) != 1 {
		t.Fatalf("the snapshot must be saved in the background: saved %d, jobs %d", len(tio.saved), len(tio.jobs))
	}
	tio.runJobs(d)
	if len(tio.saved) != 1 || d.SnapshotSlot() != 11 {
		t.Fatalf("after the background save: saved %d, snapshot slot %d", len(tio.saved), d.SnapshotSlot())
	}
}

// TestTwoPeerSnapshotsInOneBatchInstallTheNewer: an older snapshot stepped after a newer one in the
// same wake-up (two peers answering one catch-up) overwrote the validated snapshot the core was
// about to install, and the replica fenced itself for good (issue 8, bug 7).
func TestTwoPeerSnapshotsInOneBatchInstallTheNewer(t *testing.T) {
	d, tio := newTestDriver(t, MutNone)
	newer := paxos.Message{Type: paxos.MsgSnapshot, From: 2, To: 1, Slot: 20, Data: stateThrough(20).AppendSnapshot(nil)}
	older := paxos.Message{Type: paxos.MsgSnapshot, From: 3, To: 1, Slot: 11, Data: stateThrough(11).AppendSnapshot(nil)}
	d.Begin()
	d.Step(&newer)
	d.Step(&older)
	d.End()
	tio.runJobs(d)
	if d.Failed() != nil || d.State().Applied() != 20 {
		t.Fatalf("after installing: failed=%v applied=%d", d.Failed(), d.State().Applied())
	}
}

// TestTicksComeFromTheClockNotFromWakeUps: a loop that slept (a stopped process) sees, at its next
// wake-up, every tick that passed; counting wake-ups is the planted bug MutTickerTicks.
func TestTicksComeFromTheClockNotFromWakeUps(t *testing.T) {
	for _, mut := range []Mutation{MutNone, MutTickerTicks} {
		d, tio := newTestDriver(t, mut)
		before := d.Core().Status().Tick
		tio.now = tio.now.Add(time.Second) // 100 ticks of 10 ms pass while the process is stopped
		d.Begin()
		d.OnTicker()
		d.End()
		got := d.Core().Status().Tick - before
		if mut == MutNone && got != 100 {
			t.Fatalf("one wake-up after a second: %d ticks, want 100", got)
		}
		if mut == MutTickerTicks && got != 1 {
			t.Fatalf("planted bug: %d ticks, want 1", got)
		}
	}
}

// TestRetriesWaitForTheCopyAlreadyProposed: a client's retry (same session and sequence) of a
// command this replica forwarded less than a request timeout ago waits for that copy instead of
// forwarding another. One copy per retry fed a retry storm in which the queue never drained
// (simulator seed 564, once re-forwarding on a leader's new term made more copies).
func TestRetriesWaitForTheCopyAlreadyProposed(t *testing.T) {
	d, tio := newTestDriver(t, MutNone)
	lead := paxos.MakeBallot(1, 2)
	for range d.cfg.Core.ElectionTicks + d.cfg.Core.LeaseDriftTicks + 1 { // past the quiet period, r2 leading
		tio.now = tio.now.Add(d.cfg.TickInterval)
		d.Begin()
		d.Step(&paxos.Message{Type: paxos.MsgCommit, From: 2, To: 1, Ballot: lead})
		d.End()
	}
	forwarded := func() int {
		n := 0
		for _, m := range tio.sent {
			if m.Type == paxos.MsgForward {
				n += len(m.Cmds)
			}
		}
		tio.sent = nil
		return n
	}
	forwarded()
	submit := func() {
		d.Begin()
		d.Submit(&Request{Cmd: NewCommand(5, 1, kv.OpPut, []byte("k"), []byte("v")), Deadline: tio.now.Add(time.Second),
			Reply: func(Response) {}})
		d.End()
	}
	submit()
	if n := forwarded(); n != 1 {
		t.Fatalf("forwarded %d copies of a new command, want 1", n)
	}
	submit()
	if n, c := forwarded(), d.Stats().Coalesced.Load(); n != 0 || c != 1 {
		t.Fatalf("a retry within the request timeout forwarded %d more copies (coalesced %d), want 0 (1)", n, c)
	}
	for end := tio.now.Add(d.cfg.RequestTimeout); !tio.now.After(end); { // r2 leads on; that copy may be lost
		tio.now = tio.now.Add(d.cfg.TickInterval)
		d.Begin()
		d.Step(&paxos.Message{Type: paxos.MsgCommit, From: 2, To: 1, Ballot: lead})
		d.End()
	}
	forwarded()
	submit()
	if n := forwarded(); n != 1 {
		t.Fatalf("a retry a request timeout later forwarded %d copies, want 1", n)
	}
}

// TestSnapshotWaitsForAsManyBytesAsTheLastOne: with SnapshotStateRatio 1 a snapshot due by the
// byte threshold still waits until the bytes applied since the last one reach that one's size; with
// 0 (the simulator's setting) the thresholds alone decide.
func TestSnapshotWaitsForAsManyBytesAsTheLastOne(t *testing.T) {
	for _, ratio := range []float64{1, 0} {
		d, io_ := newTestDriver(t, MutNone)
		d.cfg.SnapshotEveryBytes, d.cfg.SnapshotStateRatio = 1000, ratio
		d.state = stateThrough(10)
		d.lastSnapBytes = 50_000 // the last snapshot was 50 KB
		d.bytesSince = 2_000     // past the 1,000-byte threshold even with its jitter
		d.maybeSnapshot()
		if started := len(io_.jobs) > 0; started != (ratio == 0) {
			t.Fatalf("ratio %v: snapshot started %v with 2 KB applied since a 50 KB one", ratio, started)
		}
		if ratio == 0 {
			continue
		}
		d.bytesSince = 50_000
		d.maybeSnapshot()
		if len(io_.jobs) != 1 {
			t.Fatal("no snapshot once as many bytes were applied as the last one held")
		}
	}
}

// TestAPeerIsNotSentAnotherSnapshotWhileItInstallsOne: the core asks for a snapshot every time a
// peer behind the truncated log asks for slots (at most every SnapshotEveryTicks, 200 ms), but a
// large snapshot takes seconds to arrive and install, and each offer used to queue another full
// copy. After one is handed to the transport, that peer gets no other for its transfer time.
func TestAPeerIsNotSentAnotherSnapshotWhileItInstallsOne(t *testing.T) {
	d, io_ := newTestDriver(t, MutNone)
	d.state = stateThrough(10)
	snapshots := func() int {
		n := 0
		for _, m := range io_.sent {
			if m.Type == paxos.MsgSnapshot && m.To == 2 {
				n++
			}
		}
		return n
	}
	// offer is the core asking for a snapshot for peer 2 after `after`, and the jobs running.
	offer := func(after time.Duration, want int, when string) {
		t.Helper()
		io_.now = io_.now.Add(after)
		d.Begin()
		d.sendSnapshot(2)
		d.End()
		io_.runJobs(d)
		if got := snapshots(); got != want {
			t.Fatalf("%d snapshots sent %s, want %d", got, when, want)
		}
	}
	offer(0, 1, "at first")
	offer(500*time.Millisecond, 1, "within the hold") // the core offers again: it is too soon
	offer(time.Second, 2, "after the hold")           // the peer never installed it: send again
}
