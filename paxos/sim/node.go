package sim

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/sofadb/sofadb/driver"
	"github.com/sofadb/sofadb/kv"
	"github.com/sofadb/sofadb/paxos"
	"github.com/sofadb/sofadb/wire"
)

// node is one simulated replica process: the real driver (package driver, the same code the
// process runs) over the real core and state machine, with simulated IO: a clock that is simulated
// time (skewed per node), a disk model with the fsync discipline of disk/ (records resolve in
// order, one sync at a time covers everything written before it, a crash loses what was not synced
// except a random prefix the OS happened to write out, and it can fail), the simulated network, and
// a background executor whose jobs take seeded time. A node can also be paused (SIGSTOP): inputs
// wait, ticks do not fire, and the clock goes on.
type node struct {
	w     *world
	idx   int
	id    paxos.ReplicaID
	peers []paxos.ReplicaID
	up    bool
	dead  bool // down for good: never restarts
	inc   int  // incarnation: 1 at first start, +1 per restart
	d     *driver.Driver
	disk  *simDisk
	skew  float64 // this node's clock runs at 1+skew of simulated time

	paused   bool
	deferred []func() // inputs that arrived while paused, in order

	voteFrom uint64 // set by a wipe: the restarted core's VoteFromCommit (kept: a no-op once reached)

	bg     []func() func() // background jobs, in order; the first is running
	bgGen  uint64          // invalidates a job's completion after a crash
	metric paxos.Metrics   // summed over dead incarnations
}

// simDisk is a node's disk. durable survives crashes; pending is what was handed to it since the
// last sync that covered it.
type simDisk struct {
	n       *node
	durable *durableModel
	pending []*write // resolved in order by syncs
	seq     uint64   // last sequence number given out
	done    uint64   // last sequence number resolved
	syncing bool
	syncN   int    // how many of pending the sync in flight covers
	syncGen uint64 // invalidates a sync completion after a crash
	failed  error
}

// write is one Ready's worth of persistence.
type write struct {
	seq      uint64
	promised paxos.Ballot
	entries  []paxos.Entry
	chosenTo uint64
}

// durableModel is what survives a crash.
type durableModel struct {
	promised paxos.Ballot
	entries  map[uint64]paxos.Entry
	chosenTo uint64
	snap     paxos.Snapshot
}

func newDurableModel() *durableModel { return &durableModel{entries: map[uint64]paxos.Entry{}} }

func (d *durableModel) apply(wr *write) {
	if wr.promised > d.promised {
		d.promised = wr.promised
	}
	for _, e := range wr.entries {
		d.entries[e.Slot] = e
	}
	if wr.chosenTo != 0 {
		d.chosenTo = wr.chosenTo
	}
}

func (d *durableModel) toDurable() paxos.Durable {
	out := paxos.Durable{Promised: d.promised, Applied: d.snap.Slot, ChosenTo: max(d.chosenTo, d.snap.Slot)}
	for _, s := range sortedKeys(d.entries) {
		if s > d.snap.Slot {
			out.Entries = append(out.Entries, d.entries[s])
		}
	}
	return out
}

var (
	errDiskFailed   = errors.New("sim: injected disk failure (ENOSPC)")
	errSnapshotBack = errors.New("sim: snapshot older than the durable one")
)

// Persist queues a record; it resolves with the next sync that covers it.
func (sd *simDisk) Persist(rd *paxos.Ready) (uint64, error) {
	if sd.failed != nil {
		return 0, sd.failed
	}
	sd.seq++
	sd.pending = append(sd.pending, &write{seq: sd.seq, promised: rd.Promised, entries: rd.Entries, chosenTo: rd.ChosenTo})
	sd.maybeSync()
	return sd.seq, nil
}

func (sd *simDisk) Durable() uint64 { return sd.done }
func (sd *simDisk) Err() error      { return sd.failed }

// Behind reports a backlog over the seed's bound, so the driver's Busy path runs too.
func (sd *simDisk) Behind() bool {
	return sd.n.w.p.DiskBacklogMax > 0 && len(sd.pending) > sd.n.w.p.DiskBacklogMax
}

// SaveSnapshot runs inside a background job's completion event: the save is atomic and durable at
// that moment, as disk.Store's pointer flip is.
func (sd *simDisk) SaveSnapshot(data []byte) error {
	if sd.failed != nil {
		return sd.failed
	}
	slot, err := kv.SnapshotSlot(data)
	if err != nil {
		return err
	}
	if slot < sd.durable.snap.Slot {
		return errSnapshotBack
	}
	sd.durable.snap = paxos.Snapshot{Slot: slot, Data: data}
	return nil
}

