// Package sim is SofaDB's deterministic simulator: it runs several replicas of the real paxos core,
// the real key-value state machine and a model of the group-committed disk over a simulated network,
// all driven by one seed. The seed chooses the fault rates, the workload and every timing, so a
// failing seed replays exactly. Checkers compare what happens with ground truth the simulator sees
// and no replica can: every durable vote, every message sent, every acknowledged command.
package sim

import (
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/sofadb/sofadb/driver"
	"github.com/sofadb/sofadb/paxos"
)

// Params are the knobs of one run. All of them are chosen by the seed (Choose) and printed first, so
// a report of a failure carries everything needed to understand it; tests may also set them directly.
// Times are in simulated microseconds.
type Params struct {
	Seed     uint64
	Replicas int
	Clients  int
	Mode     paxos.Mode
	Backoff  bool
	Mutation paxos.Mutation

	LossPct        int // per message, on every link
	DupPct         int // per message: delivered twice
	DelayMinUs     int
	DelaySpreadUs  int // uniform spread on top of the minimum: reordering
	LongDelayPct   int // per message: delayed by up to LongDelayMaxUs instead
	LongDelayMaxUs int

	SyncMinUs, SyncSpreadUs int // fsync latency
	UnsyncedKeepPct         int // on a crash, the chance each next unsynced write survived (in order)

	CrashEveryUs     int // mean time between crashes; 0 = none
	DownMinUs        int
	DownSpreadUs     int
	PartitionEveryUs int // mean time between partitions; 0 = none
	PartitionMinUs   int
	PartitionSpanUs  int
	OneWayPct        int // partitions that cut one direction only
	// LinkCutPct of partitions cut one link between two replicas instead of splitting the group:
	// partial connectivity, where A and B cannot talk but both reach C (a lease's hardest case).
	LinkCutPct int

	TickUs          int
	ClientThinkUs   int
	ClientTimeoutUs int
	Keys            int

	BatchBytesMax    int
	InflightSlotsMax int
	WindowSlotsMax   uint64 // the core's window; down to a few slots, so votes land beyond it
	QueueBytesMax    int    // the core's proposal queue; small values make Propose refuse (Busy)
	SnapshotEvery    uint64 // applied slots between snapshots; 0 = never
	// NoPreVote turns the core's pre-vote off (it is on by default); PreVoteBehind is the core's
	// PreVoteBehindSlotsMax, down to 0 (a voter refuses anyone behind it at all).
	NoPreVote     bool
	PreVoteBehind uint64
	// WipePct is the percentage of restarts (during the fault phase, with every other replica up and
	// voting) that lose the replica's whole disk and rejoin it as sofadb rejoin does: a promise
	// floor above every other replica's promise, a learner until its chosen prefix reaches the
	// highest slot any of them holds a vote for (paxos.Config.VoteFromCommit).
	WipePct int
	// WipeNaive (tests only) wipes without the rejoin: the replica votes at once, as after a plain
	// `rm -rf` of its data directory. The checkers must catch it.
	WipeNaive bool
	// SnapSaveMinUs and SnapSaveSpreadUs are how long saving a snapshot takes in the background,
	// as the runtime does it: a crash can land between installing a peer's snapshot and saving it.
	SnapSaveMinUs, SnapSaveSpreadUs int
	// TruncateSilentTicks: short values truncate the log past a replica after a brief silence, so it
	// catches up from a peer's snapshot (0: the core's default).
	TruncateSilentTicks int
	// CrashInSavePct: when a replica installs a peer's snapshot during the fault phase, the chance it
	// crashes while that snapshot is still being saved (a crash at an interesting moment, as
	// TigerBeetle's simulator aims its faults).
	CrashInSavePct int

	// PauseEveryUs is the mean time between pauses (SIGSTOP) of a random replica, each for
	// PauseMinUs plus up to PauseSpanUs: its clock goes on, nothing of it runs. 0: none.
	PauseEveryUs, PauseMinUs, PauseSpanUs int
	// DiskFailEveryUs is the mean time between disk failures (ENOSPC, EIO) of a random replica,
	// which must fence itself. 0: none.
	DiskFailEveryUs int
	// DiskBacklogMax is how many unresolved records a disk holds before it says it is behind (the
	// driver then answers new commands Busy).
	DiskBacklogMax int
	// ClockSkewPct bounds how much faster or slower each replica's clock runs than simulated time,
	// within the lease's drift margin.
	ClockSkewPct int
	// BadSnapshotPct of snapshots on the wire are replaced by one the state machine cannot use at
	// the slot they claim (a peer's bug): the receiver must refuse them.
	BadSnapshotPct int
	// DriverMutation plants a bug in the driver (runtime canaries).
	DriverMutation driver.Mutation

	// NoOracles turns off the checks that look inside replicas (the lease oracles), leaving what
	// clients and the durable state show: canary reports run both ways.
	NoOracles bool

	// LeaseReads serves clients' reads from the leader's lease (ReadIndex) where it holds one;
	// otherwise every read goes through the log.
	LeaseReads bool
	ReadPct    int // share of client commands that are reads
	// FollowLeaderPct of clients send each command to the replica the last reply named leader (as a
	// leader-policy client does); the others pick a replica at random.
	FollowLeaderPct int
	// Readers are extra clients that only read, back to back, from the replica they believe leads:
	// they probe for stale reads around every leader change.
	Readers int

	// DeadForGood replicas (at most a minority) crash at the heal and never come back: the live
	// majority must still serve every command and converge.
	DeadForGood int

	FaultEvents int // events in the fault phase
	HealBoundUs int // after healing, everything must converge within this

	// TraceMessages logs every delivered message (with a log writer): for replaying a failing seed.
	TraceMessages bool
}

