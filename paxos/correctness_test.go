package paxos

import (
	"bytes"
	"testing"
)

// These tests pin the correctness bugs of issue 8, each with the smallest scripted run of the core
// that shows it. Every one of them failed on the code before its fix.

// others returns the replicas of c other than the given ones, in id order.
func (c *testNet) others(not ...*Replica) []*Replica {
	var out []*Replica
outer:
	for _, r := range c.reps {
		for _, n := range not {
			if r == n {
				continue outer
			}
		}
		out = append(out, r)
	}
	return out
}

// tickOnly ticks the given replicas (the others are dead or paused) and pumps after each tick.
func (c *testNet) tickOnly(n int, reps ...*Replica) {
	for range n {
		for _, r := range reps {
			r.Tick()
		}
		c.pump()
	}
}

// newLeaderAfter waits (ticking only the live replicas) until one of them leads.
func (c *testNet) newLeaderAfter(live ...*Replica) *Replica {
	for range 500 {
		for _, r := range live {
			if r.role == leader {
				return r
			}
		}
		c.tickOnly(1, live...)
	}
	c.t.Fatal("no new leader among the live replicas")
	return nil
}

// Bug 1: a new leader re-proposing a slot the old leader already had chosen (and applied, and
// acknowledged) must not serve lease reads until that slot is chosen again under its own ballot.
// Heartbeat acknowledgements come back at once, accept replies only after an fsync, so there is a
// window in which the lease is valid and the commit is still below the old leader's last write.
func TestNewLeaderServesNoLeaseReadBelowAReproposedChosenSlot(t *testing.T) {
	c := newTestNet(t, 3, nil)
	old := c.leader()
	rest := c.others(old)
	voter, silent := rest[0], rest[1]
	// The old leader's write is chosen by {old, voter}; nobody but the old leader learns it is chosen.
	c.hold = func(m *Message) bool {
		return m.To == silent.id || m.From == silent.id || m.Type == MsgCommit
	}
	if err := old.Propose([]Command{cmd(7, 1, 8)}); err != nil {
		t.Fatal(err)
	}
	c.pump()
	written := old.commit
	if written == 0 || voter.commit >= written {
		t.Fatalf("setup: old leader commit %d, voter commit %d", written, voter.commit)
	}
	// The old leader dies. The voter and the silent replica elect a new leader; its accept replies
	// are held (their fsync is slow), its heartbeat acknowledgements are not.
	c.held = nil
	c.hold = func(m *Message) bool {
		return m.From == old.id || m.To == old.id || m.Type == MsgAccepted
	}
	nl := c.newLeaderAfter(voter, silent)
	if nl.commit >= written {
		t.Fatalf("setup: the new leader already knows slot %d is chosen", written)
	}
	c.tickOnly(nl.cfg.HeartbeatTicks, voter, silent) // a heartbeat acknowledged by a majority
	if idx, ok := nl.ReadIndex(); ok && idx < written {
		t.Fatalf("new leader serves a lease read at index %d below the old leader's acknowledged write in slot %d", idx, written)
	}
	// Once the re-proposed slot is chosen under the new ballot, reads are served again.
	c.hold = func(m *Message) bool { return m.From == old.id || m.To == old.id }
	msgs := c.held
	c.held = nil
	for i := range msgs {
		if msgs[i].From != old.id && msgs[i].To != old.id {
			c.reps[msgs[i].To-1].Step(&msgs[i])
		}
	}
	c.tickOnly(nl.cfg.HeartbeatTicks, voter, silent)
	if idx, ok := nl.ReadIndex(); !ok || idx < written {
		t.Fatalf("after the re-proposal is chosen: read index %d ok=%v, want >= %d", idx, ok, written)
	}
}

// Bug 2: an acceptor that promised a higher ballot must not acknowledge a deposed leader's
// heartbeat: the acknowledgement would renew the old leader's lease while a new one takes writes.
func TestAcceptorThatPromisedHigherDoesNotRenewAnOldLeadersLease(t *testing.T) {
	c := newTestNet(t, 3, nil)
	l := c.leader()
	f := c.others(l)[0]
	higher := MakeBallot(l.ballot.Round()+3, c.others(l)[1].id)
	f.Step(&Message{Type: MsgAccept, From: higher.ID(), To: f.id, Ballot: higher,
		Entries: []Entry{{Slot: f.commit + 1, Cmds: []Command{cmd(1, 1, 1)}}}})
	f.Ready()
	f.Step(&Message{Type: MsgCommit, From: l.id, To: f.id, Ballot: l.ballot, Commit: l.commit, Stamp: 99})
	rd := f.Ready()
	for _, m := range append(rd.Messages, rd.AfterSync...) {
		if m.Type == MsgCommitAck {
			t.Fatalf("acceptor promised %v acknowledged a heartbeat of %v: %+v", higher, l.ballot, m)
		}
	}
}

