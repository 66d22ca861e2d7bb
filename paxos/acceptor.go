package paxos

// This file holds the acceptor and the learner: the parts of a replica that behave the same
// whatever its proposer is doing.

// onPrepare is phase 1b. An acceptor promises a ballot at least as high as any it promised, and
// answers with every vote it holds from the proposer's first open slot on, so the proposer can
// re-propose the highest-ballot value of each slot (P2c). Equal ballots are answered again: a
// retransmitted prepare from the same proposer must get its promise.
func (r *Replica) onPrepare(m *Message) {
	b := m.Ballot
	if b < r.promised {
		r.send(Message{Type: MsgNack, To: m.From, Ballot: r.promised})
		return
	}
	if !r.mayVote() {
		r.metrics.RejoinIgnored++
		if m.Slot > 0 {
			r.noteKnownCommit(m.Slot-1, m.From) // the proposer's chosen prefix: catch up from it
		}
		return
	}
	if r.leaseProtects(m.From) {
		r.metrics.LeaseRefusals++
		return
	}
	if b > r.promised {
		r.promise(b)
	}
	if r.role != follower && b > r.ballot {
		r.preempted(b)
	}
	r.sendAfterSync(r.promiseMsg(m.From, b, m.Slot))
}

// mayVote says whether this replica may promise and vote: always, except while it rejoins after
// losing its acceptor state, until its chosen prefix reaches Config.VoteFromCommit.
func (r *Replica) mayVote() bool { return r.commit >= r.cfg.VoteFromCommit }

// promiseMsg is phase 1b's reply to a proposer whose first slot not known chosen is `from`. It
// carries every vote above the acceptor's chosen prefix and, so that the proposer never depends on
// this acceptor staying alive to learn them, the chosen values from `from` up to that prefix too.
// Chosen values are bounded by CatchupBytesMax, taken from the top; Slot is the floor: every slot at
// or below it is chosen but not in the promise (truncated into the snapshot, or over the budget). A
// proposer whose own chosen prefix is below a promise's floor is behind: it must catch up before it
// may lead (see onPromise).
func (r *Replica) promiseMsg(to ReplicaID, b Ballot, from uint64) Message {
	floor := max(from, 1) - 1
	floor = max(floor, r.log.base)
	var chosen []Entry
	if r.commit > floor {
		bytes, low := 0, r.commit+1
		for low > floor+1 {
			sl := r.log.get(low - 1)
			e := Entry{Slot: low - 1, Ballot: sl.ballot, Chosen: true, Cmds: sl.cmds}
			if bytes+e.Size() > r.cfg.CatchupBytesMax && low <= r.commit {
				break
			}
			bytes += e.Size()
			low--
		}
		floor = low - 1
		for s := low; s <= r.commit; s++ {
			sl := r.log.get(s)
			chosen = append(chosen, Entry{Slot: s, Ballot: sl.ballot, Chosen: true, Cmds: sl.cmds})
		}
	}
	entries := append(chosen, r.votesFrom(max(floor, r.commit)+1)...)
	return Message{Type: MsgPromise, To: to, Ballot: b, Slot: floor, Commit: r.commit, Entries: entries}
}

// leaseProtects says a prepare from `from` must be ignored because this replica heard from the
// current leader within ElectionTicks: every acknowledged heartbeat grants the leader that long, and
// the leader serves reads locally on the strength of it (ModeLeader only).
//
// A replica also refuses everyone during its quiet period after it starts (see quietUntil): it may
// have granted a lease it no longer remembers.
func (r *Replica) leaseProtects(from ReplicaID) bool {
	if r.cfg.Mode != ModeLeader || from == r.id {
		return false
	}
	if r.tick < r.quietUntil {
		return true
	}
	if r.leader == 0 || from == r.leader {
		return false
	}
	return r.tick < r.leaderSeenTick+uint64(r.cfg.ElectionTicks)
}

// promise raises the promised ballot and schedules it for the disk (synced before any reply).
func (r *Replica) promise(b Ballot) {
	r.assertf(b > r.promised, "promise %v not above %v", b, r.promised)
	r.promised = b
	r.rd.Promised = b
	r.rd.MustSync = true
}

// votesFrom lists the acceptor's votes and chosen values from slot `from` to the end of its window.
func (r *Replica) votesFrom(from uint64) []Entry {
	var out []Entry
	for s := max(from, r.log.base+1); s <= r.log.last(); s++ {
		sl := r.log.get(s)
		if sl.has {
			out = append(out, Entry{Slot: s, Ballot: sl.ballot, Chosen: sl.chosen, Cmds: sl.cmds})
		}
	}
	return out
}

