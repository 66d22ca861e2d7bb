package paxos

import (
	"math/bits"
	"slices"
)

// This file holds the proposer: elections, phase 1, and phase 2 with batching and pipelining. Its
// behaviour depends on the role, so each role has its own step function for the replies a proposer
// receives; becomeX swaps it.

func (r *Replica) stepFollower(m *Message) {
	// A follower proposes nothing: late promises, accept replies and nacks are for a ballot it gave up.
}

func (r *Replica) stepCandidate(m *Message) {
	switch m.Type {
	case MsgPromise:
		r.onPromise(m)
	case MsgNack:
		r.onNack(m)
	}
}

func (r *Replica) stepLeader(m *Message) {
	switch m.Type {
	case MsgAccepted:
		r.onAccepted(m)
	case MsgCommitAck:
		r.onCommitAck(m)
	case MsgNack:
		r.onNack(m)
	}
}

func (r *Replica) becomeFollower() {
	r.role, r.step = follower, r.stepFollower
	r.ballot = 0
	r.electionElapsed = 0
	r.electionTimeout = r.cfg.ElectionTicks + r.rng.IntN(r.cfg.ElectionTicks)
}

// campaign starts phase 1 under a ballot above every ballot seen or promised. The replica promises
// its own ballot first; prepares to the others leave only once that promise is durable, so a ballot
// is never used unless a restart will start above it.
func (r *Replica) campaign() {
	if !r.mayVote() {
		// Rejoining: a campaign would promise its own ballot and vote for its own proposals.
		r.electionElapsed = 0
		return
	}
	r.abandonProposals()
	round := max(r.promised.Round(), r.maxSeen.Round()) + 1
	if r.cfg.Mutation == MutBallotReuse && r.restarted && r.promised.ID() == r.id {
		round = r.promised.Round() // the planted bug: resume at the persisted ballot
	}
	r.restarted = false
	r.preVoting = false
	r.ballot = MakeBallot(round, r.id)
	r.role, r.step = candidate, r.stepCandidate
	r.promiseAcks, r.p1Max = 0, 0
	r.p1Best = make(map[uint64]Entry)
	r.electionElapsed = 0
	r.electionTimeout = r.cfg.ElectionTicks + r.rng.IntN(r.cfg.ElectionTicks)
	r.metrics.Campaigns++
	if r.ballot > r.promised {
		r.promise(r.ballot)
	}
	r.sendPrepares(true)
}

// sendPrepares sends phase 1a to every peer that has not promised yet (all of them when first).
func (r *Replica) sendPrepares(first bool) {
	r.prepareTick = r.tick
	from := r.commit + 1
	for i, p := range r.peers {
		if r.promiseAcks&(1<<i) != 0 {
			continue
		}
		if p == r.id {
			if first { // our own acceptor answers like any other, through Step, once durable
				r.sendAfterSync(r.promiseMsg(r.id, r.ballot, from))
			}
			continue
		}
		r.sendAfterSync(Message{Type: MsgPrepare, To: p, Ballot: r.ballot, Slot: from})
	}
}

// onPromise is phase 1b at the proposer. Only promises for the current ballot count: a promise for
// an older ballot says nothing about votes cast since.
func (r *Replica) onPromise(m *Message) {
	if m.Ballot != r.ballot && !(r.cfg.Mutation == MutCountStalePromises && m.Ballot < r.ballot) {
		return
	}
	cur := r.ballot
	bit := uint64(1) << r.index(m.From)
	if r.promiseAcks&bit != 0 {
		return
	}
	r.promiseAcks |= bit
	r.heard(m.From)
	r.noteKnownCommit(m.Commit, m.From)
	for i := range m.Entries {
		e := &m.Entries[i]
		switch {
		case e.Slot == 0 || e.Slot <= r.commit:
		case r.cfg.Mutation == MutDropBeyondWindow && e.Slot > r.commit+r.cfg.WindowSlotsMax:
		case e.Chosen:
			r.learnChosen(e, true)
			if r.role != candidate || r.ballot != cur {
				return // learnChosen found a higher ballot chosen: superseded
			}
		default:
			if cur, ok := r.p1Best[e.Slot]; !ok || e.Ballot > cur.Ballot {
				r.p1Best[e.Slot] = *e
			}
			r.p1Max = max(r.p1Max, e.Slot)
		}
	}
	r.advanceCommit()
	if m.Slot > r.commit {
		// The acceptor knows slots up to m.Slot are chosen but left them out (truncated, or over the
		// promise's byte budget). Leading now would mean proposing in slots whose values only that
		// acceptor can tell us: catch up first, then campaign again.
		r.metrics.CampaignsBehind++
		r.noteKnownCommit(m.Slot, m.From)
		r.stepDown()
		if r.cfg.Mode == ModeDuel {
			r.backoffUntil = r.tick + uint64(2*r.cfg.ResendTicks)
		}
		r.requestCatchup()
		return
	}
	if popcount(r.promiseAcks) >= r.quorum {
		r.becomeLeader()
	}
}

