package paxos

import (
	"errors"
	"fmt"
	"testing"
)

// testNet is the smallest possible runtime: instant, reliable delivery and instant persistence.
// Scenario tests with faults live in paxos/sim; these tests check the core's contract directly.
type testNet struct {
	t       testing.TB
	reps    []*Replica
	inbox   []Message
	applied [][]Entry
	hold    func(m *Message) bool // messages it returns true for are held back (not delivered)
	held    []Message
	rds     []Ready // the last Ready of each replica, for contract checks
}

func newTestNet(t testing.TB, n int, tweak func(*Config)) *testNet {
	peers := make([]ReplicaID, n)
	for i := range peers {
		peers[i] = ReplicaID(i + 1)
	}
	net := &testNet{t: t, applied: make([][]Entry, n), rds: make([]Ready, n)}
	for _, id := range peers {
		cfg := DefaultConfig(id, peers)
		cfg.Seed = 42
		if tweak != nil {
			tweak(&cfg)
		}
		r, err := New(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		net.reps = append(net.reps, r)
	}
	return net
}

// pump collects every Ready and delivers every message until the cluster is quiet.
func (c *testNet) pump() {
	for range 10000 {
		progress := false
		for i, r := range c.reps {
			rd := r.Ready()
			if rd.Empty() {
				continue
			}
			progress = true
			c.rds[i] = rd
			c.applied[i] = append(c.applied[i], rd.Committed...)
			c.inbox = append(c.inbox, rd.Messages...)
			c.inbox = append(c.inbox, rd.AfterSync...) // persistence is instant here
			r.Advance(&rd)
		}
		msgs := c.inbox
		c.inbox = nil
		for i := range msgs {
			m := &msgs[i]
			if c.hold != nil && c.hold(m) {
				c.held = append(c.held, *m)
				continue
			}
			progress = true
			c.reps[m.To-1].Step(m)
		}
		if !progress {
			return
		}
	}
	c.t.Fatal("cluster never went quiet")
}

func (c *testNet) tick(n int) {
	for range n {
		for _, r := range c.reps {
			r.Tick()
		}
		c.pump()
	}
}

func (c *testNet) leader() *Replica {
	for range 200 {
		for _, r := range c.reps {
			if r.role == leader {
				return r
			}
		}
		c.tick(1)
	}
	c.t.Fatal("no leader elected")
	return nil
}

func cmd(client, seq uint64, size int) Command {
	// The core carries commands as opaque bytes: a stand-in for a key and a value is enough here.
	return Command{ClientID: client, Seq: seq, Data: append([]byte(fmt.Sprintf("k%d:", seq)), make([]byte, size)...)}
}

func TestNewRejectsBadConfig(t *testing.T) {
	good := DefaultConfig(1, []ReplicaID{1, 2, 3})
	for name, bad := range map[string]func(*Config){
		"id 0":                 func(c *Config) { c.ID = 0 },
		"self not a peer":      func(c *Config) { c.ID = 4 },
		"duplicate peer":       func(c *Config) { c.Peers = []ReplicaID{1, 2, 2} },
		"heartbeat >= elect":   func(c *Config) { c.HeartbeatTicks = c.ElectionTicks },
		"no pipeline":          func(c *Config) { c.InflightSlotsMax = 0 },
		"drift >= election":    func(c *Config) { c.LeaseDriftTicks = c.ElectionTicks },
		"backoff without base": func(c *Config) { c.Backoff, c.BackoffBaseTicks = true, 0 },
		"unknown mutation":     func(c *Config) { c.Mutation = mutLimit },
	} {
		cfg := good
		cfg.Peers = append([]ReplicaID(nil), good.Peers...)
		bad(&cfg)
		if _, err := New(cfg, nil); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: err = %v, want ErrConfig", name, err)
		}
	}
}

func TestElectedLeaderChoosesCommandsAppliedInOrderEverywhere(t *testing.T) {
	c := newTestNet(t, 3, nil)
	l := c.leader()
	for i := range 100 {
		if err := l.Propose([]Command{cmd(1, uint64(i+1), 10)}); err != nil {
			t.Fatal(err)
		}
		if i%7 == 0 {
			c.pump()
		}
	}
	c.pump()
	c.tick(3) // heartbeats carry the final chosen prefix to the followers
	for i := range c.reps {
		var seqs []uint64
		for s, e := range c.applied[i] {
			if e.Slot != uint64(s+1) {
				t.Fatalf("replica %d applied slot %d at position %d", i+1, e.Slot, s)
			}
			for _, cm := range e.Cmds {
				seqs = append(seqs, cm.Seq)
			}
		}
		if len(seqs) != 100 {
			t.Fatalf("replica %d applied %d commands, want 100", i+1, len(seqs))
		}
		for j, s := range seqs {
			if s != uint64(j+1) {
				t.Fatalf("replica %d applied seq %d at position %d", i+1, s, j)
			}
		}
	}
}

