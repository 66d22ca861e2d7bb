package sim

import (
	"container/heap"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/sofadb/sofadb/kv"
	"github.com/sofadb/sofadb/paxos"
)

// calm returns parameters with no random faults and fixed link delays: scenario tests script
// their faults themselves.
func calm(replicas int, mode paxos.Mode) Params {
	return Params{
		Seed: 7, Replicas: replicas, Mode: mode, Keys: 8,
		DelayMinUs: 200, SyncMinUs: 300, TickUs: 1000,
		ClientTimeoutUs: 40_000, BatchBytesMax: 4096, InflightSlotsMax: 16, ReadPct: 10,
		FaultEvents: 1 << 60, HealBoundUs: 3_000_000, PreVoteBehind: 4096,
	}
}

// step processes one event; false when nothing is left or a checker fired.
func step(w *world) bool {
	if w.q.Len() == 0 || w.chk.stop() {
		return false
	}
	e := heap.Pop(&w.q).(*event)
	w.nowUs = e.atUs
	w.events++
	w.traceEvent(e)
	w.dispatch(e)
	return true
}

func runFor(w *world, us int64) {
	end := w.nowUs + us
	for w.nowUs < end && step(w) {
	}
}

func runUntil(w *world, limitUs int64, pred func() bool) bool {
	end := w.nowUs + limitUs
	for !pred() && w.nowUs < end && step(w) {
	}
	return pred()
}

// addClient adds a client pinned to one replica (pin -1: any), issuing commands continuously.
func addClient(w *world, pin int) *client {
	c := &client{w: w, idx: len(w.cls), id: uint64(5000 + len(w.cls)), pin: pin, hint: -1}
	w.cls = append(w.cls, c)
	w.schedule(&event{kind: evClientSend, node: c.idx, atUs: w.nowUs})
	return c
}

// openClient adds a scripted client and runs the world until its session is open (through any
// replica: it retries elsewhere on timeout). It then sends only what put gives it.
func openClient(t *testing.T, w *world, to int) *client {
	t.Helper()
	c := &client{w: w, idx: len(w.cls), id: uint64(9000 + len(w.cls)), pin: -1, hint: to, scripted: true}
	w.cls = append(w.cls, c)
	c.send()
	if !runUntil(w, 1_000_000, func() bool { return c.session != 0 }) {
		t.Fatalf("client session never opened: %s", w.convergeReport())
	}
	return c
}

// put has a scripted client send one put to replica `to` (retrying elsewhere on timeout).
func (c *client) put(to int, key, value string) {
	c.want = &kv.Command{Op: kv.OpPut, Key: []byte(key), Value: []byte(value)}
	c.hint = to
	c.send()
}

func leaderOf(w *world) *node {
	for _, n := range w.nodes {
		if n.up && n.core().Status().Role == "leader" {
			return n
		}
	}
	return nil
}

func mustConverge(t *testing.T, w *world) {
	t.Helper()
	w.heal()
	if !runUntil(w, int64(w.p.HealBoundUs), w.converged) {
		t.Fatalf("did not converge after heal: %s; violations: %v", w.convergeReport(), w.chk.violations)
	}
	w.chk.final()
	noViolations(t, w)
}

func noViolations(t *testing.T, w *world) {
	t.Helper()
	if len(w.chk.violations) > 0 {
		t.Fatalf("violations: %v", w.chk.violations)
	}
}

func TestSameSeedPrintsSameTraceDigest(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3, 99} {
		p := Choose(seed, 0, 5000)
		a, b := Run(p, nil), Run(p, nil)
		if a.Digest != b.Digest || a.Events != b.Events || fmt.Sprint(a.Violations) != fmt.Sprint(b.Violations) {
			t.Fatalf("seed %d: digests %x/%x events %d/%d", seed, a.Digest, b.Digest, a.Events, b.Events)
		}
		if c := Run(Choose(seed+1000, 0, 5000), nil); c.Digest == a.Digest {
			t.Fatalf("seeds %d and %d gave the same digest %x", seed, seed+1000, a.Digest)
		}
	}
}