// becomeLeader finishes phase 1. Every promise in the quorum had its floor at or below our chosen
// prefix (onPromise), so together they reported every vote and every chosen value above it: chosen
// values were learned, and every other slot up to the highest one known is re-proposed with the
// value of its highest-ballot vote among the promises (P2c), or a no-op when nobody in the quorum
// voted in it. Only then do new commands get slots, and only once all of those are chosen again may
// the leader serve lease reads (readFence): any of them may have been chosen and acknowledged by an
// earlier leader.
func (r *Replica) becomeLeader() {
	r.role, r.step = leader, r.stepLeader
	r.leader = r.id
	r.metrics.Elected++
	from := r.commit + 1
	// top covers every slot this replica knows anything about, chosen values learned from the
	// promises and its own votes included: new commands must go above all of them, and every open
	// slot below must be filled, or the log would keep a hole for ever.
	top := max(r.p1Max, r.commit, r.log.last())
	r.startSlot = from
	for s := from; s <= top; s++ {
		if sl := r.log.get(s); sl != nil && sl.chosen {
			continue
		}
		var cmds []Command
		if e, ok := r.p1Best[s]; ok && r.cfg.Mutation != MutNoRepropose {
			cmds = e.Cmds
		}
		r.proposeSlot(s, cmds, false)
	}
	r.readFence = top
	r.nextSlot = top + 1
	r.p1Best = nil
	for i := range r.peers {
		r.lastHeard[i], r.ackStamp[i] = r.tick, 0
	}
	r.leaderSeenTick = r.tick
	r.heartbeatElapsed = 0
	r.broadcastCommit(r.tick) // announce leadership at once, and start the lease
}

// proposeSlot is phase 2a for one slot: send the accept to every other acceptor at once, and vote
// for it ourselves (our vote, like any other, is counted when its Accepted comes back after sync).
//
// Invariants relied on here (P2c's preconditions): only the ballot's owner proposes, after winning
// phase 1, above the chosen prefix, in a slot not known chosen, and at most once per ballot; new
// commands (own) go only above every slot phase 1 told us about.
func (r *Replica) proposeSlot(s uint64, cmds []Command, own bool) {
	r.assertf(r.role == leader && r.ballot.ID() == r.id, "proposing in slot %d without leading", s)
	r.assertf(s > r.commit && s > r.log.base, "proposing in slot %d at or below the chosen prefix", s)
	r.assertf(!own || s > r.readFence, "new commands proposed in slot %d at or below the phase-1 top %d", s, r.readFence)
	sl := r.log.ensure(s)
	r.assertf(!sl.chosen, "proposing in slot %d, known chosen", s)
	r.assertf(sl.propBallot != r.ballot, "slot %d proposed twice under ballot %v", s, r.ballot)
	bytes := 24
	for i := range cmds {
		bytes += cmds[i].Size()
	}
	sl.propBallot, sl.prop, sl.propBytes, sl.acks, sl.sentTick, sl.own, sl.resent = r.ballot, cmds, bytes, 0, r.tick, own, false
	r.inflightSlots++
	r.inflightBytes += bytes
	r.metrics.ProposedSlots++
	r.metrics.ProposedCmds += uint64(len(cmds))
	entries := []Entry{{Slot: s, Ballot: r.ballot, Cmds: cmds}} // shared, read-only, by every message
	for _, p := range r.peers {
		if p != r.id {
			r.send(Message{Type: MsgAccept, To: p, Ballot: r.ballot, Commit: r.commit, Entries: entries})
		}
	}
	r.commitSent = max(r.commitSent, r.commit)
	r.vote(s, r.ballot, cmds, r.id)
}