// onAccept is phase 2b: vote for the proposal unless a higher ballot was promised, and learn from
// the chosen prefix the leader piggybacks.
func (r *Replica) onAccept(m *Message) {
	b, e := m.Ballot, &m.Entries[0]
	if b < r.promised {
		r.send(Message{Type: MsgNack, To: m.From, Ballot: r.promised, Slot: e.Slot})
		return
	}
	if !r.mayVote() { // rejoining: learn what is chosen, vote for nothing
		r.metrics.RejoinIgnored++
		r.learnCommit(b, m.Commit, m.From)
		r.hearFromLeader(b)
		return
	}
	if b > r.promised {
		r.promise(b) // accepting under b implies never accepting below it
	}
	// Vote before hearFromLeader: a dueling proposer it preempts may start a new phase 1 at once,
	// promising a ballot above b, and a vote for b after that would break the promise.
	r.vote(e.Slot, b, e.Cmds, m.From)
	r.learnCommit(b, m.Commit, m.From)
	r.hearFromLeader(b)
}

// vote records the acceptor's vote for (b, cmds) in slot s and answers `to` once it is durable.
func (r *Replica) vote(s uint64, b Ballot, cmds []Command, to ReplicaID) {
	if s <= r.log.base || s > r.commit+r.cfg.WindowSlotsMax {
		return // compacted (so chosen and applied) or absurdly far ahead
	}
	sl := r.log.ensure(s)
	if sl.chosen {
		if to != r.id { // tell the proposer the slot is decided instead of voting again
			r.send(Message{Type: MsgCatchupReply, To: to, Commit: r.commit,
				Entries: []Entry{{Slot: s, Ballot: sl.ballot, Chosen: true, Cmds: sl.cmds}}})
		}
		return
	}
	if !(sl.has && sl.ballot == b && sl.persisted) {
		sl.ballot, sl.cmds, sl.has, sl.persisted = b, cmds, true, true
		r.persistEntry(Entry{Slot: s, Ballot: b, Cmds: cmds}, true)
	}
	r.sendAfterSync(Message{Type: MsgAccepted, To: to, Ballot: b, Slot: s})
	if b == r.lcBallot && s <= r.lcIndex {
		r.markChosen(s, sl) // the leader already said this slot is chosen under b
		r.advanceCommit()
	}
}

// hearFromLeader notes a message from the owner of ballot b, at or above our promise: b's owner is
// the leader. A proposer below b has been preempted. It reports false, and changes nothing, for a
// ballot below the leader whose lease this follower is still honouring: a follower that acknowledged
// a heartbeat of 6.5 and then heard 5.4 (promised 5.4 but never 6.5, since a commit notice raises no
// promise) used to take 5.4's owner as its leader again, and then promised that owner's next ballot
// while 6.5's owner served reads on the strength of its acknowledgement (simulator seed 7235).
func (r *Replica) hearFromLeader(b Ballot) bool {
	if b.ID() == r.id {
		return true
	}
	if r.role != follower && b > r.ballot {
		r.preempted(b)
	}
	if r.role == follower {
		if b < r.leaderBallot && r.leader != 0 && r.tick < r.leaderSeenTick+uint64(r.cfg.ElectionTicks) {
			return false
		}
		r.leader, r.leaderBallot = b.ID(), b
		r.leaderSeenTick = r.tick
		r.electionElapsed = 0
		r.preVoting = false
	}
	return true
}

// onCommit handles the leader's heartbeat and commit notice.
func (r *Replica) onCommit(m *Message) {
	current := false
	if m.Ballot < r.promised {
		// A stale leader: tell it, so it raises its ballot or steps down. What it says is chosen
		// is still true, so learn from it anyway.
		r.send(Message{Type: MsgNack, To: m.From, Ballot: r.promised})
	} else if current = r.hearFromLeader(m.Ballot); current {
		r.truncFloor = max(r.truncFloor, m.Slot)
	}
	r.learnCommit(m.Ballot, m.Commit, m.From)
	// Acknowledge a heartbeat only at or above our promise: the acknowledgement renews the sender's
	// lease, and an acceptor that promised a higher ballot may be helping another leader take writes.
	// (The Nack above can be lost or overtaken; the acknowledgement must not depend on it.) Nor does
	// a follower acknowledge a ballot below the leader whose lease it is honouring: one follower's
	// acknowledgements may count towards one lease at a time.
	if m.Stamp != 0 && ((m.Ballot >= r.promised && current) || r.cfg.Mutation == MutAckLowerBallot) {
		r.send(Message{Type: MsgCommitAck, To: m.From, Ballot: m.Ballot, Stamp: m.Stamp,
			Commit: r.commit, Slot: r.released})
	}
}