func TestSeedChoosesEveryFaultKind(t *testing.T) {
	var loss, dup, crash, part, oneway, duel, five, noBatch bool
	var lease, tinyWindow, tinyQueue, noSnap, dead, linkCut, crashInSave, readers bool
	for seed := uint64(1); seed <= 200; seed++ {
		p := Choose(seed, 0, 1)
		lease = lease || p.LeaseReads
		tinyWindow = tinyWindow || p.WindowSlotsMax < 8
		tinyQueue = tinyQueue || p.QueueBytesMax < 1000
		noSnap = noSnap || p.SnapshotEvery == 0
		dead = dead || p.DeadForGood > 0
		linkCut = linkCut || p.LinkCutPct > 0
		crashInSave = crashInSave || p.CrashInSavePct > 0
		readers = readers || p.Readers > 0
		loss = loss || p.LossPct > 0
		dup = dup || p.DupPct > 0
		crash = crash || p.CrashEveryUs > 0
		part = part || p.PartitionEveryUs > 0
		oneway = oneway || p.OneWayPct > 0
		duel = duel || p.Mode == paxos.ModeDuel
		five = five || p.Replicas == 5
		noBatch = noBatch || p.BatchBytesMax == 0
	}
	if !(loss && dup && crash && part && oneway && duel && five && noBatch) {
		t.Fatalf("200 seeds missed a fault kind: loss=%v dup=%v crash=%v partition=%v one-way=%v duel=%v 5-replicas=%v no-batch=%v",
			loss, dup, crash, part, oneway, duel, five, noBatch)
	}
	if !(lease && tinyWindow && tinyQueue && noSnap && dead && linkCut && crashInSave && readers) {
		t.Fatalf("200 seeds missed a kind: lease-reads=%v window<8=%v queue<1KB=%v snapshots-off=%v dead-for-good=%v link-cut=%v crash-in-save=%v readers=%v",
			lease, tinyWindow, tinyQueue, noSnap, dead, linkCut, crashInSave, readers)
	}
}

// TestDuelingProposersLivelockWithoutBackoff shows the livelock of "Paxos Made Simple": two
// proposers, each with commands waiting, each starting a new phase 1 as soon as it sees a higher
// ballot, keep preempting each other and nothing is chosen.
func TestDuelingProposersLivelockWithoutBackoff(t *testing.T) {
	w := duel(t, false)
	preempted, acked := w.finalStats().Preempted, len(w.chk.acked)
	t.Logf("without backoff: %d commands acknowledged, %d ballots preempted in 2s", acked, preempted)
	if acked > 0 || preempted < 200 {
		t.Fatalf("expected a livelock: %d commands acknowledged, %d ballots preempted", acked, preempted)
	}
}

// TestDuelingProposersMakeProgressWithBackoff: the same duel with randomized exponential backoff
// chooses commands steadily.
func TestDuelingProposersMakeProgressWithBackoff(t *testing.T) {
	w := duel(t, true)
	preempted, acked := w.finalStats().Preempted, len(w.chk.acked)
	t.Logf("with backoff: %d commands acknowledged, %d ballots preempted in 2s", acked, preempted)
	if acked < 100 {
		t.Fatalf("backoff did not cure the livelock: %d commands acknowledged, %d preempted", acked, preempted)
	}
	mustConverge(t, w)
}

func duel(t *testing.T, backoff bool) *world {
	p := calm(3, paxos.ModeDuel)
	p.Backoff = backoff
	w := newWorld(p, nil)
	for _, pin := range []int{0, 0, 1, 1} {
		addClient(w, pin)
	}
	runFor(w, 2_000_000)
	noViolations(t, w)
	return w
}