// maybePropose cuts queued commands into slots while the pipeline has room. Batches are as large as
// BatchBytesMax allows, so under load commands queue while earlier slots are in flight and then
// share one slot: batching without a timer, and no added latency when idle.
func (r *Replica) maybePropose() {
	for r.queue.len() > 0 && r.inflightSlots < r.cfg.InflightSlotsMax && r.inflightBytes < r.cfg.InflightBytesMax &&
		r.nextSlot <= r.commit+r.cfg.WindowSlotsMax { // acceptors ignore accepts beyond their window
		cmds := r.queue.take(r.cfg.BatchBytesMax)
		r.proposeSlot(r.nextSlot, cmds, true)
		r.nextSlot++
	}
}

// onAccepted is phase 2b at the leader: a majority of votes for our proposal chooses it.
func (r *Replica) onAccepted(m *Message) {
	if m.Ballot != r.ballot {
		return
	}
	r.heard(m.From)
	sl := r.log.get(m.Slot)
	if sl == nil || sl.chosen || sl.propBallot != r.ballot {
		return
	}
	if !sl.resent && sl.acks&(1<<r.index(m.From)) == 0 {
		// Karn's rule: a proposal that was resent says nothing sure about the round trip (the
		// reply may answer either send). Sampling such proposals from their first send made the
		// estimate feed on its own resend waits: simulator seed 18492 (a window of 3 slots, so
		// every accept beyond it must be resent) then recovered too slowly to converge.
		r.sampleAcceptRTT(r.tick - sl.sentTick)
	}
	sl.acks |= 1 << r.index(m.From)
	if sl.ackCount() < r.quorum {
		return
	}
	if !(sl.has && sl.ballot == r.ballot) {
		// Our own vote is not what was chosen (it is counted only if cast): record the value.
		r.persistEntry(Entry{Slot: m.Slot, Ballot: r.ballot, Chosen: true, Cmds: sl.prop}, false)
	}
	sl.ballot, sl.cmds, sl.has = r.ballot, sl.prop, true
	sl.chosen = true
	r.retireProposal(sl)
	r.metrics.ChosenSlots++
	r.preemptions = 0
	r.advanceCommit()
}

// retireProposal forgets our proposal for a slot that is now decided, freeing pipeline room.
func (r *Replica) retireProposal(sl *slot) {
	if sl.prop != nil || sl.propBallot != 0 {
		if sl.propBallot == r.ballot && r.ballot != 0 {
			r.inflightSlots--
			r.inflightBytes -= sl.propBytes
		}
		sl.prop, sl.propBallot, sl.propBytes, sl.acks, sl.own = nil, 0, 0, 0, false
	}
}

// abandonProposals gives up our open proposals (on losing or re-running phase 1). Their commands go
// back to the front of the queue: they may still be chosen in their old slot, and then also in a new
// one, which the state machine's (client, seq) de-duplication makes harmless; dropping them instead
// would leave their clients waiting for a timeout.
func (r *Replica) abandonProposals() {
	var back []Command
	for s := max(r.commit, r.log.base) + 1; s <= r.log.last(); s++ {
		sl := r.log.get(s)
		if sl.propBallot == 0 {
			continue
		}
		if !sl.chosen && sl.own {
			back = append(back, sl.prop...)
		}
		sl.prop, sl.propBallot, sl.propBytes, sl.acks, sl.own = nil, 0, 0, 0, false
	}
	r.inflightSlots, r.inflightBytes = 0, 0
	r.queue.pushFront(back)
}