// Found by make sim after issue 8 (seed 7235, 5 replicas): a follower that acknowledged a heartbeat
// of ballot 6.5 (having promised only 5.4: a commit notice raises no promise) then heard 5.4's owner
// again, took it for its leader once more, acknowledged its heartbeat and promised its next ballot
// 8.4, while 6.5's owner still served lease reads counting the first acknowledgement. A follower
// honours one lease at a time: the highest ballot it acknowledged, until that lease runs out.
func TestFollowerHonoursTheHigherLeaseItAcknowledged(t *testing.T) {
	peers := []ReplicaID{1, 2, 3, 4, 5}
	cfg := DefaultConfig(1, peers)
	r, err := New(cfg, &Durable{Promised: MakeBallot(5, 4)})
	if err != nil {
		t.Fatal(err)
	}
	old, newer := MakeBallot(5, 4), MakeBallot(6, 5)
	for range cfg.ElectionTicks + cfg.LeaseDriftTicks { // past the quiet period, r4 leading
		r.Tick()
		r.Step(&Message{Type: MsgCommit, From: 4, To: 1, Ballot: old})
	}
	r.Ready()
	acks := func() int {
		rd := r.Ready()
		n := 0
		for _, m := range append(rd.Messages, rd.AfterSync...) {
			if m.Type == MsgCommitAck {
				n++
			}
		}
		return n
	}
	r.Step(&Message{Type: MsgCommit, From: 4, To: 1, Ballot: old, Stamp: 10})
	if acks() != 1 {
		t.Fatal("no acknowledgement of the current leader's heartbeat")
	}
	r.Step(&Message{Type: MsgCommit, From: 5, To: 1, Ballot: newer, Stamp: 11})
	if acks() != 1 {
		t.Fatal("no acknowledgement of the higher ballot's heartbeat")
	}
	r.Step(&Message{Type: MsgCommit, From: 4, To: 1, Ballot: old, Stamp: 12})
	if n := acks(); n != 0 || r.leader != 5 {
		t.Fatalf("after acknowledging %v, the follower acknowledged %v again (%d acks) and follows r%d", newer, old, n, r.leader)
	}
	r.Step(&Message{Type: MsgPrepare, From: 4, To: 1, Ballot: MakeBallot(8, 4), Slot: 1})
	if r.promised != old {
		t.Fatalf("promised %v to r4 while honouring r5's lease", r.promised)
	}
	for range cfg.ElectionTicks { // the lease it granted runs out (r4 keeps its heartbeats up)
		r.Tick()
		r.Step(&Message{Type: MsgCommit, From: 4, To: 1, Ballot: old})
	}
	r.Ready()
	r.Step(&Message{Type: MsgPrepare, From: 4, To: 1, Ballot: MakeBallot(8, 4), Slot: 1})
	if r.promised != MakeBallot(8, 4) {
		t.Fatalf("after the lease ran out the follower still refuses: promised %v", r.promised)
	}
}

// Bug 3: a follower that acknowledged a heartbeat and restarted at once has forgotten the lease it
// granted. It must refuse to promise anyone (itself included) for one election timeout plus the
// drift margin after it starts.
func TestRestartedFollowerRefusesPromisesForALeaseTerm(t *testing.T) {
	peers := []ReplicaID{1, 2, 3}
	cfg := DefaultConfig(2, peers)
	r, err := New(cfg, &Durable{Promised: MakeBallot(4, 1)})
	if err != nil {
		t.Fatal(err)
	}
	quiet := cfg.ElectionTicks + cfg.LeaseDriftTicks
	for range quiet - 2 {
		r.Tick()
	}
	r.Ready()
	r.Step(&Message{Type: MsgPrepare, From: 3, To: 2, Ballot: MakeBallot(9, 3), Slot: 1})
	if rd := r.Ready(); r.promised != MakeBallot(4, 1) || len(rd.AfterSync) != 0 {
		t.Fatalf("restarted follower promised %v within %d ticks of starting", r.promised, quiet)
	}
	if r.role != follower {
		t.Fatalf("restarted follower campaigned within %d ticks of starting", quiet)
	}
	for range 3 {
		r.Tick()
	}
	r.Ready()
	r.Step(&Message{Type: MsgPrepare, From: 3, To: 2, Ballot: MakeBallot(9, 3), Slot: 1})
	if r.promised != MakeBallot(9, 3) {
		t.Fatalf("after its quiet period the follower still refuses: promised %v", r.promised)
	}
}