// TestLeaderCrashAfterAcceptBeforeCommit: the leader's accept reaches a majority, which votes
// durably, but the leader crashes before it hears back. The value may be chosen (a majority holds
// it), so the next leader must find it in phase 1 and re-propose it in the same slot.
func TestLeaderCrashAfterAcceptBeforeCommit(t *testing.T) {
	w := newWorld(calm(3, paxos.ModeLeader), nil)
	if !runUntil(w, 1_000_000, func() bool { return leaderOf(w) != nil }) {
		t.Fatal("no leader elected")
	}
	old := leaderOf(w)
	oldBallot := old.core().Status().Ballot
	c := openClient(t, w, old.idx)
	w.drop = func(from int, m *paxos.Message) bool {
		return m.Type == paxos.MsgAccepted && int(m.To)-1 == old.idx && from != old.idx
	}
	c.put(old.idx, "k", "precious")
	slot := uint64(0)
	votedBy := func() int {
		n := 0
		for _, f := range w.nodes {
			for s, e := range f.disk.durable.entries {
				if f != old && len(e.Cmds) > 0 && string(decode(&e.Cmds[0]).Value) == "precious" {
					n, slot = n+1, s
				}
			}
		}
		return n
	}
	if !runUntil(w, 500_000, func() bool { return votedBy() == 2 }) {
		t.Fatal("followers never voted durably for the command")
	}
	if old.core().Status().Commit >= slot {
		t.Fatal("leader learned the slot was chosen: the scenario needs it not to")
	}
	old.crash()
	w.drop = nil
	if !runUntil(w, 2_000_000, func() bool { return c.acks > 0 }) {
		t.Fatalf("command never acknowledged after the leader crash: %s", w.convergeReport())
	}
	if at := w.chk.effective[cmdKey{c.session, 1}]; at.slot != slot {
		t.Fatalf("command took effect in slot %d, want slot %d where the crashed leader proposed it", at.slot, slot)
	}
	if nl := leaderOf(w); nl == nil || nl.core().Status().Ballot <= oldBallot {
		t.Fatalf("no new leader above %v", oldBallot)
	}
	mustConverge(t, w)
}

// TestMinorityPartitionedThenHealed: with two of five replicas cut off, the majority keeps choosing
// commands; after the partition heals the minority catches up to the same state.
func TestMinorityPartitionedThenHealed(t *testing.T) {
	w := newWorld(calm(5, paxos.ModeLeader), nil)
	for range 4 {
		addClient(w, -1)
	}
	if !runUntil(w, 1_000_000, func() bool { return leaderOf(w) != nil }) {
		t.Fatal("no leader elected")
	}
	runFor(w, 100_000) // everyone learns a prefix before the cut
	lead := leaderOf(w)
	var minority []int
	for _, n := range w.nodes {
		if n != lead && len(minority) < 2 {
			minority = append(minority, n.idx)
		}
	}
	for _, i := range minority {
		for j := range w.nodes {
			if !slices.Contains(minority, j) {
				w.cut[i][j], w.cut[j][i] = true, true
			}
		}
	}
	for range 4 {
		addClient(w, lead.idx) // load the majority side; the random clients also hit the minority
	}
	before := lead.core().Status().Commit
	runFor(w, 500_000)
	during := lead.core().Status().Commit
	behind := w.nodes[minority[0]].core().Status().Commit
	if during < before+50 {
		t.Fatalf("majority stalled during the partition: commit %d -> %d", before, during)
	}
	if behind == 0 || behind+50 > during {
		t.Fatalf("minority at %d, majority at %d: want the minority to have learned a prefix and then fallen behind", behind, during)
	}
	mustConverge(t, w)
	t.Logf("majority chose %d slots while the minority sat at %d; all converged at %d", during-before, behind, w.nodes[0].st().Applied())
}

// TestReplicaRestartedFromDurableStateCatchesUp: a follower crashes (losing what it had not
// synced), misses many slots, restarts from its durable state, and catches up. With snapshots on,
// the log it missed is truncated while it is down, so it must catch up from a snapshot.
func TestReplicaRestartedFromDurableStateCatchesUp(t *testing.T) {
	for _, snapEvery := range []uint64{0, 5} {
		t.Run(fmt.Sprintf("snapshot-every-%d", snapEvery), func(t *testing.T) {
			p := calm(3, paxos.ModeLeader)
			p.SnapshotEvery = snapEvery
			w := newWorld(p, nil)
			for range 6 {
				addClient(w, -1)
			}
			if !runUntil(w, 1_000_000, func() bool { return leaderOf(w) != nil }) {
				t.Fatal("no leader elected")
			}
			var f *node
			for _, n := range w.nodes {
				if n != leaderOf(w) {
					f = n
				}
			}
			runFor(w, 100_000)
			f.crash()
			crashedAt := w.nodes[(f.idx+1)%3].core().Status().Commit
			runFor(w, 600_000)
			f.restart()
			mustConverge(t, w)
			if f.st().Applied() <= crashedAt+100 {
				t.Fatalf("too little happened while r%d was down: %d -> %d", f.id, crashedAt, f.st().Applied())
			}
			if snapEvery > 0 && w.stats.SnapshotsSent == 0 {
				t.Fatal("log truncated but no snapshot was sent")
			}
			t.Logf("r%d crashed at slot ~%d, caught up to %d (snapshots sent: %d)", f.id, crashedAt, f.st().Applied(), w.stats.SnapshotsSent)
		})
	}
}