// ScenarioCanaries are planted bugs whose harm needs a precise interleaving that random seeds reach
// rarely (about 1 seed in 500): each has a scripted scenario test, run by make test, that shows a
// client a stale read with the bug and none without it. Random canary runs report them, but their
// gate is the scenario test.
var ScenarioCanaries = map[string]string{
	paxos.MutNoRestartQuiet.String(): "TestRestartedFollowerDoesNotHandTheLeaseToANewLeader",
}

// Canary is one planted bug: in the core, or in the driver (a runtime canary).
type Canary struct {
	Core   paxos.Mutation
	Driver driver.Mutation
}

// Name is the canary's name in reports: the core mutation's, or "driver-" and the driver's.
func (c Canary) Name() string {
	if c.Driver != driver.MutNone {
		return "driver-" + c.Driver.String()
	}
	return c.Core.String()
}

// Canaries lists every planted bug of the core and of the driver.
func Canaries() []Canary {
	var out []Canary
	for _, m := range paxos.Mutations() {
		out = append(out, Canary{Core: m})
	}
	for _, m := range driver.Mutations() {
		out = append(out, Canary{Driver: m})
	}
	return out
}

// Plant sets the canary's bug in p.
func (c Canary) Plant(p *Params) { p.Mutation, p.DriverMutation = c.Core, c.Driver }

func pick[T any](rng *rand.Rand, xs ...T) T { return xs[rng.IntN(len(xs))] }

// Choose derives a run's parameters from its seed. replicas (3 or 5) and events are fixed by the
// caller when non-zero; everything else is the seed's choice, including which faults are off, so
// some seeds are calm and some are storms.
func Choose(seed uint64, replicas, events int) Params {
	rng := rand.New(rand.NewPCG(seed, 0x50fa_d85e))
	on := func(pct int) bool { return rng.IntN(100) < pct }
	p := Params{Seed: seed, Replicas: replicas, FaultEvents: events}
	if p.Replicas == 0 {
		p.Replicas = pick(rng, 3, 5)
	}
	p.Clients = 2 + rng.IntN(7)
	p.Mode = paxos.ModeLeader
	if on(15) {
		p.Mode, p.Backoff = paxos.ModeDuel, true // dueling proposers, with the cure: must stay live
	}
	if on(80) {
		p.LossPct = rng.IntN(31)
	}
	if on(70) {
		p.DupPct = rng.IntN(51)
	}
	p.DelayMinUs = 20 + rng.IntN(300)
	p.DelaySpreadUs = pick(rng, 0, 200, 1000, 4000)
	if on(40) {
		p.LongDelayPct, p.LongDelayMaxUs = 1+rng.IntN(5), 5_000+rng.IntN(60_000)
	}
	p.SyncMinUs, p.SyncSpreadUs = 50+rng.IntN(400), pick(rng, 0, 300, 2000)
	p.UnsyncedKeepPct = rng.IntN(101)
	if on(75) {
		p.CrashEveryUs = 10_000 + rng.IntN(300_000)
		p.DownMinUs, p.DownSpreadUs = 1_000+rng.IntN(20_000), rng.IntN(80_000)
	}
	if on(60) {
		p.PartitionEveryUs = 10_000 + rng.IntN(200_000)
		p.PartitionMinUs, p.PartitionSpanUs = 2_000+rng.IntN(30_000), rng.IntN(120_000)
		p.OneWayPct = pick(rng, 0, 30, 70)
	}
	p.TickUs = 1000
	p.ClientThinkUs = pick(rng, 0, 200, 2000)
	p.ClientTimeoutUs = 20_000 + rng.IntN(60_000)
	p.Keys = pick(rng, 1, 4, 16, 64)
	p.BatchBytesMax = pick(rng, 0, 200, 4096, 64<<10)
	p.InflightSlotsMax = pick(rng, 1, 4, 16, 64)
	p.SnapshotEvery = pick[uint64](rng, 0, 5, 20, 100)
	p.HealBoundUs = 3_000_000
	// Drawn after everything above so that those keep the values older seeds gave them.
	p.WindowSlotsMax = pick[uint64](rng, 3, 8, 32, 1<<20, 1<<20)
	p.QueueBytesMax = pick(rng, 300, 4096, 64<<20, 64<<20)
	p.SnapSaveMinUs, p.SnapSaveSpreadUs = 100+rng.IntN(3000), pick(rng, 0, 5000, 30000)
	p.LeaseReads = p.Mode == paxos.ModeLeader && on(60)
	p.ReadPct = pick(rng, 10, 30, 50)
	p.FollowLeaderPct = pick(rng, 0, 50, 100)
	p.Readers = pick(rng, 0, 0, 2, 4)
	if on(30) {
		p.DeadForGood = 1 + rng.IntN((p.Replicas-1)/2)
	}
	if p.PartitionEveryUs > 0 {
		p.LinkCutPct = pick(rng, 0, 50, 100)
	}
	p.TruncateSilentTicks = pick(rng, 15, 30, 100)
	if p.CrashEveryUs > 0 {
		p.CrashInSavePct = pick(rng, 0, 50)
	}
	if on(40) {
		p.PauseEveryUs = 20_000 + rng.IntN(200_000)
		p.PauseMinUs, p.PauseSpanUs = 1_000+rng.IntN(10_000), rng.IntN(60_000)
	}
	if on(15) {
		p.DiskFailEveryUs = 100_000 + rng.IntN(500_000)
	}
	p.DiskBacklogMax = pick(rng, 4, 64, 1<<20)
	p.ClockSkewPct = pick(rng, 0, 1, 3)
	if on(35) {
		p.BadSnapshotPct = pick(rng, 30, 100)
	}
	if p.CrashEveryUs > 0 && on(30) {
		p.DownMinUs = 100 + rng.IntN(2000) // quick restarts: back within a lease term
	}
	p.NoPreVote = on(25)
	p.PreVoteBehind = pick[uint64](rng, 0, 2, 64, 4096)
	// A rejoining replica needs every other replica to choose up to its slot: none may die for good.
	if on(30) && p.Mode == paxos.ModeLeader && p.CrashEveryUs > 0 && p.DeadForGood == 0 {
		p.WipePct = pick(rng, 20, 50)
	}
	return p
}