// Bug 4: the chosen prefix may only move past a peer's snapshot once that snapshot is durable. A
// crash between persisting ChosenTo and saving the snapshot would make old votes below it (of
// ballots that lost) look chosen on restart.
func TestChosenPrefixWaitsForThePeerSnapshotToBeDurable(t *testing.T) {
	c := newTestNet(t, 3, nil)
	f := c.reps[2]
	f.Step(&Message{Type: MsgAccept, From: 1, To: 3, Ballot: MakeBallot(1, 1),
		Entries: []Entry{{Slot: 5, Cmds: []Command{cmd(1, 1, 3)}}}}) // a vote that lost, say
	f.Ready()
	f.Step(&Message{Type: MsgSnapshot, From: 2, To: 3, Slot: 10, Data: []byte("state")})
	rd := f.Ready()
	if rd.Snapshot == nil || rd.Snapshot.Slot != 10 {
		t.Fatalf("snapshot not handed to the application: %+v", rd.Snapshot)
	}
	if rd.ChosenTo >= 10 {
		t.Fatalf("Ready persists ChosenTo %d before the snapshot through 10 is durable", rd.ChosenTo)
	}
	f.Tick()
	if rd := f.Ready(); rd.ChosenTo >= 10 {
		t.Fatalf("a later Ready persists ChosenTo %d before the snapshot is durable", rd.ChosenTo)
	}
	f.Compact(10) // the application says the snapshot through 10 is durable
	if rd := f.Ready(); rd.ChosenTo != 10 {
		t.Fatalf("after the snapshot is durable, ChosenTo is %d, want 10", rd.ChosenTo)
	}
}

// Bug 5, restart: a durable vote is never dropped, however far above the snapshot it lies.
func TestRestoreKeepsVotesBeyondTheWindow(t *testing.T) {
	cfg := DefaultConfig(1, []ReplicaID{1, 2, 3})
	cfg.WindowSlotsMax = 4
	b := MakeBallot(3, 2)
	r, err := New(cfg, &Durable{Promised: b, Entries: []Entry{{Slot: 9, Ballot: b, Cmds: []Command{cmd(1, 9, 1)}}}})
	if err != nil {
		t.Fatal(err)
	}
	if got, _, ok := r.Vote(9); !ok || got != b {
		t.Fatalf("vote in slot 9 (window 4) lost on restore: %v %v", got, ok)
	}
}

// Bug 5, phase 1: a vote a promise reports is never ignored, even far above the new leader's
// window: the new leader re-proposes it instead of putting a new value over it.
func TestNewLeaderReproposesAReportedVoteBeyondItsWindow(t *testing.T) {
	c := newTestNet(t, 3, func(cfg *Config) { cfg.WindowSlotsMax = 4 })
	r := c.reps[0]
	r.campaign()
	rd := r.Ready()
	for _, m := range rd.AfterSync {
		if m.To == r.id {
			r.Step(&m) // our own promise
		}
	}
	far := uint64(9)
	vote := Entry{Slot: far, Ballot: MakeBallot(1, 2), Cmds: []Command{cmd(5, 5, 4)}}
	r.Step(&Message{Type: MsgPromise, From: 2, To: 1, Ballot: r.ballot, Entries: []Entry{vote}})
	if r.role != leader {
		t.Fatalf("candidate with a majority of promises is %v", r.role)
	}
	sl := r.log.get(far)
	if sl == nil || sl.propBallot != r.ballot || fingerprintCmds(sl.prop) != fingerprintCmds(vote.Cmds) {
		t.Fatalf("reported vote in slot %d not re-proposed", far)
	}
	r.Propose([]Command{cmd(6, 1, 4)})
	r.Ready()
	if r.nextSlot <= far {
		t.Fatalf("new commands go to slot %d, at or below the reported vote in %d", r.nextSlot-1, far)
	}
}

func fingerprintCmds(cmds []Command) string {
	var b bytes.Buffer
	for _, c := range cmds {
		b.Write(c.Data)
		b.WriteByte(0)
		b.WriteByte(byte(c.Seq))
	}
	return b.String()
}