// TestMutationCanariesAreCaught plants each known bug and requires the checkers to fire within a
// small seed budget: a checker that never fires proves nothing.
func TestMutationCanariesAreCaught(t *testing.T) {
	for _, m := range Canaries() {
		if _, scripted := ScenarioCanaries[m.Name()]; scripted {
			continue // gated by its scenario test
		}
		caught := uint64(0)
		var first string
		for seed := uint64(1); seed <= 100 && caught == 0; seed++ {
			p := Choose(seed, 0, 20000)
			m.Plant(&p)
			if res := Run(p, nil); res.Failed() {
				caught, first = seed, res.Violations[0]
			}
		}
		if caught == 0 {
			t.Errorf("canary %v not caught in 100 seeds", m.Name())
			continue
		}
		t.Logf("canary %v caught by seed %d: %s", m.Name(), caught, first)
	}
}

func TestViolationReportNamesTheSeedParameters(t *testing.T) {
	p := Choose(3, 5, 10)
	if s := p.String(); !strings.Contains(s, "seed=3 replicas=5") || !strings.Contains(s, "loss=") {
		t.Fatalf("params line lacks essentials: %s", s)
	}
}

// TestForwardedCommandSurvivesLeaderCrashWithoutClientRetry: a follower forwards a command to the
// leader, which crashes before proposing it. The client does not retry; the follower must forward
// the command again to whichever replica leads next, however long the failover takes.
func TestForwardedCommandSurvivesLeaderCrashWithoutClientRetry(t *testing.T) {
	p := calm(3, paxos.ModeLeader)
	p.ClientTimeoutUs = 60_000_000 // the client waits for ever: only the replicas can save the command
	w := newWorld(p, nil)
	if !runUntil(w, 1_000_000, func() bool { return leaderOf(w) != nil }) {
		t.Fatal("no leader elected")
	}
	runFor(w, 50_000)
	old := leaderOf(w)
	f := w.nodes[(old.idx+1)%3]
	c := openClient(t, w, f.idx)
	before := f.core().Status().Metrics.Forwarded
	c.put(f.idx, "k", "forwarded")
	forwarded := func() bool { return f.core().Status().Metrics.Forwarded > before }
	if !runUntil(w, 100_000, forwarded) {
		t.Fatal("follower never forwarded the command")
	}
	old.crash() // the forward is in flight to a dead leader, or arrived and died with it
	// The first elections fail (their prepares are lost), so the failover outlasts two election
	// timeouts, as it often does on real machines (election timeout, then phase 1).
	electionsFailUntil := w.nowUs + 60_000
	w.drop = func(from int, m *paxos.Message) bool {
		return m.Type == paxos.MsgPrepare && w.nowUs < electionsFailUntil
	}
	if !runUntil(w, 5_000_000, func() bool { return c.acks > 0 }) {
		t.Fatalf("command never applied after the leader crashed (reforwarded %d): %s",
			f.core().Status().Metrics.Reforwarded, w.convergeReport())
	}
	if f.core().Status().Metrics.Reforwarded == 0 {
		t.Fatal("applied without a re-forward: the scenario did not test what it says")
	}
	w.drop = nil
	old.restart()
	mustConverge(t, w)
}

// addPinned adds a client that sends every command to one replica: a reader (reads only, back to
// back) or a writer (puts only).
func addPinned(w *world, pin int, reader bool) *client {
	c := addClient(w, pin)
	c.reader, c.writer = reader, !reader
	return c
}

// staleReads counts read-fresh and read-value violations (what a client would see).
func staleReads(w *world) int {
	n := 0
	for _, k := range w.chk.kinds {
		if k == "read-fresh" || k == "read-value" {
			n++
		}
	}
	return n
}