// learnCommit learns from a leader's chosen prefix C under ballot b. A slot s <= C is chosen, but
// only a vote cast under b is known to hold the chosen value: the leader proposed exactly one value
// per slot under b, and it never announces a prefix covering a slot it proposed under b unless that
// proposal is what was chosen (a leader that learns otherwise steps down first: see learnChosen).
// Slots voted under another ballot are left to catch-up.
func (r *Replica) learnCommit(b Ballot, c uint64, from ReplicaID) {
	r.noteKnownCommit(c, from)
	if b < r.lcBallot || c == 0 {
		return
	}
	if b > r.lcBallot {
		r.lcBallot, r.lcIndex, r.lcScanned = b, 0, r.commit
	}
	r.lcIndex = max(r.lcIndex, c)
	end := min(r.lcIndex, r.log.last())
	for s := max(r.lcScanned, r.commit, r.log.base) + 1; s <= end; s++ {
		if sl := r.log.get(s); sl.has && !sl.chosen && (sl.ballot == b || r.cfg.Mutation == MutLearnOtherBallot) {
			r.markChosen(s, sl)
		}
	}
	r.lcScanned = max(r.lcScanned, end)
	r.advanceCommit()
}

func (r *Replica) noteKnownCommit(c uint64, from ReplicaID) {
	if c > r.knownCommit {
		r.knownCommit, r.knownFrom = c, from
	}
}

// markChosen marks a slot whose current value is known to be chosen.
func (r *Replica) markChosen(s uint64, sl *slot) {
	r.assertf(sl.has && !sl.chosen, "markChosen slot %d has=%v chosen=%v", s, sl.has, sl.chosen)
	sl.chosen = true
	r.retireProposal(sl)
}

// learnChosen records a value some peer knows to be chosen (a promise, a catch-up reply). A leader
// that learns a slot was chosen under a ballot above its own has been superseded: it steps down
// before it can announce a chosen prefix covering a slot where its own proposal lost. Catch-up
// replies beyond the window are ignored (anyDistance false: they are only knowledge, asked for
// again later); a promise's are not, since the proposer must never put a new value over them.
func (r *Replica) learnChosen(e *Entry, anyDistance bool) {
	if e.Slot <= r.commit || e.Slot <= r.log.base || (!anyDistance && e.Slot > r.commit+r.cfg.WindowSlotsMax) {
		return
	}
	sl := r.log.ensure(e.Slot)
	if sl.chosen {
		return
	}
	if r.role != follower && e.Ballot > r.ballot {
		r.preempted(e.Ballot)
	}
	sl.ballot, sl.cmds, sl.has, sl.persisted = e.Ballot, e.Cmds, true, false
	sl.chosen = true
	r.retireProposal(sl)
	r.persistEntry(Entry{Slot: e.Slot, Ballot: e.Ballot, Chosen: true, Cmds: e.Cmds}, false)
}

// advanceCommit extends the chosen prefix over every contiguous chosen slot and releases the newly
// chosen slots to the application, in order.
func (r *Replica) advanceCommit() {
	old := r.commit
	for {
		sl := r.log.get(r.commit + 1)
		if sl == nil || !sl.chosen {
			break
		}
		r.commit++
	}
	if r.commit == old {
		return
	}
	first := len(r.rd.Committed)
	for s := r.released + 1; s <= r.commit; s++ {
		sl := r.log.get(s)
		r.assertf(sl != nil && sl.chosen, "releasing slot %d that is not chosen", s)
		r.rd.Committed = append(r.rd.Committed, Entry{Slot: s, Ballot: sl.ballot, Chosen: true, Cmds: sl.cmds})
	}
	r.released = r.commit
	if r.cfg.Mode == ModeDuel && r.queue.len() > 0 {
		r.pruneQueue(r.rd.Committed[first:])
	}
	r.setChosenTo()
	r.catchupTries = 0
}

// onCatchup serves chosen values to a learner that lacks them, or a snapshot when they are gone.
func (r *Replica) onCatchup(m *Message) {
	from := m.Slot
	if from == 0 {
		return
	}
	if from <= r.log.base {
		r.offerSnapshot(m.From)
		return
	}
	var out []Entry
	bytes := 0
	for s := from; s <= min(m.Commit, r.commit) && bytes < r.cfg.CatchupBytesMax; s++ {
		sl := r.log.get(s)
		e := Entry{Slot: s, Ballot: sl.ballot, Chosen: true, Cmds: sl.cmds}
		bytes += e.Size()
		out = append(out, e)
	}
	r.send(Message{Type: MsgCatchupReply, To: m.From, Commit: r.commit, Entries: out})
}