// Truncate deletes durable slots at or below upTo, which the store allows only under its snapshot.
func (sd *simDisk) Truncate(upTo uint64) error {
	if upTo > sd.durable.snap.Slot {
		sd.n.w.chk.violate("truncate", "r%d truncates through slot %d, above its durable snapshot at %d", sd.n.id, upTo, sd.durable.snap.Slot)
		return fmt.Errorf("truncate beyond snapshot")
	}
	for _, s := range sortedKeys(sd.durable.entries) {
		if s <= upTo {
			delete(sd.durable.entries, s)
		}
	}
	return nil
}

// maybeSync starts an fsync covering every record written so far, unless one is in flight.
func (sd *simDisk) maybeSync() {
	if sd.syncing || len(sd.pending) == 0 {
		return
	}
	sd.syncing, sd.syncN = true, len(sd.pending)
	sd.syncGen++
	w := sd.n.w
	at := w.nowUs + int64(w.p.SyncMinUs+w.rng.IntN(w.p.SyncSpreadUs+1))
	w.schedule(&event{kind: evSyncDone, node: sd.n.idx, gen: sd.syncGen, atUs: at})
}

// syncDone makes the covered records durable and resolves them; a failed disk fails them instead.
func (sd *simDisk) syncDone(gen uint64) {
	n := sd.n
	if !n.up || gen != sd.syncGen || !sd.syncing {
		return
	}
	sd.syncing = false
	if sd.failed == nil {
		done := sd.pending[:sd.syncN]
		sd.pending = append([]*write(nil), sd.pending[sd.syncN:]...)
		for _, wr := range done {
			sd.makeDurable(wr)
			sd.done = wr.seq
		}
		sd.maybeSync()
	}
	n.wake(n.d.OnDurable)
}

func (sd *simDisk) makeDurable(wr *write) {
	before := sd.durable.chosenTo
	sd.durable.apply(wr)
	sd.n.w.chk.onDurable(sd.n, wr)
	if sd.durable.chosenTo > before {
		sd.n.w.chk.checkDurablePrefix(sd.n, before)
	}
}

// crash loses the unsynced records but a random prefix.
func (sd *simDisk) crash() {
	for _, wr := range sd.pending {
		if sd.n.w.rng.IntN(100) >= sd.n.w.p.UnsyncedKeepPct {
			break
		}
		sd.makeDurable(wr)
	}
	sd.pending, sd.syncing, sd.failed = nil, false, nil // a restart comes with a repaired disk
	sd.syncGen++
	sd.seq, sd.done = 0, 0
}

// Now is the node's clock: simulated time, running 1+skew times as fast.
func (n *node) Now() time.Time {
	return time.Unix(0, 0).Add(time.Duration(float64(n.w.nowUs)*(1+n.skew)) * time.Microsecond)
}

// Send puts a peer message on the simulated network, through the checkers.
func (n *node) Send(m *paxos.Message) {
	n.w.chk.onSend(n, m)
	if m.Type == paxos.MsgSnapshot {
		n.w.stats.SnapshotsSent++
	}
	n.w.send(n.idx, *m)
}

// Flush ends a wake-up; the simulated network has nothing to coalesce.
func (n *node) Flush() {}

// Go queues a background job; each takes seeded time, one at a time, like the process's single
// background goroutine with its bounded queue.
func (n *node) Go(job func() func()) bool {
	if len(n.bg) >= 16 {
		return false
	}
	n.bg = append(n.bg, job)
	if len(n.bg) == 1 {
		n.startJob()
	}
	return true
}

func (n *node) startJob() {
	w := n.w
	at := w.nowUs + int64(w.p.SnapSaveMinUs+w.rng.IntN(w.p.SnapSaveSpreadUs+1))
	w.schedule(&event{kind: evBgDone, node: n.idx, gen: n.bgGen, atUs: at})
}

// bgDone runs the oldest job (its effects land now: a snapshot saved, a snapshot sent) and its
// completion on the loop.
func (n *node) bgDone(gen uint64) {
	if !n.up || gen != n.bgGen || len(n.bg) == 0 {
		return
	}
	job := n.bg[0]
	n.bg = n.bg[1:]
	if len(n.bg) > 0 {
		n.startJob()
	}
	n.wake(func() { job()() })
}