// leaseScenario runs one scripted lease scenario with and without its planted bug: without it the
// run must be clean and reads must have been served; with it a client must see a stale read. The
// lease oracles are off, so only what clients see counts. Pre-vote is off: the scripts choose which
// replica takes over by cutting it off, and they pin the lease rules themselves, which must hold
// whether or not a pre-vote comes first (the seeded runs have it on three times in four).
func leaseScenario(t *testing.T, mut paxos.Mutation, script func(t *testing.T, w *world) (leaseReads func() int)) {
	for _, m := range []paxos.Mutation{paxos.MutNone, mut} {
		t.Run(m.String(), func(t *testing.T) {
			p := calm(3, paxos.ModeLeader)
			p.LeaseReads, p.NoOracles, p.Mutation, p.NoPreVote = true, true, m, true
			w := newWorld(p, nil)
			if !runUntil(w, 1_000_000, func() bool { return leaderOf(w) != nil }) {
				t.Fatal("no leader elected")
			}
			runFor(w, 20_000)
			reads := script(t, w)
			if m == paxos.MutNone {
				noViolations(t, w)
				if reads() == 0 {
					t.Fatal("no lease read was served: the scenario does not test the lease")
				}
				return
			}
			if staleReads(w) == 0 {
				t.Fatalf("planted bug %v: no client saw a stale read (violations: %v)", m, w.chk.violations)
			}
			t.Logf("planted bug %v: %s", m, w.chk.violations[0])
		})
	}
}

// TestNewLeaderServesNoStaleLeaseReadBeforeItsReproposalsAreChosen: the old leader's last write is
// chosen (by it and one follower), applied and acknowledged, and then the old leader dies before
// anyone else learns it was chosen. The new leader re-proposes it; its accept replies wait for a slow
// fsync while heartbeat acknowledgements come back at once. Readers at both survivors must never
// miss the write (issue 8, bug 1).
func TestNewLeaderServesNoStaleLeaseReadBeforeItsReproposalsAreChosen(t *testing.T) {
	leaseScenario(t, paxos.MutLeaseNoFence, func(t *testing.T, w *world) func() int {
		w.p.SyncMinUs = 4_000 // accept replies wait for a slow fsync; heartbeat acknowledgements do not
		old := leaderOf(w)
		a, b := w.nodes[(old.idx+1)%3], w.nodes[(old.idx+2)%3]
		// Readers at both survivors, idle until the old leader is gone: a read they sent through it
		// now would carry the chosen prefix to a (in the accepts that follow), and the new leader
		// would learn it from a's promise.
		ra, rb := openClient(t, w, a.idx), openClient(t, w, b.idx)
		c := openClient(t, w, old.idx)
		w.p.ClientTimeoutUs = 1_500 // readers ask again often, so reads arrive right after the election
		// From now on the old leader's accepts reach only a, and nobody hears that the write's
		// slot (or anything after it) is chosen: not from a commit notice, not piggybacked.
		known := old.core().Status().Commit
		w.drop = func(from int, m *paxos.Message) bool {
			return from == old.idx && (m.Type == paxos.MsgCommit || int(m.To) == b.idx+1 || m.Commit > known)
		}
		c.put(old.idx, "k1", "precious")
		if !runUntil(w, 200_000, func() bool { return c.acks > 0 }) {
			t.Fatal("the write was not acknowledged")
		}
		old.crash()
		w.drop = nil
		for _, r := range []*client{ra, rb} {
			r.scripted, r.reader, r.pin = false, true, r.hint
			r.send()
		}
		runFor(w, 300_000)
		if leaderOf(w) == nil {
			t.Fatal("no new leader")
		}
		return func() int { return w.chk.leaseReads }
	})
}

// TestDeposedLeaderGetsNoLeaseFromAnAcceptorThatPromisedHigher: the old leader is cut off from one
// follower, which elects itself with the other; the old leader's heartbeats then reach that other
// follower again, but its Nacks back are lost. Acknowledging those heartbeats would renew the old
// leader's lease while the new one takes writes (issue 8, bug 2).
func TestDeposedLeaderGetsNoLeaseFromAnAcceptorThatPromisedHigher(t *testing.T) {
	leaseScenario(t, paxos.MutAckLowerBallot, func(t *testing.T, w *world) func() int {
		old := leaderOf(w)
		f, n := w.nodes[(old.idx+1)%3], w.nodes[(old.idx+2)%3]
		w.cut[old.idx][n.idx], w.cut[n.idx][old.idx] = true, true
		addPinned(w, old.idx, true)
		runFor(w, 20_000) // lease reads at the old leader, through f's acknowledgements
		servedBefore := w.chk.leaseReads
		// f stops hearing the old leader until n leads: f's lease lapses and it promises n.
		w.p.ClientTimeoutUs = 1_500
		w.drop = func(from int, m *paxos.Message) bool {
			if from == old.idx && int(m.To) == f.idx+1 && n.core().Status().Role != "leader" {
				return true
			}
			return from == f.idx && int(m.To) == old.idx+1 && m.Type == paxos.MsgNack
		}
		if !runUntil(w, 500_000, func() bool { return n.up && n.core().Status().Role == "leader" }) {
			t.Fatal("the cut-off follower never took over")
		}
		wr := addPinned(w, n.idx, false)
		runFor(w, 100_000)
		if len(w.chk.violations) == 0 && wr.seq < 5 {
			t.Fatalf("the new leader took no writes (writer at seq %d)", wr.seq)
		}
		return func() int { return servedBefore }
	})
}

