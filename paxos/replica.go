package paxos

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
)

// role is what the replica's proposer is doing; acceptor and learner behave the same in every role.
type role uint8

const (
	follower role = iota
	candidate
	leader
)

func (r role) String() string { return [...]string{"follower", "candidate", "leader"}[r] }

// ErrBusy is returned by Propose when the command queue is full: the caller should refuse the
// client (backpressure) rather than buffer without bound.
var ErrBusy = errors.New("paxos: proposal queue full")

// Replica is one member of a Multi-Paxos group: proposer, acceptor and learner in one value. It is
// not safe for concurrent use: exactly one goroutine (the runtime's loop, or the simulator) owns it.
type Replica struct {
	cfg    Config
	id     ReplicaID
	peers  []ReplicaID // sorted; bit i of every peer bitmask is peers[i]
	self   int
	quorum int
	rng    *rand.Rand
	tick   uint64 // starts at 1 so a heartbeat stamp is never 0

	role role
	step func(*Message) // the current role's handler for proposer-side messages

	// Acceptor. Invariant: promised only grows; a reply vouching for it leaves only after it is durable.
	promised Ballot

	// Learner. Invariants: released <= commit; every slot <= commit is chosen (its value is in the
	// log, or it is at or below log.base and covered by the application's snapshot).
	log          slotLog
	commit       uint64
	released     uint64
	snapSlot     uint64 // the application's durable snapshot covers slots up to here
	truncFloor   uint64 // the leader says every live replica has applied up to here
	lcBallot     Ballot // commit notices are trusted per ballot: see learnCommit
	lcIndex      uint64
	lcScanned    uint64
	knownCommit  uint64 // highest chosen prefix any peer reported
	knownFrom    ReplicaID
	catchupTick  uint64
	catchupTries int

	// Proposer.
	maxSeen     Ballot // highest ballot seen anywhere: a new round starts above it
	ballot      Ballot // current campaign or leadership ballot; 0 as a follower
	leader      ReplicaID
	restarted   bool // built from a Durable; only MutBallotReuse looks at it
	promiseAcks uint64
	p1Best      map[uint64]Entry
	p1Max       uint64
	prepareTick uint64
	// Pre-vote (Config.PreVote): a follower asking whether it could win, before raising a ballot.
	preVoting    bool
	preVoteRound uint64 // the Stamp of this round's asks; replies to older rounds are ignored
	preVoteAcks  uint64
	preVoteTick  uint64
	srtt8        uint64 // smoothed accept round trip, in eighths of a tick (0: no sample yet)
	startSlot    uint64 // first slot this leadership proposed in
	// readFence is the highest slot the leader re-proposed on winning phase 1: a slot an earlier
	// leader may have had chosen, applied and acknowledged. Invariant: ReadIndex grants no lease
	// read while commit < readFence (the Paxos form of Raft's "commit an entry of your own term").
	readFence     uint64
	nextSlot      uint64
	queue         cmdQueue   // commands waiting for a slot or a leader, one FIFO per client
	fwd           []fwdBatch // commands forwarded recently, re-forwarded if the leader's term changes
	fwdBytes      int
	fwdTerm       Ballot // the ballot under which the leader fwd was last sent to led
	inflightSlots int
	inflightBytes int
	commitSent    uint64

	heartbeatElapsed int
	electionElapsed  int
	electionTimeout  int
	leaderSeenTick   uint64 // follower: last tick the leader was heard (the lease it granted)
	leaderBallot     Ballot // follower: the ballot under which it last heard the leader
	// quietUntil (ModeLeader): until this tick the replica promises nobody, itself included. Every
	// replica starts quiet for a lease term, because leaderSeenTick lives in memory only: a replica
	// that acknowledged a heartbeat and restarted at once would otherwise promise the next candidate
	// while the old leader still serves reads on the strength of that acknowledgement.
	quietUntil uint64
	// snapPending is the slot of the newest peer snapshot handed to the application and not yet
	// reported durable (Compact). Invariant: no Ready carries a ChosenTo while snapPending > snapSlot,
	// since on disk the slots below the snapshot still hold plain votes, some of ballots that lost.
	snapPending      uint64
	lastHeard        []uint64 // leader: by peer index, last tick a reply at our ballot arrived
	ackStamp         []uint64 // leader: by peer index, newest heartbeat stamp acknowledged
	peerApplied      []uint64 // leader: by peer index, the applied slot each last reported
	snapshotSentTick []uint64 // by peer index, rate-limits snapshots
	preemptions      int      // consecutive preemptions, for exponential backoff
	backoffUntil     uint64   // ModeDuel: no new phase 1 before this tick

	rd      Ready
	metrics Metrics
}