// Bug 6: the acceptor that told the new leader how far the log is chosen dies for good right after
// its promise. The chosen values must still reach the new leader (in the promise itself), or its
// commit stays frozen for ever while it heartbeats a live majority.
func TestNewLeaderLearnsChosenSlotsWhenTheirReporterDies(t *testing.T) {
	c := newTestNet(t, 5, nil)
	old := c.leader()
	rest := c.others(old)
	knower, behind := rest[0], rest[1:]
	// Slots are chosen by {old, knower, behind[0]}; only old and knower learn they are chosen.
	c.hold = func(m *Message) bool {
		if m.To == behind[1].id || m.To == behind[2].id {
			return true
		}
		return m.To == behind[0].id && m.Type == MsgCommit
	}
	for i := range 5 {
		old.Propose([]Command{cmd(3, uint64(i+1), 4)})
		c.pump()
	}
	c.tickOnly(old.cfg.HeartbeatTicks, old) // knower learns the chosen prefix from a heartbeat
	if knower.commit < 5 || behind[0].commit >= 5 {
		t.Fatalf("setup: knower commit %d, behind commit %d", knower.commit, behind[0].commit)
	}
	chosen := knower.commit
	// The old leader dies. behind[1] campaigns (the others' prepares are lost) and wins with the
	// promises of the knower and behind[0] (behind[2]'s promise is lost).
	cand := behind[1]
	c.held = nil
	c.hold = func(m *Message) bool {
		switch {
		case m.From == old.id || m.To == old.id:
			return true
		case m.Type == MsgPrepare && m.From != cand.id:
			return true
		}
		return m.Type == MsgPromise && m.From == behind[2].id
	}
	live := []*Replica{knower, behind[0], behind[1], behind[2]}
	if nl := c.newLeaderAfter(live...); nl != cand {
		t.Fatalf("setup: replica %d leads, want %d", nl.id, cand.id)
	}
	// Right after its promise, the knower dies for good.
	c.hold = func(m *Message) bool {
		return m.From == old.id || m.To == old.id || m.From == knower.id || m.To == knower.id
	}
	c.tickOnly(cand.cfg.ElectionTicks*10, behind...)
	if cand.role != leader || cand.commit < chosen {
		t.Fatalf("new leader %d (%v) stuck at commit %d below the chosen prefix %d after its reporter died",
			cand.id, cand.role, cand.commit, chosen)
	}
}

// TestForwardedCommandsFollowTheLeadersNewTerm: a follower forwarded a command to leader r2
// (ballot 3.2); r2 lost its leadership (a campaign preempted it: its queue and any forward arriving
// meanwhile are dropped) and won again at 5.2. The leader's id did not change, but its term did:
// the command must be forwarded again, or its client waits out its timeout (TestE2ERestart/log saw
// exactly that under -race: a GET timed out after r1 campaigned and r2 was re-elected).
func TestForwardedCommandsFollowTheLeadersNewTerm(t *testing.T) {
	cfg := DefaultConfig(1, []ReplicaID{1, 2, 3})
	r, err := New(cfg, &Durable{Promised: MakeBallot(3, 2)})
	if err != nil {
		t.Fatal(err)
	}
	term1, term2 := MakeBallot(3, 2), MakeBallot(5, 2)
	for range cfg.ElectionTicks + cfg.LeaseDriftTicks { // past the quiet period, r2 leading
		r.Tick()
		r.Step(&Message{Type: MsgCommit, From: 2, To: 1, Ballot: term1})
	}
	r.Ready()
	forwards := func() int {
		rd := r.Ready()
		n := 0
		for _, m := range append(rd.Messages, rd.AfterSync...) {
			if m.Type == MsgForward && m.To == 2 {
				n += len(m.Cmds)
			}
		}
		r.Advance(&rd)
		return n
	}
	if err := r.Propose([]Command{cmd(7, 1, 8)}); err != nil {
		t.Fatal(err)
	}
	if n := forwards(); n != 1 {
		t.Fatalf("forwarded %d commands to r2, want 1", n)
	}
	r.Step(&Message{Type: MsgCommit, From: 2, To: 1, Ballot: term1}) // the same term: nothing to do
	if n := forwards(); n != 0 {
		t.Fatalf("re-forwarded %d commands within the same term", n)
	}
	r.Step(&Message{Type: MsgPrepare, From: 2, To: 1, Ballot: term2, Slot: 1})
	r.Step(&Message{Type: MsgCommit, From: 2, To: 1, Ballot: term2})
	if n := forwards(); n != 1 || r.Status().Metrics.Reforwarded != 1 {
		t.Fatalf("r2 leads again under %v: re-forwarded %d commands (metric %d), want the one forwarded under %v",
			term2, n, r.Status().Metrics.Reforwarded, term1)
	}
}