// offerSnapshot asks the runtime to send a peer the application's snapshot, at most once per
// SnapshotEveryTicks (snapshots are large).
func (r *Replica) offerSnapshot(to ReplicaID) {
	i := r.index(to)
	if r.snapshotSentTick[i] != 0 && r.tick < r.snapshotSentTick[i]+uint64(r.cfg.SnapshotEveryTicks) {
		return
	}
	r.snapshotSentTick[i] = r.tick
	if !slicesContains(r.rd.SendSnapshot, to) {
		r.rd.SendSnapshot = append(r.rd.SendSnapshot, to)
	}
}

func slicesContains(s []ReplicaID, v ReplicaID) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// onCatchupReply learns the chosen values a peer sent.
func (r *Replica) onCatchupReply(m *Message) {
	r.noteKnownCommit(m.Commit, m.From)
	before := r.commit
	for i := range m.Entries {
		if e := &m.Entries[i]; e.Chosen && e.Slot > 0 {
			r.learnChosen(e, false)
			r.metrics.CatchupEntries++
		}
	}
	r.advanceCommit()
	if r.commit > before && r.knownCommit > r.commit {
		r.catchupTick = 0 // progress: ask for the next part at once
		r.requestCatchup()
	}
}

// onSnapshot installs a peer's application snapshot when it is ahead of everything chosen here.
func (r *Replica) onSnapshot(m *Message) {
	if m.Slot <= r.commit || m.Data == nil {
		return
	}
	r.metrics.SnapshotsIn++
	r.rd.Snapshot = &Snapshot{Slot: m.Slot, Data: m.Data}
	if r.cfg.Mutation != MutChosenToBeforeSnapshot {
		r.snapPending = m.Slot // no ChosenTo on disk past it until the application saved it (Compact)
	}
	// Anything not yet applied below the snapshot is covered by it.
	kept := r.rd.Committed[:0]
	for _, e := range r.rd.Committed {
		if e.Slot > m.Slot {
			kept = append(kept, e)
		}
	}
	r.rd.Committed = kept
	r.log.compact(m.Slot)
	r.commit, r.released = m.Slot, m.Slot
	r.lcScanned = max(r.lcScanned, m.Slot)
	r.nextSlot = max(r.nextSlot, m.Slot+1)
	r.recountInflight()
	r.advanceCommit()
	r.setChosenTo()
	r.noteKnownCommit(m.Slot, m.From)
}

// setChosenTo asks the runtime to persist the chosen prefix, unless a peer snapshot below it is not
// durable yet (then Compact persists it once the snapshot is).
func (r *Replica) setChosenTo() {
	if r.snapPending > r.snapSlot {
		r.rd.ChosenTo = 0
		return
	}
	r.rd.ChosenTo = r.commit
}

// tickLearner asks for chosen values this replica lacks, once per ResendTicks while it is behind.
func (r *Replica) tickLearner() {
	if r.knownCommit > r.commit && r.tick >= r.catchupTick+uint64(r.cfg.ResendTicks) {
		r.requestCatchup()
	}
}

// requestCatchup asks a peer for the chosen values between our prefix and the highest one heard of.
// It alternates between the peer that reported that prefix (or the leader) and a random peer, so a
// dead source does not stall the learner.
func (r *Replica) requestCatchup() {
	to := r.knownFrom
	if r.leader != 0 && r.leader != r.id {
		to = r.leader
	}
	if r.catchupTries%2 == 1 || to == r.id || to == 0 {
		to = r.peers[r.rng.IntN(len(r.peers))]
	}
	r.catchupTries++
	r.catchupTick = r.tick
	if to == r.id {
		return
	}
	r.metrics.CatchupsSent++
	r.send(Message{Type: MsgCatchup, To: to, Slot: r.commit + 1, Commit: r.knownCommit})
}

// maybeCompact drops slots covered by the application's durable snapshot and applied everywhere
// live (the floor the leader advertises), and tells the runtime to drop them from disk.
func (r *Replica) maybeCompact() {
	floor := r.truncFloor
	if r.role == leader {
		floor = r.leaderFloor()
	}
	upTo := min(r.snapSlot, floor, r.released)
	if upTo > r.log.base {
		r.log.compact(upTo)
		r.rd.CompactTo = upTo
		r.recountInflight()
	}
}