// fwdBatch is commands a follower forwarded at some tick.
type fwdBatch struct {
	tick uint64
	cmds []Command
}

// Metrics counts protocol events since the replica was created; the bench reports them.
// The JSON names are /status's snake_case.
type Metrics struct {
	Campaigns       uint64 `json:"campaigns"`      // phase 1 started
	Elected         uint64 `json:"elected"`        // phase 1 won
	Preempted       uint64 `json:"preempted"`      // ballots abandoned because a higher one appeared
	ProposedSlots   uint64 `json:"proposed_slots"` // slots this replica proposed (re-proposals and no-ops included)
	ProposedCmds    uint64 `json:"proposed_cmds"`
	ChosenSlots     uint64 `json:"chosen_slots"` // slots this replica saw chosen by its own majority
	ResentAccepts   uint64 `json:"resent_accepts"`
	Forwarded       uint64 `json:"forwarded"`   // commands forwarded to the leader
	Reforwarded     uint64 `json:"reforwarded"` // commands forwarded again because the leader changed
	Dropped         uint64 `json:"dropped"`     // commands given up (queue full at a forward, non-leader got a forward)
	CatchupsSent    uint64 `json:"catchups_sent"`
	CatchupEntries  uint64 `json:"catchup_entries"` // chosen values learned from catch-up replies
	SnapshotsIn     uint64 `json:"snapshots_in"`
	LeaseRefusals   uint64 `json:"lease_refusals"` // prepares ignored to honour a lease granted to the leader
	StepDowns       uint64 `json:"step_downs"`
	CampaignsBehind uint64 `json:"campaigns_behind"`  // campaigns abandoned to catch up first: a promise's floor was above our prefix
	PreVotes        uint64 `json:"pre_votes"`         // pre-vote rounds started (an election timer ran out)
	PreVoteGrants   uint64 `json:"pre_vote_grants"`   // pre-votes this replica granted
	PreVoteRefusals uint64 `json:"pre_vote_refusals"` // pre-votes refused: a leader is alive, or the asker is far behind
	RejoinIgnored   uint64 `json:"rejoin_ignored"`    // prepares and accepts left unanswered while rejoining (VoteFromCommit)
	IgnoredMessages uint64 `json:"ignored_messages"`  // malformed or from an unknown sender
}