// TestRestartedFollowerDoesNotHandTheLeaseToANewLeader: the old leader is cut off from one
// follower; the other follower, which keeps the old leader's lease alive, crashes and restarts at
// once. Promising the cut-off follower right away would let it lead and take writes while the old
// leader still serves reads on the acknowledgement given before the crash (issue 8, bug 3).
func TestRestartedFollowerDoesNotHandTheLeaseToANewLeader(t *testing.T) {
	leaseScenario(t, paxos.MutNoRestartQuiet, func(t *testing.T, w *world) func() int {
		old := leaderOf(w)
		f, n := w.nodes[(old.idx+1)%3], w.nodes[(old.idx+2)%3]
		rd, wr := addPinned(w, old.idx, true), addPinned(w, n.idx, false)
		runUntil(w, 100_000, func() bool { return rd.session != 0 && wr.session != 0 })
		w.cut[old.idx][n.idx], w.cut[n.idx][old.idx] = true, true
		runFor(w, 30_000) // n campaigns in vain: f refuses it while it grants the old leader a lease
		servedBefore := w.chk.leaseReads
		if n.core().Status().Metrics.Campaigns == 0 {
			t.Fatal("the cut-off follower never campaigned")
		}
		w.p.ClientTimeoutUs = 1_500
		f.crash()
		w.cut[old.idx][f.idx] = true // after the restart, only the old lease speaks for the old leader
		runFor(w, 1_000)             // what was in flight to f is lost with the crash
		f.restart()
		runFor(w, 60_000)
		if len(w.chk.violations) == 0 && n.core().Status().Role == "leader" && wr.seq < 2 {
			t.Fatalf("new leader took no writes (writer at seq %d)", wr.seq)
		}
		return func() int { return servedBefore }
	})
}

// Replicas that lose their disks and rejoin (a promise floor, a learner until caught up: what
// sofadb rejoin sets up) keep every checker quiet; the same wipes without the rejoin, voting at
// once, are caught. Seeds in leader mode with crashes, wipes at half the restarts.
func TestWipedReplicasRejoinSafelyAndNaiveWipesAreCaught(t *testing.T) {
	run := func(naive bool) (seeds, wipes int, caught []string) {
		for seed := uint64(1); seeds < 60 && seed < 2000; seed++ {
			p := Choose(seed, 0, 20000)
			if p.Mode != paxos.ModeLeader || p.CrashEveryUs == 0 || p.DeadForGood > 0 {
				continue
			}
			p.WipePct, p.WipeNaive = 50, naive
			r := Run(p, nil)
			seeds++
			wipes += r.Stats.Wipes
			if len(r.Violations) > 0 {
				caught = append(caught, fmt.Sprintf("seed %d: %s", seed, r.Violations[0]))
			}
		}
		return seeds, wipes, caught
	}
	seeds, wipes, violations := run(false)
	t.Logf("rejoin: %d seeds, %d wipes, %d with violations", seeds, wipes, len(violations))
	if wipes < 50 || len(violations) > 0 {
		t.Fatalf("rejoin: %d wipes over %d seeds; violations: %v", wipes, seeds, violations)
	}
	seeds, wipes, caught := run(true)
	t.Logf("naive wipes: %d seeds, %d wipes, %d caught; first: %v", seeds, wipes, len(caught), caught[:min(1, len(caught))])
	if len(caught) == 0 {
		t.Fatalf("naive wipes: %d wipes over %d seeds and no checker caught a replica voting with a wiped disk", wipes, seeds)
	}
}
