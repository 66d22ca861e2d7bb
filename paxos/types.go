// Package paxos is SofaDB's Multi-Paxos core: one Replica value holding the proposer, acceptor and
// learner of Lamport's "Paxos Made Simple", driven only through Step, Tick and Propose, and observed
// through Ready/Advance. It does no IO, reads no clock and starts no goroutine: time is counted in
// ticks and randomness comes from a seed in Config, so a simulator can replay any run exactly.
package paxos

import "fmt"

// ReplicaID names a replica. Ids start at 1; 0 means "nobody" (no leader known, no sender).
type ReplicaID uint16

// Ballot is a proposal number: a round in the high 48 bits and the proposing replica in the low 16.
// Packing the proposer into the number makes ballots unique (no two replicas share a ballot) and
// totally ordered by plain integer comparison. Ballot 0 is below every real ballot and means "none".
type Ballot uint64

const ballotIDBits = 16

// MaxRound is the largest round a Ballot can hold.
const MaxRound = 1<<(64-ballotIDBits) - 1

// MakeBallot packs a round and the proposing replica into a Ballot.
func MakeBallot(round uint64, id ReplicaID) Ballot {
	return Ballot(round<<ballotIDBits | uint64(id))
}

// Round is the ballot's round: it rises every time a replica starts a new phase 1.
func (b Ballot) Round() uint64 { return uint64(b) >> ballotIDBits }

// ID is the replica that owns the ballot; only it may propose values under it.
func (b Ballot) ID() ReplicaID { return ReplicaID(b & (1<<ballotIDBits - 1)) }

// String prints a ballot as round.replica, the form used in traces and logs.
func (b Ballot) String() string { return fmt.Sprintf("%d.%d", b.Round(), b.ID()) }

// ParseBallot reads a ballot as String writes it ("round.id", as /status shows it).
func ParseBallot(s string) (Ballot, error) {
	var round, id uint64
	if n, err := fmt.Sscanf(s, "%d.%d", &round, &id); err != nil || n != 2 || round > MaxRound || id >= 1<<ballotIDBits {
		return 0, fmt.Errorf("paxos: ballot %q: want round.id", s)
	}
	return MakeBallot(round, ReplicaID(id)), nil
}

// Command is one client command as it travels through the log: opaque bytes to the core (the
// state machine's encoding, package kv), named by (ClientID, Seq). The name lets the state machine
// apply a command chosen twice (a client's retry, a follower's re-forward) only once, and lets a
// dueling proposer drop from its queue a command another proposer got chosen.
type Command struct {
	ClientID uint64
	Seq      uint64
	Data     []byte
}

// commandOverheadBytes approximates the fixed part of an encoded command (ids, a length); it only
// has to be close enough for byte-bounded batching and pipelining.
const commandOverheadBytes = 24

// Size is the command's approximate encoded size in bytes, the unit of the batch and pipeline limits.
func (c *Command) Size() int { return commandOverheadBytes + len(c.Data) }

// Entry is one log slot's proposal: the batch of commands a ballot proposed for the slot. An empty
// batch is a no-op, which a new leader uses to fill holes in the log.
type Entry struct {
	Slot   uint64
	Ballot Ballot
	// Chosen marks a value known to be chosen. In a Promise it tells the new leader not to re-propose
	// the slot; in a Ready's Entries it marks a value learned from a peer (not a vote of this acceptor);
	// in a catch-up reply every entry is chosen. Ballot is then the ballot the value was chosen at.
	Chosen bool
	Cmds   []Command
}

// Size is the entry's approximate encoded size in bytes.
func (e *Entry) Size() int {
	n := 24
	for i := range e.Cmds {
		n += e.Cmds[i].Size()
	}
	return n
}

// MsgType says what a Message is and so which of its fields mean something.
type MsgType uint8

// Peer messages. The comment on each says which Message fields it uses; the others are zero.
const (
	// MsgPrepare is phase 1a: Ballot, and Slot = the first slot the proposer does not know chosen.
	MsgPrepare MsgType = iota + 1
	// MsgPromise is phase 1b: Ballot (the one promised), Commit (the acceptor's chosen prefix), and
	// Entries: every slot above max(Slot-1, Commit) the acceptor has accepted or knows chosen.
	MsgPromise
	// MsgAccept is phase 2a: Ballot, Commit (the leader's chosen prefix, piggybacked) and one entry.
	MsgAccept
	// MsgAccepted is phase 2b: Ballot and Slot.
	MsgAccepted
	// MsgNack rejects a Prepare or Accept: Ballot is the higher ballot the acceptor has promised, Slot
	// the slot the rejected Accept was for (0 for a Prepare).
	MsgNack
	// MsgCommit is the leader's heartbeat and learner notice: Ballot, Commit, Stamp (echoed for
	// leases; 0 when it is only a commit notice), and Slot = the truncation floor (every replica the
	// leader heard from recently has applied through it).
	MsgCommit
	// MsgCommitAck answers MsgCommit: Ballot and Stamp echoed, Commit = the follower's chosen prefix,
	// Slot = the follower's applied slot (so the leader knows what may be truncated).
	MsgCommitAck
	// MsgCatchup asks for chosen values: Slot = first missing slot, Commit = last slot wanted.
	MsgCatchup
	// MsgCatchupReply carries chosen entries (all Chosen) and Commit = the sender's chosen prefix. An
	// empty reply with Slot set means the slots asked for are truncated: a snapshot follows.
	MsgCatchupReply
	// MsgForward carries client commands from a follower to the leader: Cmds.
	MsgForward
	// MsgSnapshot carries the application state through Slot: Data, opaque to the core.
	MsgSnapshot
	// MsgPreVote asks, before any ballot is raised, whether the sender could win an election:
	// Stamp = the round of asking, Commit = the sender's chosen prefix. It changes nothing at the
	// receiver (no promise, no timer), which answers MsgPreVoteOK only if it has not heard from a
	// live leader within ElectionTicks and the sender is not far behind its own chosen prefix.
	MsgPreVote
	// MsgPreVoteOK grants a pre-vote: Stamp echoed.
	MsgPreVoteOK
	msgLimit
)