// pruneQueue drops queued commands that were just chosen (ModeDuel). Without it, a command whose
// client retried at several proposers sits in every one of their queues and is proposed again by
// each, one slot per leadership stint, long after it was applied. (ModeLeader needs none of this: a
// follower forwards its queue at once and the leader's drains into slots as fast as it can.)
func (r *Replica) pruneQueue(chosen []Entry) {
	done := make(map[[2]uint64]struct{})
	for i := range chosen {
		for _, c := range chosen[i].Cmds {
			done[[2]uint64{c.ClientID, c.Seq}] = struct{}{}
		}
	}
	r.queue.filter(func(c *Command) bool {
		_, ok := done[[2]uint64{c.ClientID, c.Seq}]
		return !ok
	})
}

// recountInflight recomputes the pipeline occupancy after slots vanished under a snapshot.
func (r *Replica) recountInflight() {
	r.inflightSlots, r.inflightBytes = 0, 0
	for s := max(r.commit, r.log.base) + 1; s <= r.log.last(); s++ {
		if sl := r.log.get(s); sl.propBallot == r.ballot && r.ballot != 0 && !sl.chosen {
			r.inflightSlots++
			r.inflightBytes += sl.propBytes
		}
	}
}

// onNack: an acceptor promised a ballot above ours.
func (r *Replica) onNack(m *Message) {
	if m.Ballot <= r.ballot {
		return // about an older ballot of ours
	}
	if r.cfg.Mode == ModeLeader && r.role == leader {
		// One acceptor (a returning candidate, say) is above us. Re-run phase 1 above it rather
		// than step down: followers in our lease will promise, and the cluster keeps its leader.
		r.metrics.Preempted++
		r.campaign()
		return
	}
	r.preempted(m.Ballot)
}

// preempted: a ballot above ours exists. In ModeLeader the replica follows and lets its election
// timer decide; in ModeDuel a proposer with commands waiting tries again: at once (the naive
// proposer of "Paxos Made Simple", which can livelock), or after a random exponential backoff. The
// backoff grows with every preemption and resets only when one of our own proposals is chosen:
// winning phase 1 is not progress when the next proposer preempts us before phase 2 completes.
func (r *Replica) preempted(higher Ballot) {
	r.metrics.Preempted++
	r.stepDown()
	if r.cfg.Mode != ModeDuel || r.queue.len() == 0 {
		return
	}
	if !r.cfg.Backoff {
		r.campaign()
		return
	}
	r.preemptions++
	limit := min(r.cfg.BackoffMaxTicks, r.cfg.BackoffBaseTicks<<min(r.preemptions, 20))
	r.backoffUntil = r.tick + 1 + uint64(r.rng.IntN(limit))
}

// stepDown abandons leadership or candidacy.
func (r *Replica) stepDown() {
	r.metrics.StepDowns++
	r.abandonProposals()
	if r.leader == r.id {
		r.leader = 0
	}
	r.becomeFollower()
}

// onCommitAck records a follower's heartbeat reply: liveness, lease, and how far it has applied.
func (r *Replica) onCommitAck(m *Message) {
	if m.Ballot != r.ballot {
		return
	}
	i := r.heard(m.From)
	r.ackStamp[i] = max(r.ackStamp[i], m.Stamp)
	r.peerApplied[i] = max(r.peerApplied[i], m.Slot)
	r.noteKnownCommit(m.Commit, m.From)
}

// heard notes a reply at our ballot from a peer (for the leader's quorum check) and returns its index.
func (r *Replica) heard(id ReplicaID) int {
	i := r.index(id)
	r.lastHeard[i] = r.tick
	return i
}

// onForward takes commands a follower forwarded. Only a leader proposes them; a replica that is no
// longer leader drops them rather than forward again (two replicas that each think the other leads
// would bounce them for ever); their clients retry.
func (r *Replica) onForward(m *Message) {
	if r.cfg.Mode != ModeLeader {
		return
	}
	if r.role != leader || r.Propose(m.Cmds) != nil {
		r.metrics.Dropped += uint64(len(m.Cmds))
		r.rd.Dropped = append(r.rd.Dropped, m.Cmds...)
	}
}

