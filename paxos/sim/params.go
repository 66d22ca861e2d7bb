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

	TickUs          int
	ClientThinkUs   int
	ClientTimeoutUs int
	Keys            int

	BatchBytesMax    int
	InflightSlotsMax int
	SnapshotEvery    uint64 // applied slots between snapshots; 0 = never

	FaultEvents int // events in the fault phase
	HealBoundUs int // after healing, everything must converge within this

	// TraceMessages logs every delivered message (with a log writer): for replaying a failing seed.
	TraceMessages bool
}

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
	fmt.Fprintf(&b, " partition-every=%dus for=%d+%dus one-way=%d%%", p.PartitionEveryUs, p.PartitionMinUs,
		p.PartitionSpanUs, p.OneWayPct)
	fmt.Fprintf(&b, " think=%dus timeout=%dus keys=%d batch=%dB inflight=%d snapshot-every=%d events=%d",
		p.ClientThinkUs, p.ClientTimeoutUs, p.Keys, p.BatchBytesMax, p.InflightSlotsMax, p.SnapshotEvery,
		p.FaultEvents)
	return b.String()
}