// Valid reports whether t is a message type this version knows; decoders use it to reject input.
func (t MsgType) Valid() bool { return t >= MsgPrepare && t < msgLimit }

var msgNames = [...]string{"none", "prepare", "promise", "accept", "accepted", "nack", "commit",
	"commit-ack", "catchup", "catchup-reply", "forward", "snapshot", "pre-vote", "pre-vote-ok"}

func (t MsgType) String() string {
	if int(t) < len(msgNames) {
		return msgNames[t]
	}
	return fmt.Sprintf("msg(%d)", uint8(t))
}

// Message is every peer message of the protocol, one struct for all types (as in etcd-io/raft): the
// Type says which fields carry meaning. The core keeps references to Entries, Cmds and Data it is
// given in Step, so a caller must not reuse their memory after handing a message over.
type Message struct {
	Type    MsgType
	From    ReplicaID
	To      ReplicaID
	Ballot  Ballot
	Slot    uint64
	Commit  uint64
	Stamp   uint64
	Entries []Entry
	Cmds    []Command
	Data    []byte
}

// Snapshot is the application state through Slot, produced and consumed by the application; the
// core only moves it between replicas so a replica behind the truncated log can catch up.
type Snapshot struct {
	Slot uint64
	Data []byte
}

// Durable is what a replica reads back from its disk on restart: everything it persisted through
// Ready and saw synced (what was never synced may or may not be there).
type Durable struct {
	// Promised is the highest ballot the acceptor promised; the restarted proposer's rounds start
	// above it, so no ballot is ever reused.
	Promised Ballot
	// Applied is the slot the application's durable state has applied through (its snapshot).
	Applied uint64
	// ChosenTo is the persisted chosen prefix: every slot up to it holds its chosen value in Entries
	// (or is at most Applied, so a store may report max(mark, Applied)). Persisted lazily: it may lag.
	ChosenTo uint64
	// Entries are the persisted slots above Applied, in slot order.
	Entries []Entry
}

// Ready is what the outside world must do for the replica, collected since the last Advance. The
// contract: persist Promised, Entries and ChosenTo (fsync first when MustSync), send Messages at once,
// send AfterSync only once that persist is durable, install Snapshot and then apply Committed in
// order, answer Dropped, and drop durable slots up to CompactTo. Then call Advance.
type Ready struct {
	// Promised is the acceptor's new promised ballot, or 0 when it did not change. Readies must be
	// persisted in the order they were returned: a later promise is always higher.
	Promised Ballot
	// Entries are slots to persist: votes (Chosen false) or values learned chosen (Chosen true).
	Entries []Entry
	// ChosenTo is the new chosen prefix to persist (no fsync needed), or 0 when unchanged.
	ChosenTo uint64
	// MustSync says the persist must be fsynced before AfterSync may leave.
	MustSync bool
	// Messages may be sent immediately.
	Messages []Message
	// AfterSync may be sent only after this Ready's persist is durable: promises and accept replies.
	AfterSync []Message
	// Snapshot, when set, replaces the application state before Committed is applied.
	Snapshot *Snapshot
	// Committed are newly chosen slots, contiguous and in slot order, for the application to apply.
	Committed []Entry
	// Dropped are client commands this replica gave up on (lost leadership, queue full): the runtime
	// tells their clients to retry, with Leader as the hint.
	Dropped []Command
	// Leader is the replica currently believed to lead (0 if unknown); valid in every Ready.
	Leader ReplicaID
	// SendSnapshot lists peers whose next needed slot is truncated: send them a snapshot.
	SendSnapshot []ReplicaID
	// CompactTo, when non-zero, says durable slots up to it are no longer needed and may be deleted.
	// It never exceeds the slot last passed to Replica.Compact, which the caller passes only once its
	// snapshot through that slot is durable.
	CompactTo uint64
}

// Empty reports whether the Ready asks nothing of the outside world.
func (rd *Ready) Empty() bool {
	return rd.Promised == 0 && len(rd.Entries) == 0 && rd.ChosenTo == 0 && len(rd.Messages) == 0 &&
		len(rd.AfterSync) == 0 && rd.Snapshot == nil && len(rd.Committed) == 0 &&
		len(rd.Dropped) == 0 && len(rd.SendSnapshot) == 0 && rd.CompactTo == 0
}