// forwardQueue sends a follower's queued commands to the leader it knows of (ModeLeader), and
// remembers them for a while: if that leader dies before proposing them, they are forwarded again
// to the next one (see reforward) instead of waiting for their clients to time out.
func (r *Replica) forwardQueue() {
	if r.queue.len() == 0 || r.leader == 0 || r.leader == r.id {
		return
	}
	bytes := r.queue.bytes
	cmds := r.queue.drain()
	r.metrics.Forwarded += uint64(len(cmds))
	r.send(Message{Type: MsgForward, To: r.leader, Cmds: cmds})
	r.fwd = append(r.fwd, fwdBatch{r.tick, cmds})
	r.fwdBytes += bytes
	r.fwdTerm = r.leaderTerm()
	r.expireForwarded()
}

// leaderTerm is the ballot under which the known leader leads (0 when none is known). A leader
// that lost its leadership and won it again has the same id and a new term: what it held in the
// old one (its queue, forwards that reached it meanwhile) is gone.
func (r *Replica) leaderTerm() Ballot {
	switch r.leader {
	case 0:
		return 0
	case r.id:
		return r.ballot
	}
	return r.leaderBallot
}

// reforward runs when the leader's term changed since commands were forwarded (another leader, or
// the same one elected again): they may have died with the old term, so they go to the new one (or
// into our own queue if we lead now). A command that was chosen after all is chosen twice, which
// the state machine's (client, seq) de-duplication absorbs.
func (r *Replica) reforward() {
	if len(r.fwd) == 0 || r.leader == 0 || r.leaderTerm() == r.fwdTerm {
		return
	}
	var cmds []Command
	for _, b := range r.fwd {
		cmds = append(cmds, b.cmds...)
	}
	r.metrics.Reforwarded += uint64(len(cmds))
	r.fwd, r.fwdBytes = nil, 0
	if r.leader == r.id {
		if r.Propose(cmds) != nil {
			r.metrics.Dropped += uint64(len(cmds))
		}
		return
	}
	r.queue.pushFront(cmds)
}

// expireForwarded forgets forwarded commands once the leader they went to has led for two election
// timeouts since (by then it proposed them, or their clients gave up), and keeps the memory they
// hold under QueueBytesMax. While that leader is not (or no longer known to be) the leader they are
// kept whatever their age: a failover takes longer than an election timeout, and the commands are
// needed exactly when it ends.
func (r *Replica) expireForwarded() {
	horizon := uint64(2 * r.cfg.ElectionTicks)
	aged := func(b fwdBatch) bool { return r.leaderTerm() == r.fwdTerm && b.tick+horizon < r.tick }
	n := 0
	for n < len(r.fwd) && (aged(r.fwd[n]) || r.fwdBytes > r.cfg.QueueBytesMax) {
		for i := range r.fwd[n].cmds {
			r.fwdBytes -= r.fwd[n].cmds[i].Size()
		}
		n++
	}
	if n > 0 {
		clear(r.fwd[:n])
		r.fwd = r.fwd[n:]
	}
}

// broadcastCommit tells every follower the chosen prefix and the truncation floor. A non-zero stamp
// makes it a heartbeat: followers acknowledge it, which renews the leader's lease.
func (r *Replica) broadcastCommit(stamp uint64) {
	floor := r.leaderFloor()
	for _, p := range r.peers {
		if p != r.id {
			r.send(Message{Type: MsgCommit, To: p, Ballot: r.ballot, Commit: r.commit, Stamp: stamp, Slot: floor})
		}
	}
	r.commitSent = r.commit
}

// leaderFloor is the slot every replica heard from recently has applied: below it the log may be
// truncated. A replica silent for long is left out; it will need a snapshot when it returns.
func (r *Replica) leaderFloor() uint64 {
	floor := r.released
	horizon := uint64(r.cfg.TruncateSilentTicks)
	for i := range r.peers {
		if i != r.self && r.tick < r.lastHeard[i]+horizon {
			floor = min(floor, r.peerApplied[i])
		}
	}
	return floor
}