func (n *node) driverConfig() driver.Config {
	p := n.w.p
	cfg := paxos.DefaultConfig(n.id, n.peers)
	cfg.Seed = p.Seed*1_000_003 + uint64(n.inc)
	cfg.Mode, cfg.Backoff, cfg.Mutation = p.Mode, p.Backoff, p.Mutation
	cfg.BatchBytesMax, cfg.InflightSlotsMax = p.BatchBytesMax, p.InflightSlotsMax
	if p.WindowSlotsMax > 0 {
		cfg.WindowSlotsMax = p.WindowSlotsMax
	}
	if p.QueueBytesMax > 0 {
		cfg.QueueBytesMax = p.QueueBytesMax
	}
	cfg.PreVote, cfg.PreVoteBehindSlotsMax = !p.NoPreVote, p.PreVoteBehind
	cfg.VoteFromCommit = n.voteFrom
	if p.TruncateSilentTicks > 0 {
		cfg.TruncateSilentTicks = p.TruncateSilentTicks
	}
	reads := driver.ReadLog
	if p.LeaseReads {
		reads = driver.ReadLease
	}
	return driver.Config{Core: cfg, TickInterval: time.Duration(p.TickUs) * time.Microsecond, ReadMode: reads,
		Fsync: true, SnapshotEverySlots: p.SnapshotEvery, RequestTimeout: 4 * time.Duration(p.ClientTimeoutUs) * time.Microsecond,
		Seed: cfg.Seed, Logger: discard, Mutation: p.DriverMutation}
}

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

func (n *node) start() {
	n.inc++
	dm := n.disk.durable
	d := dm.toDurable()
	state := kv.NewState()
	if dm.snap.Data != nil {
		if err := state.Restore(dm.snap.Data); err != nil {
			n.w.chk.violate("snapshot-restores", "r%d: durable snapshot does not restore: %v", n.id, err)
		}
	}
	hooks := driver.Hooks{
		Applied:           func(e *paxos.Entry, cmds []kv.Command, res []kv.Result) { n.w.chk.onApply(n, e, cmds, res) },
		SnapshotInstalled: func(slot uint64) { n.w.chk.onSnapshotInstalled(n, slot); n.maybeCrashInSave() },
		Local: func(m *paxos.Message) {
			n.w.chk.onSend(n, m)
			n.w.chk.onDeliver(n, m)
		},
	}
	drv, err := driver.New(n.driverConfig(), n, n.disk, n, n, hooks, state, &d)
	if err != nil {
		// A bad config is a simulator bug; inconsistent durable state is the core's or the model's.
		n.w.chk.violate("restart", "r%d does not restart: %v", n.id, err)
		n.up = false
		return
	}
	n.d, n.up, n.paused, n.deferred = drv, true, false, nil
	n.w.chk.onStart(n)
	n.wake(func() {})
}

// maybeCrashInSave aims a crash at the moment a peer's snapshot is installed but not yet saved,
// where the chosen prefix must not yet be persisted past it.
func (n *node) maybeCrashInSave() {
	w := n.w
	if !w.healed && w.p.CrashInSavePct > 0 && w.rng.IntN(100) < w.p.CrashInSavePct {
		at := w.nowUs + 1 + int64(w.rng.IntN(w.p.SnapSaveMinUs+w.p.SnapSaveSpreadUs+1))
		w.schedule(&event{kind: evCrashNode, node: n.idx, gen: uint64(n.inc), atUs: at})
	}
}

// core and st are the running incarnation's core and state machine, for the checkers.
func (n *node) core() *paxos.Replica { return n.d.Core() }
func (n *node) st() *kv.State        { return n.d.State() }

// wake runs one wake-up of the driver around input: Begin, the input, End, then the lease oracle.
// A paused node keeps its inputs for when it resumes.
func (n *node) wake(input func()) {
	if !n.up {
		return
	}
	if n.paused {
		n.deferred = append(n.deferred, input)
		return
	}
	n.d.Begin()
	input()
	n.d.End()
	if idx, ok := n.d.ReadIndex(); ok {
		n.w.chk.checkLeaseIndex(n, idx)
	}
}

func (n *node) tick() {
	if n.up && !n.paused {
		n.wake(n.d.OnTicker)
	}
}