func TestBatchingCutsSlotsByBytesAndOffMeansOneCommandPerSlot(t *testing.T) {
	for _, batch := range []int{0, 1000} {
		c := newTestNet(t, 3, func(cfg *Config) { cfg.BatchBytesMax = batch })
		l := c.leader()
		c.hold = func(m *Message) bool { return m.Type == MsgAccepted } // keep slots in flight
		var cmds []Command
		for i := range 40 {
			cmds = append(cmds, cmd(1, uint64(i+1), 76)) // Size() = 24 + 2-3 + 76 ~ 100 bytes
		}
		l.Propose(cmds)
		c.pump()
		total := 0
		for s := l.startSlot; s < l.nextSlot; s++ {
			sl := l.log.get(s)
			n, bytes := len(sl.prop), sl.propBytes-24
			total += n
			if batch == 0 && n != 1 {
				t.Fatalf("batching off: slot %d carries %d commands", s, n)
			}
			// A slot is cut when the next command would not fit: every slot but the last is full.
			full := s == l.nextSlot-1 || bytes+cmds[0].Size() > batch
			if batch > 0 && (bytes > batch || !full) {
				t.Fatalf("batch %dB: slot %d carries %d commands, %d bytes", batch, s, n, bytes)
			}
		}
		if total != len(cmds) {
			t.Fatalf("slots carry %d commands, proposed %d", total, len(cmds))
		}
	}
}

func TestPipelineBoundsSlotsInFlight(t *testing.T) {
	c := newTestNet(t, 3, func(cfg *Config) { cfg.BatchBytesMax, cfg.InflightSlotsMax = 0, 8 })
	l := c.leader()
	c.hold = func(m *Message) bool { return m.Type == MsgAccepted }
	for i := range 50 {
		l.Propose([]Command{cmd(1, uint64(i+1), 10)})
	}
	c.pump()
	if l.inflightSlots != 8 || l.queue.len() != 42 {
		t.Fatalf("in flight %d, queued %d: want 8 and 42", l.inflightSlots, l.queue.len())
	}
	c.hold = nil
	msgs := c.held
	c.held = nil
	for i := range msgs {
		c.reps[msgs[i].To-1].Step(&msgs[i])
	}
	c.pump()
	if l.queue.len() != 0 || l.commit < l.startSlot+49 {
		t.Fatalf("after releasing replies: queued %d, commit %d", l.queue.len(), l.commit)
	}
}

func TestProposeRefusesBeyondQueueBytes(t *testing.T) {
	c := newTestNet(t, 3, func(cfg *Config) { cfg.QueueBytesMax = 1000 })
	r := c.reps[0]
	if err := r.Propose([]Command{cmd(1, 1, 500)}); err != nil {
		t.Fatal(err)
	}
	if err := r.Propose([]Command{cmd(1, 2, 500)}); !errors.Is(err, ErrBusy) {
		t.Fatalf("second propose: %v, want ErrBusy", err)
	}
}

func TestPromisesVotesAndPreparesWaitForSync(t *testing.T) {
	c := newTestNet(t, 3, nil)
	r := c.reps[0]
	r.campaign()
	rd := r.Ready()
	if rd.Promised != r.ballot || !rd.MustSync {
		t.Fatalf("campaign must persist and sync its own promise: %+v", rd)
	}
	if len(rd.Messages) != 0 || len(rd.AfterSync) != 3 {
		t.Fatalf("prepares and the self-promise must wait for sync: now=%d after=%d", len(rd.Messages), len(rd.AfterSync))
	}
	f := c.reps[1]
	f.Step(&Message{Type: MsgAccept, From: 1, To: 2, Ballot: r.ballot, Entries: []Entry{{Slot: 1, Cmds: []Command{cmd(1, 1, 5)}}}})
	rd = f.Ready()
	if len(rd.Entries) != 1 || !rd.MustSync || len(rd.Messages) != 0 || len(rd.AfterSync) != 1 || rd.AfterSync[0].Type != MsgAccepted {
		t.Fatalf("a vote must be persisted and synced before its reply: %+v", rd)
	}
}