// New builds a replica. d is the durable state read back from disk (nil for a brand-new replica);
// the replica takes ownership of its entries.
func New(cfg Config, d *Durable) (*Replica, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	r := &Replica{cfg: cfg, id: cfg.ID, tick: 1}
	r.peers = slices.Clone(cfg.Peers)
	slices.Sort(r.peers)
	r.self = slices.Index(r.peers, cfg.ID)
	r.quorum = len(r.peers)/2 + 1
	r.rng = rand.New(rand.NewPCG(cfg.Seed, uint64(cfg.ID)))
	n := len(r.peers)
	r.lastHeard, r.ackStamp = make([]uint64, n), make([]uint64, n)
	r.peerApplied, r.snapshotSentTick = make([]uint64, n), make([]uint64, n)
	r.becomeFollower()
	if cfg.Mode == ModeLeader && cfg.Mutation != MutNoRestartQuiet {
		r.quietUntil = r.tick + uint64(cfg.ElectionTicks+cfg.LeaseDriftTicks)
	}
	if d != nil {
		if err := r.restore(d); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// ErrDurable is returned by New when the durable state read back from disk is inconsistent.
var ErrDurable = errors.New("paxos: inconsistent durable state")

// restore loads durable state: the promise, every persisted slot, and the chosen prefix, then
// releases the chosen slots the application has not applied yet. Every durable vote is kept, however
// far above the snapshot it lies: an acceptor that forgets a vote it acknowledged breaks Paxos. (Votes
// can lie more than a window above the snapshot: with snapshots off, or after a crash while a peer's
// snapshot was being saved.)
func (r *Replica) restore(d *Durable) error {
	r.restarted = true
	r.promised, r.maxSeen = d.Promised, d.Promised
	r.log.base, r.commit, r.released, r.snapSlot = d.Applied, d.Applied, d.Applied, d.Applied
	last := d.Applied
	for i := range d.Entries {
		e := &d.Entries[i]
		if e.Slot <= d.Applied {
			continue
		}
		if e.Slot <= last {
			return fmt.Errorf("%w: slot %d after slot %d", ErrDurable, e.Slot, last)
		}
		last = e.Slot
		if r.cfg.Mutation == MutDropBeyondWindow && e.Slot > d.Applied+r.cfg.WindowSlotsMax {
			continue
		}
		s := r.log.ensure(e.Slot)
		s.ballot, s.cmds, s.has, s.persisted = e.Ballot, e.Cmds, true, !e.Chosen
		s.chosen = e.Chosen || e.Slot <= d.ChosenTo
	}
	r.advanceCommit()
	return nil
}

// Status is a snapshot of the replica's externally interesting state, for /status and tests.
type Status struct {
	ID        ReplicaID
	Role      string
	Ballot    Ballot // current proposer ballot (0 when following)
	Promised  Ballot
	Leader    ReplicaID
	Commit    uint64 // chosen prefix
	Released  uint64 // handed to the application
	LogBase   uint64 // compacted up to here
	LogLast   uint64
	Inflight  int
	QueueLen  int
	Tick      uint64
	LeaseHeld bool
	// AcceptRTT8 is the smoothed accept round trip, in eighths of a tick (0: not measured yet);
	// the leader's accept retransmission timeout follows it.
	AcceptRTT8 uint64
	// Voting is false while the replica rejoins as a learner (commit below VoteFromCommit).
	Voting  bool
	Metrics Metrics
}

// Status reports the replica's current state.
func (r *Replica) Status() Status {
	_, lease := r.ReadIndex()
	return Status{
		ID: r.id, Role: r.role.String(), Ballot: r.ballot, Promised: r.promised, Leader: r.leader,
		Commit: r.commit, Released: r.released, LogBase: r.log.base, LogLast: r.log.last(),
		Inflight: r.inflightSlots, QueueLen: r.queue.len(), Tick: r.tick, LeaseHeld: lease,
		AcceptRTT8: r.srtt8, Voting: r.mayVote(), Metrics: r.metrics,
	}
}

// Step hands the replica one message from a peer (or from itself: AfterSync replies addressed to
// the replica's own id come back through Step). Malformed messages are counted and ignored; nothing
// a peer sends can make Step panic.
func (r *Replica) Step(m *Message) {
	if !r.wellFormed(m) {
		r.metrics.IgnoredMessages++
		return
	}
	if m.Ballot > r.maxSeen {
		r.maxSeen = m.Ballot
	}
	switch m.Type {
	case MsgPrepare:
		r.onPrepare(m)
	case MsgAccept:
		r.onAccept(m)
	case MsgCommit:
		r.onCommit(m)
	case MsgCatchup:
		r.onCatchup(m)
	case MsgCatchupReply:
		r.onCatchupReply(m)
	case MsgSnapshot:
		r.onSnapshot(m)
	case MsgForward:
		r.onForward(m)
	case MsgPreVote:
		r.onPreVote(m)
	case MsgPreVoteOK:
		r.onPreVoteOK(m)
	default:
		r.step(m) // Promise, Accepted, Nack, CommitAck: meaningful only to some roles
	}
	r.settle()
}

// wellFormed checks what the handlers rely on: a known sender, a ballot owned by a known replica,
// and the shape each type needs.
func (r *Replica) wellFormed(m *Message) bool {
	if !m.Type.Valid() || r.index(m.From) < 0 || (m.To != r.id && m.To != 0) {
		return false
	}
	if m.Ballot != 0 && r.index(m.Ballot.ID()) < 0 {
		return false
	}
	switch m.Type {
	case MsgPrepare, MsgAccept, MsgCommit:
		if m.Ballot.ID() != m.From {
			return false // only a ballot's owner may prepare, propose or lead under it
		}
	}
	if m.Type == MsgAccept && (len(m.Entries) != 1 || m.Entries[0].Slot == 0) {
		return false
	}
	return true
}

// index is the position of id in peers, or -1.
func (r *Replica) index(id ReplicaID) int {
	for i, p := range r.peers {
		if p == id {
			return i
		}
	}
	return -1
}

// Tick advances the replica's clock by one tick: heartbeats, resends, elections, catch-up requests.
func (r *Replica) Tick() {
	r.tick++
	switch r.role {
	case leader:
		r.tickLeader()
	case candidate:
		r.tickCandidate()
	default:
		r.tickFollower()
	}
	r.tickLearner()
	r.settle()
}

// Propose queues client commands. The replica keeps references to the commands (and their keys and
// values) until they are chosen or dropped. Which replica answers the client is the runtime's
// business: every replica applies every chosen command, so the one the client called answers it.
func (r *Replica) Propose(cmds []Command) error {
	size := 0
	for i := range cmds {
		size += cmds[i].Size()
	}
	if r.queue.bytes+size > r.cfg.QueueBytesMax {
		return ErrBusy
	}
	r.queue.push(cmds)
	r.settle()
	return nil
}

// Ready returns everything the outside world must do since the last call, and starts collecting
// anew. It only collects: every protocol decision (proposing, forwarding, campaigning) was taken by
// Step, Tick, Propose or Compact. The one thing it adds is the commit notice a leader owes its
// followers for slots chosen since the last one it sent: one notice per batch of inputs instead of
// one per accept reply, and it changes no protocol state but what was announced.
func (r *Replica) Ready() Ready {
	if r.role == leader && r.commit > r.commitSent {
		r.broadcastCommit(0)
	}
	rd := r.rd
	rd.Leader = r.leader
	r.rd = Ready{}
	r.assertf(rd.MustSync || (rd.Promised == 0 && !hasVote(rd.Entries)),
		"a promise or vote to persist without MustSync: its reply could leave before it is durable")
	return rd
}

func hasVote(entries []Entry) bool {
	for i := range entries {
		if !entries[i].Chosen {
			return true
		}
	}
	return false
}

// Advance tells the replica the Ready it returned has been handled. It exists for the Ready/Advance
// contract; the replica keeps no reference to a returned Ready, so it has nothing to undo.
func (r *Replica) Advance(rd *Ready) {}

// Compact tells the replica the application has a durable snapshot through slot: slots up to it
// (and up to what every live replica has applied) may leave memory and disk.
//
// It is also how the core learns that a peer's snapshot it handed out in a Ready is durable: only
// then may the chosen prefix on disk move past it (see snapPending).
func (r *Replica) Compact(slot uint64) {
	if slot > r.snapSlot && slot <= r.released {
		r.snapSlot = slot
	}
	if r.snapPending != 0 && r.snapSlot >= r.snapPending {
		r.snapPending = 0
		r.rd.ChosenTo = r.commit
	}
	r.settle()
}

// settle does what the inputs just handled call for: re-forward commands if the leader changed,
// cut queued commands into slots while the pipeline has room (a leader), forward them (a
// follower), start phase 1 (a dueling proposer with commands), and drop what every live replica
// has applied. It ends Step, Tick, Propose and Compact, so Ready only collects. Batching needs no
// timer: the runtime proposes everything one wake-up admitted in one Propose, and commands that
// arrive while the pipeline is full wait in the queue and share the slots that free up.
func (r *Replica) settle() {
	if r.cfg.Mode == ModeLeader {
		r.reforward()
	}
	switch {
	case r.role == leader:
		r.maybePropose()
	case r.cfg.Mode == ModeLeader:
		r.forwardQueue()
	case r.role == follower && r.queue.len() > 0 && r.tick >= r.backoffUntil:
		r.campaign() // ModeDuel: every replica proposes its own commands
	}
	r.maybeCompact()
}

// send queues a message that may leave at once.
func (r *Replica) send(m Message) {
	m.From = r.id
	r.rd.Messages = append(r.rd.Messages, m)
}

// sendAfterSync queues a message that may leave only once everything persisted so far is durable:
// promises, accept replies, and prepares (a ballot must be durable before it is used, or a restart
// could reuse it).
func (r *Replica) sendAfterSync(m Message) {
	m.From = r.id
	if r.cfg.Mutation == MutReplyBeforePersist && m.To != r.id {
		r.rd.Messages = append(r.rd.Messages, m)
		return
	}
	r.rd.AfterSync = append(r.rd.AfterSync, m)
}

// persistEntry queues a slot for the disk; a vote must be synced before its reply leaves.
func (r *Replica) persistEntry(e Entry, sync bool) {
	r.rd.Entries = append(r.rd.Entries, e)
	r.rd.MustSync = r.rd.MustSync || sync
}

func (r *Replica) assertf(ok bool, format string, args ...any) {
	if !ok {
		panic(fmt.Sprintf("paxos: replica %d invariant broken: %s [role=%v ballot=%v promised=%v commit=%d released=%d base=%d]",
			r.id, fmt.Sprintf(format, args...), r.role, r.ballot, r.promised, r.commit, r.released, r.log.base))
	}
}

// Value reports the value the replica holds for slot s (its vote, or the value it knows chosen) and
// whether it believes it chosen; ok is false when the slot is empty or compacted. Checkers use it.
func (r *Replica) Value(s uint64) (cmds []Command, chosen, ok bool) {
	sl := r.log.get(s)
	if sl == nil || !sl.has {
		return nil, false, false
	}
	return sl.cmds, sl.chosen, true
}

// Vote reports what the acceptor holds for slot s: the ballot of its vote (or of the chosen value)
// and whether the value is known chosen. ok is false when the slot is empty or compacted. Checkers
// use it to verify that a restarted replica kept every vote it acknowledged.
func (r *Replica) Vote(s uint64) (b Ballot, chosen, ok bool) {
	sl := r.log.get(s)
	if sl == nil || !sl.has {
		return 0, false, false
	}
	return sl.ballot, sl.chosen, true
}