func (r *Replica) tickLeader() {
	r.heartbeatElapsed++
	if r.heartbeatElapsed >= r.cfg.HeartbeatTicks {
		r.heartbeatElapsed = 0
		r.broadcastCommit(r.tick)
	}
	r.resendAccepts()
	if !r.quorumRecentlyHeard() {
		r.stepDown() // partitioned from a majority: stop holding clients' commands
		return
	}
	r.leaderSeenTick = r.tick
}

// resendAccepts repeats accepts that have waited ResendTicks without a majority, to the acceptors
// that have not answered: messages can be lost. The timeout is fixed. (Under a large-value burst
// acceptors are slow rather than lossy, and this resent about six accepts per proposal, issue 12;
// timeouts that back off or follow the measured round trip cut that to a twentieth but made the
// simulator's seeds 342, 8756 and 18492 recover from loss too slowly to converge in time, so they
// wait for a way to tell a lost accept from a slow acceptor. The round trip is measured meanwhile,
// see sampleAcceptRTT, and shown in /metrics.)
func (r *Replica) resendAccepts() {
	for s := max(r.commit, r.log.base) + 1; s < r.nextSlot && s <= r.log.last(); s++ {
		sl := r.log.get(s)
		if sl.propBallot != r.ballot || sl.chosen || r.tick < sl.sentTick+uint64(r.cfg.ResendTicks) {
			continue
		}
		sl.sentTick = r.tick
		sl.resent = true
		entries := []Entry{{Slot: s, Ballot: r.ballot, Cmds: sl.prop}}
		for i, p := range r.peers {
			if p != r.id && sl.acks&(1<<i) == 0 {
				r.metrics.ResentAccepts++
				r.send(Message{Type: MsgAccept, To: p, Ballot: r.ballot, Commit: r.commit, Entries: entries})
			}
		}
	}
}

// sampleAcceptRTT folds one accept round trip (ticks) into the smoothed estimate, as TCP's SRTT:
// an exponentially weighted average with gain 1/8, kept in eighths of a tick.
func (r *Replica) sampleAcceptRTT(ticks uint64) {
	sample := min(ticks, 1<<20) << 3
	if r.srtt8 == 0 {
		r.srtt8 = max(sample, 1)
		return
	}
	r.srtt8 = max(r.srtt8-r.srtt8/8+sample/8, 1)
}

// quorumRecentlyHeard says a majority (counting ourselves) answered within two election timeouts.
func (r *Replica) quorumRecentlyHeard() bool {
	n := 0
	for i := range r.peers {
		if i == r.self || r.tick < r.lastHeard[i]+uint64(2*r.cfg.ElectionTicks) {
			n++
		}
	}
	return n >= r.quorum
}

func (r *Replica) tickCandidate() {
	r.electionElapsed++
	if r.electionElapsed >= r.electionTimeout {
		r.campaign() // phase 1 stalled: try again with a higher ballot
		return
	}
	if r.tick >= r.prepareTick+uint64(r.cfg.ResendTicks) {
		r.sendPrepares(false)
	}
}

func (r *Replica) tickFollower() {
	if len(r.fwd) > 0 {
		r.expireForwarded()
	}
	if r.cfg.Mode == ModeDuel {
		return // dueling proposers campaign when they have commands (see settle), not on timeouts
	}
	r.electionElapsed++
	if r.electionElapsed >= r.electionTimeout && r.tick >= r.quietUntil && r.mayVote() {
		r.leader = 0
		if r.cfg.PreVote {
			r.startPreVote()
			return
		}
		r.campaign()
		return
	}
	if r.preVoting && r.tick >= r.preVoteTick+uint64(r.cfg.ResendTicks) {
		r.sendPreVotes() // asks can be lost, and a voter's lease may have run out since
	}
}

