package paxos

import (
	"errors"
	"fmt"
	"slices"
)

// Mode chooses how proposers behave; it is what the contended benchmark scenario varies.
type Mode uint8

const (
	// ModeLeader is Multi-Paxos with a distinguished proposer: replicas elect a leader by heartbeats
	// and randomized timeouts, followers forward client commands to it, and only it proposes.
	ModeLeader Mode = iota
	// ModeDuel lets every replica propose its own clients' commands with no forwarding: the dueling
	// proposers of "Paxos Made Simple". A proposer with pending commands that sees a higher ballot
	// starts a new phase 1 above it at once, which can livelock; Config.Backoff is the cure.
	ModeDuel
)

func (m Mode) String() string {
	switch m {
	case ModeLeader:
		return "leader"
	case ModeDuel:
		return "duel"
	}
	return fmt.Sprintf("mode(%d)", uint8(m))
}

// ParseMode reads a Mode from its String form (for flags).
func ParseMode(s string) (Mode, error) {
	switch s {
	case "leader":
		return ModeLeader, nil
	case "duel":
		return ModeDuel, nil
	}
	return 0, fmt.Errorf("paxos: unknown proposer mode %q (want leader or duel)", s)
}

// Mutation plants a known bug in the core. It exists only so the simulator's checkers can prove
// they catch real bugs (mutation canaries); production configurations leave it zero.
type Mutation uint8

const (
	// MutNone is the correct protocol.
	MutNone Mutation = iota
	// MutReplyBeforePersist sends promises and accept replies before the state they vouch for is durable.
	MutReplyBeforePersist
	// MutBallotReuse restarts the proposer's rounds at its persisted promise instead of above it.
	MutBallotReuse
	// MutCountStalePromises counts phase-1 replies for an older ballot toward the current quorum.
	MutCountStalePromises
	// MutNoRepropose makes a new leader fill every open slot with a no-op instead of re-proposing the
	// highest-ballot value its quorum reported.
	MutNoRepropose
	// MutLeaseNoFence lets a new leader serve lease reads before the slots it re-proposed are chosen
	// (issue 8, bug 1).
	MutLeaseNoFence
	// MutAckLowerBallot acknowledges the heartbeat of a leader whose ballot is below the acceptor's
	// promise, renewing a deposed leader's lease (bug 2).
	MutAckLowerBallot
	// MutChosenToBeforeSnapshot persists the chosen prefix past a peer's snapshot before that
	// snapshot is durable (bug 4).
	MutChosenToBeforeSnapshot
	// MutDropBeyondWindow ignores votes a promise reports beyond the proposer's window, and durable
	// votes beyond the window on restore (bug 5).
	MutDropBeyondWindow
	// MutLearnOtherBallot makes a learner take a leader's chosen prefix as covering votes of any
	// ballot, not only votes cast under the leader's own.
	MutLearnOtherBallot
	// MutNoRestartQuiet lets a restarted replica promise at once, forgetting the lease it may have
	// granted just before it crashed (bug 3).
	MutNoRestartQuiet
	mutLimit
)

var mutationNames = [...]string{"none", "reply-before-persist", "ballot-reuse", "count-stale-promises",
	"no-repropose", "lease-no-fence", "ack-lower-ballot", "chosento-before-snapshot", "drop-beyond-window",
	"learn-other-ballot", "no-restart-quiet"}

func (m Mutation) String() string {
	if int(m) < len(mutationNames) {
		return mutationNames[m]
	}
	return fmt.Sprintf("mutation(%d)", uint8(m))
}

// Mutations lists every planted bug, in order, for canary runs.
func Mutations() []Mutation {
	out := make([]Mutation, 0, mutLimit-1)
	for m := MutNone + 1; m < mutLimit; m++ {
		out = append(out, m)
	}
	return out
}