func TestRestartedProposerStartsAbovePersistedPromise(t *testing.T) {
	peers := []ReplicaID{1, 2, 3}
	cfg := DefaultConfig(2, peers)
	r, _ := New(cfg, &Durable{Promised: MakeBallot(41, 2)})
	r.campaign()
	if r.ballot.Round() != 42 {
		t.Fatalf("ballot %v after restart with promise 41.2", r.ballot)
	}
}

func TestRestoreReplaysChosenSlotsTheApplicationHasNotApplied(t *testing.T) {
	d := &Durable{Promised: MakeBallot(3, 1), Applied: 2, ChosenTo: 4, Entries: []Entry{
		{Slot: 3, Ballot: MakeBallot(3, 1), Cmds: []Command{cmd(1, 3, 1)}},
		{Slot: 4, Ballot: MakeBallot(3, 1), Cmds: []Command{cmd(1, 4, 1)}},
		{Slot: 5, Ballot: MakeBallot(3, 1), Cmds: []Command{cmd(1, 5, 1)}}, // a vote, not known chosen
	}}
	r, err := New(DefaultConfig(1, []ReplicaID{1, 2, 3}), d)
	if err != nil {
		t.Fatal(err)
	}
	rd := r.Ready()
	if len(rd.Committed) != 2 || rd.Committed[0].Slot != 3 || rd.Committed[1].Slot != 4 {
		t.Fatalf("replayed %+v, want slots 3 and 4", rd.Committed)
	}
	if b, chosen, ok := r.Vote(5); !ok || chosen || b != MakeBallot(3, 1) {
		t.Fatalf("vote in slot 5 lost on restore: %v %v %v", b, chosen, ok)
	}
}

func TestLeaseNeedsAMajorityAcknowledgedHeartbeatAndExpires(t *testing.T) {
	c := newTestNet(t, 3, nil)
	l := c.leader()
	if _, ok := l.ReadIndex(); !ok {
		t.Fatal("leader has no lease right after its acknowledged election heartbeat")
	}
	// Cut the leader off: no heartbeat is acknowledged any more.
	c.hold = func(m *Message) bool { return m.From == l.id || m.To == l.id }
	lease := l.cfg.ElectionTicks - l.cfg.LeaseDriftTicks
	for range lease + 1 {
		l.Tick()
		c.pump()
	}
	if _, ok := l.ReadIndex(); ok {
		t.Fatalf("lease still held %d ticks after the last acknowledged heartbeat", lease+1)
	}
}

func TestFollowerRefusesAnotherProposerWhileItsLeaseIsGranted(t *testing.T) {
	c := newTestNet(t, 3, nil)
	l := c.leader()
	var other *Replica
	for _, r := range c.reps {
		if r != l {
			other = r
		}
	}
	var f *Replica
	for _, r := range c.reps {
		if r != l && r != other {
			f = r
		}
	}
	before := f.promised
	f.Step(&Message{Type: MsgPrepare, From: other.id, To: f.id, Ballot: MakeBallot(l.ballot.Round()+5, other.id), Slot: 1})
	if f.promised != before || f.metrics.LeaseRefusals != 1 {
		t.Fatalf("follower promised %v (was %v) while the leader's lease stands", f.promised, before)
	}
}

func TestStepIgnoresMalformedMessagesWithoutGrowing(t *testing.T) {
	c := newTestNet(t, 3, nil)
	r := c.reps[0]
	bad := []Message{
		{Type: 0, From: 2, To: 1},
		{Type: msgLimit, From: 2, To: 1},
		{Type: MsgPrepare, From: 9, To: 1, Ballot: MakeBallot(1, 9)},
		{Type: MsgPrepare, From: 2, To: 1, Ballot: MakeBallot(1, 3)},      // ballot not the sender's
		{Type: MsgAccept, From: 2, To: 1, Ballot: MakeBallot(1, 2)},       // no entry
		{Type: MsgAccept, From: 2, To: 7, Ballot: MakeBallot(1, 2)},       // not for us
		{Type: MsgCommit, From: 2, To: 1, Ballot: MakeBallot(1, 3)},       // forged leadership
		{Type: MsgPromise, From: 2, To: 1, Ballot: MakeBallot(1, 0x4000)}, // unknown ballot owner
	}
	for i := range bad {
		r.Step(&bad[i])
	}
	if r.metrics.IgnoredMessages != uint64(len(bad)) {
		t.Fatalf("ignored %d of %d malformed messages", r.metrics.IgnoredMessages, len(bad))
	}
	r.Step(&Message{Type: MsgAccept, From: 2, To: 1, Ballot: MakeBallot(1, 2), Entries: []Entry{{Slot: 1 << 62}}})
	r.Step(&Message{Type: MsgCatchupReply, From: 2, To: 1, Entries: []Entry{{Slot: 1 << 61, Chosen: true}}})
	if r.log.last() > r.cfg.WindowSlotsMax {
		t.Fatalf("a far-away slot grew the window to %d", r.log.last())
	}
}