// startPreVote begins a pre-vote round: nothing durable changes and no ballot is raised, so a
// replica that merely lost touch with a live leader disturbs nobody. It campaigns only once a
// majority (itself included) grants; otherwise it asks again, and starts a new round when its
// election timer runs out again.
func (r *Replica) startPreVote() {
	r.preVoting = true
	r.preVoteRound++
	r.preVoteAcks = 1 << r.self
	r.electionElapsed = 0
	r.electionTimeout = r.cfg.ElectionTicks + r.rng.IntN(r.cfg.ElectionTicks)
	r.metrics.PreVotes++
	if r.quorum <= 1 {
		r.preVoting = false
		r.campaign()
		return
	}
	r.sendPreVotes()
}

// sendPreVotes asks every peer that has not granted this round yet.
func (r *Replica) sendPreVotes() {
	r.preVoteTick = r.tick
	for i, p := range r.peers {
		if r.preVoteAcks&(1<<i) == 0 {
			r.send(Message{Type: MsgPreVote, To: p, Stamp: r.preVoteRound, Commit: r.commit})
		}
	}
}

// onPreVote answers a pre-vote: granted unless this replica heard from a live leader within
// ElectionTicks (or is in its quiet period after a start: leaseProtects, the same rule that refuses
// prepares) or the asker's chosen prefix is far below ours. It changes no state: a refusal is
// silent, and a grant promises nothing.
func (r *Replica) onPreVote(m *Message) {
	if r.cfg.Mode != ModeLeader {
		return
	}
	// The asker's chosen prefix: a replica far behind learns here that it is, and from whom to
	// catch up. Without it, a far-behind replica that alone still reached a majority (OmniPaxos'
	// constrained election) was refused every pre-vote and never learned why: no leader for good.
	r.noteKnownCommit(m.Commit, m.From)
	if r.leaseProtects(m.From) || (r.commit > m.Commit && r.commit-m.Commit > r.cfg.PreVoteBehindSlotsMax) {
		r.metrics.PreVoteRefusals++
		return
	}
	r.metrics.PreVoteGrants++
	r.send(Message{Type: MsgPreVoteOK, To: m.From, Stamp: m.Stamp})
}

// onPreVoteOK counts a grant of the current round; a majority starts the campaign.
func (r *Replica) onPreVoteOK(m *Message) {
	if !r.preVoting || r.role != follower || m.Stamp != r.preVoteRound {
		return
	}
	r.preVoteAcks |= 1 << r.index(m.From)
	if bits.OnesCount64(r.preVoteAcks) >= r.quorum {
		r.campaign()
	}
}

// ReadIndex says whether this replica may serve a linearizable read from its own state, and after
// which slot: it must be the leader, hold a lease (a majority acknowledged a heartbeat sent less than
// ElectionTicks-LeaseDriftTicks ago, and those followers refuse other proposers until ElectionTicks
// after they acknowledged), and know every slot earlier leaders may have had chosen. The caller
// serves the read once it has applied through the returned slot.
func (r *Replica) ReadIndex() (uint64, bool) {
	if r.cfg.Mode != ModeLeader || r.role != leader {
		return 0, false
	}
	if r.commit < r.readFence && r.cfg.Mutation != MutLeaseNoFence {
		return 0, false // a slot an earlier leader may have had chosen is not chosen again yet
	}
	var buf [64]uint64 // at most 64 peers (Config.validate): no allocation per read
	stamps := buf[:0]
	for i := range r.peers {
		if i == r.self {
			stamps = append(stamps, r.tick)
		} else {
			stamps = append(stamps, r.ackStamp[i])
		}
	}
	slices.Sort(stamps)
	granted := stamps[len(stamps)-r.quorum] // the newest stamp a majority has acknowledged
	if granted == 0 || r.tick >= granted+uint64(r.cfg.ElectionTicks-r.cfg.LeaseDriftTicks) {
		return 0, false
	}
	r.assertf(r.commit >= r.readFence || r.cfg.Mutation == MutLeaseNoFence,
		"lease read granted at commit %d below the re-proposal fence %d", r.commit, r.readFence)
	return r.commit, true
}

func popcount(x uint64) int {
	n := 0
	for ; x != 0; x &= x - 1 {
		n++
	}
	return n
}