// Config holds everything a Replica needs; all durations are in ticks of the caller's clock.
type Config struct {
	// ID is this replica; Peers lists every replica of the group, this one included.
	ID    ReplicaID
	Peers []ReplicaID
	// Seed drives every random choice (election timeouts, backoff), so runs replay exactly.
	Seed uint64
	// Mode chooses between a distinguished leader and dueling proposers.
	Mode Mode
	// Backoff (ModeDuel) waits a random, exponentially growing number of ticks after a preemption
	// before starting a new phase 1, instead of starting one at once.
	Backoff bool
	// BackoffBaseTicks and BackoffMaxTicks bound the backoff: after k consecutive preemptions a
	// proposer waits uniformly in [0, min(BackoffMaxTicks, BackoffBaseTicks<<k)).
	BackoffBaseTicks int
	BackoffMaxTicks  int

	// HeartbeatTicks is how often an idle leader tells followers it is alive and what is chosen.
	HeartbeatTicks int
	// ElectionTicks is the least time without hearing from a leader before a follower starts an
	// election; each follower draws its timeout in [ElectionTicks, 2*ElectionTicks).
	ElectionTicks int
	// PreVote (ModeLeader) makes a follower whose election timer ran out ask first, without raising
	// any ballot, whether a majority would elect it: a replica that only lost touch with a live
	// leader (its loop stalled, its link is slow, it is installing a snapshot) then disturbs nobody,
	// where its higher ballot would otherwise make the leader run phase 1 again.
	PreVote bool
	// PreVoteBehindSlotsMax: a replica grants no pre-vote to one whose chosen prefix is more than
	// this many slots below its own, so a replica far behind catches up before it campaigns.
	PreVoteBehindSlotsMax uint64
	// VoteFromCommit, when above 0, makes a replica that lost its acceptor state (a wiped data
	// directory, rejoining: see replica's REJOIN file) a learner until its chosen prefix reaches
	// it: it answers no prepare, casts no vote and never campaigns, so no promise or vote it gave
	// before it forgot them can be contradicted. Set it to the highest slot any other replica
	// held a vote for when the state was lost, with the durable promise raised above every
	// ballot they had promised (Paxos Made Live's rule for a replica with a corrupted disk: catch
	// up as a non-voting member first). Once every slot up to it is chosen and known here, the
	// replica's votes are only ever for ballots above anything it may have promised, in slots
	// whose value it knows.
	VoteFromCommit uint64
	// ResendTicks is how long a proposer waits for replies before resending a prepare or accept,
	// and a learner before asking again for chosen values it lacks.
	ResendTicks int
	// LeaseDriftTicks is the clock-drift margin of leader leases: a leader serves reads locally until
	// ElectionTicks-LeaseDriftTicks after the heartbeat a majority acknowledged was sent.
	LeaseDriftTicks int

	// BatchBytesMax bounds the commands cut into one slot. 0 disables batching: one command per slot.
	BatchBytesMax int
	// InflightSlotsMax and InflightBytesMax bound the pipeline: proposed slots not yet chosen.
	InflightSlotsMax int
	InflightBytesMax int
	// QueueBytesMax bounds commands waiting for a slot (or for a leader); Propose refuses beyond it.
	QueueBytesMax int
	// CatchupBytesMax bounds the chosen values carried by one catch-up reply.
	CatchupBytesMax int
	// WindowSlotsMax bounds how far above its chosen prefix a replica votes or learns from catch-up,
	// so an accept naming a huge slot cannot make it allocate without limit, and how far above it a
	// leader proposes. It never makes a replica forget a vote: votes a promise reports and votes read
	// back from disk are kept wherever they lie (they are bounded by the windows they were cast in).
	WindowSlotsMax uint64
	// SnapshotEveryTicks rate-limits snapshots sent to one peer.
	SnapshotEveryTicks int
	// TruncateSilentTicks is how long a replica may stay silent and still hold back log truncation:
	// the leader truncates only below what every replica heard from within this many ticks has
	// applied. A replica silent for longer needs a snapshot when it returns.
	TruncateSilentTicks int

	// Mutation plants a bug for canary tests only.
	Mutation Mutation
}

// DefaultConfig returns a configuration with the given membership and sensible limits; callers set
// Mode, Seed and any limit they want to vary.
func DefaultConfig(id ReplicaID, peers []ReplicaID) Config {
	return Config{
		ID:                    id,
		Peers:                 peers,
		BackoffBaseTicks:      2,
		BackoffMaxTicks:       64,
		HeartbeatTicks:        2,
		ElectionTicks:         10,
		ResendTicks:           4,
		PreVote:               true,
		PreVoteBehindSlotsMax: 4096,
		LeaseDriftTicks:       2,
		BatchBytesMax:         64 << 10,
		InflightSlotsMax:      64,
		InflightBytesMax:      8 << 20,
		QueueBytesMax:         64 << 20,
		CatchupBytesMax:       1 << 20,
		WindowSlotsMax:        1 << 20,
		SnapshotEveryTicks:    20,
		TruncateSilentTicks:   100,
	}
}

// ErrConfig is returned by New for an unusable configuration.
var ErrConfig = errors.New("paxos: invalid config")

func (c *Config) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, args...))
	}
	switch {
	case c.ID == 0:
		return bad("replica id 0 is reserved")
	case len(c.Peers) == 0 || len(c.Peers) > 64:
		return bad("%d peers: need 1 to 64", len(c.Peers))
	case !slices.Contains(c.Peers, c.ID):
		return bad("peers %v do not include id %d", c.Peers, c.ID)
	case c.HeartbeatTicks <= 0 || c.ElectionTicks <= c.HeartbeatTicks:
		return bad("need 0 < heartbeat (%d) < election (%d) ticks", c.HeartbeatTicks, c.ElectionTicks)
	case c.ResendTicks <= 0:
		return bad("resend ticks %d", c.ResendTicks)
	case c.LeaseDriftTicks < 0 || c.LeaseDriftTicks >= c.ElectionTicks:
		return bad("lease drift %d ticks not in [0, election)", c.LeaseDriftTicks)
	case c.InflightSlotsMax <= 0 || c.InflightBytesMax <= 0 || c.QueueBytesMax <= 0:
		return bad("pipeline and queue limits must be positive")
	case c.BatchBytesMax < 0 || c.CatchupBytesMax <= 0 || c.WindowSlotsMax == 0:
		return bad("batch, catch-up and window limits")
	case c.TruncateSilentTicks <= 0:
		return bad("truncate-silent ticks %d", c.TruncateSilentTicks)
	case c.Backoff && (c.BackoffBaseTicks <= 0 || c.BackoffMaxTicks < c.BackoffBaseTicks):
		return bad("backoff base %d max %d ticks", c.BackoffBaseTicks, c.BackoffMaxTicks)
	case c.Mutation >= mutLimit:
		return bad("unknown mutation %d", c.Mutation)
	}
	seen := map[ReplicaID]bool{}
	for _, p := range c.Peers {
		if p == 0 || seen[p] {
			return bad("peer ids must be unique and non-zero: %v", c.Peers)
		}
		seen[p] = true
	}
	return nil
}