// FuzzStep feeds the core arbitrary messages from peers: it must never panic or break an invariant.
func FuzzStep(f *testing.F) {
	f.Add(uint8(MsgAccept), uint16(2), uint64(1<<16|2), uint64(1), uint64(0), uint8(1), true)
	f.Add(uint8(MsgPromise), uint16(3), uint64(5<<16|1), uint64(7), uint64(3), uint8(2), false)
	f.Add(uint8(MsgCatchupReply), uint16(2), uint64(0), uint64(1), uint64(9), uint8(3), true)
	f.Fuzz(func(t *testing.T, typ uint8, from uint16, ballot, slot, commit uint64, n uint8, chosen bool) {
		c := newTestNet(t, 3, nil)
		c.leader()
		var entries []Entry
		for i := range int(n % 4) {
			entries = append(entries, Entry{Slot: slot + uint64(i), Ballot: Ballot(ballot), Chosen: chosen, Cmds: []Command{cmd(1, slot, 3)}})
		}
		for _, r := range c.reps {
			r.Step(&Message{Type: MsgType(typ), From: ReplicaID(from), To: r.id, Ballot: Ballot(ballot), Slot: slot,
				Commit: commit, Entries: entries, Cmds: []Command{cmd(2, slot, 1)}, Data: []byte{1}})
		}
		c.pump()
		c.tick(2)
	})
}

// BenchmarkCore is the ceiling every later layer is measured against: client commands per second
// through a 3-replica cluster of the core alone (no network, no disk, no faults), with batching
// on and off. The pipeline is kept full: new commands are proposed while earlier slots are in flight.
func BenchmarkCore(b *testing.B) {
	for _, bc := range []struct {
		name  string
		batch int
	}{{"batching-off", 0}, {"batching-64KiB", 64 << 10}} {
		b.Run(bc.name, func(b *testing.B) {
			c := newTestNet(b, 3, func(cfg *Config) {
				cfg.BatchBytesMax, cfg.InflightSlotsMax, cfg.QueueBytesMax = bc.batch, 64, 1<<30
			})
			l := c.leader()
			cmds := make([]Command, 4096)
			val := make([]byte, 128)
			for i := range cmds {
				cmds[i] = Command{ClientID: 1, Data: append([]byte(fmt.Sprintf("key-%012d", i)), val...)}
			}
			const burst = 256
			for i := range c.applied {
				c.applied[i] = c.applied[i][:0]
			}
			b.ReportAllocs()
			b.SetBytes(16 + 128)
			b.ResetTimer()
			proposed := 0
			for proposed < b.N {
				n := min(burst, b.N-proposed)
				batch := make([]Command, n)
				for j := range batch {
					batch[j] = cmds[(proposed+j)%len(cmds)]
					batch[j].Seq = uint64(proposed + j + 1)
				}
				if err := l.Propose(batch); err != nil {
					b.Fatal(err)
				}
				proposed += n
				c.pump()
				for i := range c.applied {
					c.applied[i] = c.applied[i][:0] // the application's job; keep memory flat
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "cmds/s")
			b.ReportMetric(float64(b.N)/float64(l.metrics.ProposedSlots), "cmds/slot")
		})
	}
}

func TestParseBallotReadsWhatStringWrites(t *testing.T) {
	for _, b := range []Ballot{0, MakeBallot(1, 2), MakeBallot(MaxRound, 65535)} {
		if got, err := ParseBallot(b.String()); err != nil || got != b {
			t.Errorf("ParseBallot(%q) = %v, %v; want %v", b.String(), got, err, b)
		}
	}
	for _, bad := range []string{"", "3", "x.1", "1.65536", "-1.2"} {
		if _, err := ParseBallot(bad); err == nil {
			t.Errorf("ParseBallot(%q) accepted a malformed ballot", bad)
		}
	}
}