// String prints every parameter on one line, first thing in a run's report.
func (p Params) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "seed=%d replicas=%d clients=%d mode=%v backoff=%v mutation=%v", p.Seed, p.Replicas,
		p.Clients, p.Mode, p.Backoff, p.Mutation)
	fmt.Fprintf(&b, " loss=%d%% dup=%d%% delay=%d+%dus long=%d%%/%dus", p.LossPct, p.DupPct, p.DelayMinUs,
		p.DelaySpreadUs, p.LongDelayPct, p.LongDelayMaxUs)
	fmt.Fprintf(&b, " sync=%d+%dus keep-unsynced=%d%% crash-every=%dus down=%d+%dus", p.SyncMinUs,
		p.SyncSpreadUs, p.UnsyncedKeepPct, p.CrashEveryUs, p.DownMinUs, p.DownSpreadUs)
	fmt.Fprintf(&b, " partition-every=%dus for=%d+%dus one-way=%d%% link-cut=%d%%", p.PartitionEveryUs, p.PartitionMinUs,
		p.PartitionSpanUs, p.OneWayPct, p.LinkCutPct)
	fmt.Fprintf(&b, " think=%dus timeout=%dus keys=%d batch=%dB inflight=%d window=%d queue=%dB",
		p.ClientThinkUs, p.ClientTimeoutUs, p.Keys, p.BatchBytesMax, p.InflightSlotsMax, p.WindowSlotsMax,
		p.QueueBytesMax)
	fmt.Fprintf(&b, " truncate-silent=%dticks crash-in-save=%d%% pre-vote=%v behind=%d wipe=%d%%", p.TruncateSilentTicks, p.CrashInSavePct,
		!p.NoPreVote, p.PreVoteBehind, p.WipePct)
	fmt.Fprintf(&b, " pause-every=%dus for=%d+%dus disk-fail-every=%dus disk-backlog=%d skew=%d%% bad-snapshots=%d%% driver-mutation=%v",
		p.PauseEveryUs, p.PauseMinUs, p.PauseSpanUs, p.DiskFailEveryUs, p.DiskBacklogMax, p.ClockSkewPct, p.BadSnapshotPct, p.DriverMutation)
	fmt.Fprintf(&b, " snapshot-every=%d save=%d+%dus lease-reads=%v reads=%d%% follow-leader=%d%% readers=%d dead-for-good=%d events=%d",
		p.SnapshotEvery, p.SnapSaveMinUs, p.SnapSaveSpreadUs, p.LeaseReads, p.ReadPct, p.FollowLeaderPct, p.Readers,
		p.DeadForGood, p.FaultEvents)
	return b.String()
}