func (n *node) deliver(m *paxos.Message) {
	if !n.up {
		return
	}
	msg := *m
	n.wake(func() {
		n.w.chk.onDeliver(n, &msg)
		n.d.Step(&msg)
	})
}

// clientRequest goes through the driver's client path, as a request on a connection would.
func (n *node) clientRequest(cm *clientMsg) {
	if !n.up {
		return
	}
	client, cmd := cm.client, cm.cmd
	n.wake(func() {
		n.d.Submit(&driver.Request{Cmd: cmd, Deadline: n.Now().Add(n.driverConfig().RequestTimeout),
			Reply: func(resp driver.Response) { n.reply(client, cmd.Seq, resp) }})
	})
}

// reply carries a driver's answer back to the client, with the leader hint clients follow.
func (n *node) reply(client int, seq uint64, resp driver.Response) {
	cm := clientMsg{seq: seq, leader: resp.Leader}
	if cm.leader == 0 && n.d != nil {
		cm.leader = n.d.Leader()
	}
	switch resp.Status {
	case wire.StatusOK, wire.StatusNotFound:
		cm.ok = true
		cm.found = resp.Status == wire.StatusOK
		cm.value = resp.Value
		cm.servedAt, cm.servedIdx, cm.lease = resp.Slot, resp.Index, resp.Index < 0
		if len(resp.Value) == 8 {
			cm.session = binary.BigEndian.Uint64(resp.Value)
		}
	case wire.StatusSessionExpired:
		cm.expired = true
	default: // not leader, busy, unavailable, stale: try again
		cm.retry = true
	}
	n.w.sendClient(evClientReply, client, cm)
}

// crash kills the process: memory, unsynced writes (but a random prefix), background jobs and
// pending replies go.
func (n *node) crash() {
	n.w.stats.Crashes++
	n.w.logf("crash r%d", n.id)
	if n.d != nil {
		st := n.d.Core().Status().Metrics
		n.metric.Preempted += st.Preempted
		n.metric.Campaigns += st.Campaigns
		n.metric.LeaseRefusals += st.LeaseRefusals
	}
	n.disk.crash()
	n.bg = nil
	n.bgGen++
	n.up, n.paused, n.deferred = false, false, nil
}

func (n *node) restart() {
	if n.up || n.dead {
		return
	}
	n.w.logf("restart r%d", n.id)
	n.maybeWipe()
	n.start()
}

// maybeWipe, during the fault phase and with WipePct, loses the node's disk and plans its rejoin
// the way sofadb rejoin does, from every other replica's status; only when all of them are up and
// voting (the tool refuses otherwise).
func (n *node) maybeWipe() {
	w := n.w
	if w.healed || w.p.WipePct == 0 || w.rng.IntN(100) >= w.p.WipePct {
		return
	}
	var floor paxos.Ballot
	var last uint64
	for _, o := range w.nodes {
		if o == n {
			continue
		}
		if !o.up || o.dead {
			return
		}
		st := o.core().Status()
		if !st.Voting {
			return
		}
		floor, last = max(floor, st.Promised), max(last, st.LogLast, st.Commit)
	}
	n.disk.durable = newDurableModel()
	if !w.p.WipeNaive {
		n.disk.durable.promised = paxos.MakeBallot(floor.Round()+1, 0)
		n.voteFrom = last
	}
	w.chk.onWipe(n)
	w.logf("wipe r%d: rejoins with promise floor %v, votes from slot %d", n.id, n.disk.durable.promised, last)
}

// pause stops the process (SIGSTOP): its clock goes on, nothing of it runs.
func (n *node) pause() {
	if n.up && !n.paused {
		n.w.logf("pause r%d", n.id)
		n.paused = true
	}
}

// resume continues it (SIGCONT): one wake-up sees the time that passed, then every input that
// waited, then the ticker's one pending tick.
func (n *node) resume() {
	if !n.up || !n.paused {
		return
	}
	n.w.logf("resume r%d", n.id)
	n.paused = false
	inputs := n.deferred
	n.deferred = nil
	n.wake(func() {
		for _, in := range inputs {
			in()
		}
		n.d.OnTicker()
	})
}

// failDisk makes the node's disk fail from now on (ENOSPC, EIO): the driver must fence itself.
func (n *node) failDisk() {
	if n.up && n.disk.failed == nil {
		n.w.logf("disk of r%d fails", n.id)
		n.disk.failed = errDiskFailed
		n.wake(n.d.OnDurable)
	}
}
