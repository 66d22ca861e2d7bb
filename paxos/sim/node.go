package sim

import (
	"slices"

	"github.com/sofadb/sofadb/disk"
	"github.com/sofadb/sofadb/paxos"
)

// node is one simulated replica process: the real core, the real state machine, and a disk model
// with the fsync discipline of disk/: writes queue, one sync at a time covers everything queued when
// it started, replies wait for their sync, and a crash loses what was not synced (except a random
// prefix the OS happened to write out). Snapshots are saved as the runtime saves them: in the
// background, one at a time, taking their own time, and only then reported to the core (Compact).
type node struct {
	w       *world
	idx     int
	id      paxos.ReplicaID
	peers   []paxos.ReplicaID
	up      bool
	dead    bool // down for good: never restarts
	inc     int  // incarnation: 1 at first start, +1 per restart
	r       *paxos.Replica
	state   *disk.State
	durable *durableModel
	pending []*write // handed to the disk, not yet synced, in order
	syncing bool
	syncN   int    // how many of pending the sync in flight covers
	syncGen uint64 // invalidates a sync completion after a crash
	owes    map[cmdKey]int
	lastSnp uint64
	results []disk.Result
	metrics paxos.Metrics // summed over dead incarnations
	// Background snapshot saves, in order; bgGen invalidates a completion after a crash.
	bg       []paxos.Snapshot
	bgBusy   bool
	bgGen    uint64
	readWait []leaseRead // lease reads waiting for the state to reach their read index
}

// leaseRead is a client read admitted under the leader's lease, served once applied reaches index.
type leaseRead struct {
	cm    clientMsg
	index uint64
}

// write is one Ready's worth of persistence, plus the messages waiting for it to be durable.
type write struct {
	promised  paxos.Ballot
	entries   []paxos.Entry
	chosenTo  uint64
	compactTo uint64
	after     []paxos.Message
	needSync  bool
}

func (wr *write) empty() bool {
	return wr.promised == 0 && len(wr.entries) == 0 && wr.chosenTo == 0 && wr.compactTo == 0 &&
		len(wr.after) == 0
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
	if wr.compactTo != 0 {
		for _, s := range sortedKeys(d.entries) {
			if s <= wr.compactTo {
				delete(d.entries, s)
			}
		}
	}
}

func (d *durableModel) toDurable() paxos.Durable {
	out := paxos.Durable{Promised: d.promised, Applied: d.snap.Slot, ChosenTo: d.chosenTo}
	for _, s := range sortedKeys(d.entries) {
		if s > d.snap.Slot {
			out.Entries = append(out.Entries, d.entries[s])
		}
	}
	return out
}

func (n *node) config() paxos.Config {
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
	if p.TruncateSilentTicks > 0 {
		cfg.TruncateSilentTicks = p.TruncateSilentTicks
	}
	return cfg
}

func (n *node) start() {
	n.inc++
	d := n.durable.toDurable()
	n.state = disk.NewState()
	if n.durable.snap.Data != nil {
		if err := n.state.Restore(n.durable.snap.Data); err != nil {
			n.w.chk.violate("snapshot-restores", "r%d: durable snapshot does not restore: %v", n.id, err)
		}
	}
	r, err := paxos.New(n.config(), &d)
	if err != nil {
		// A bad config is a simulator bug; inconsistent durable state is the core's or the model's.
		n.w.chk.violate("restart", "r%d does not restart: %v", n.id, err)
		n.up = false
		return
	}
	n.r, n.up, n.owes, n.lastSnp = r, true, map[cmdKey]int{}, n.durable.snap.Slot
	n.w.chk.onStart(n)
	n.process()
}

func (n *node) tick() {
	if n.up {
		n.r.Tick()
		n.process()
	}
}

func (n *node) deliver(m *paxos.Message) {
	if !n.up {
		return
	}
	n.w.chk.onDeliver(n, m)
	n.r.Step(m)
	n.process()
}

func (n *node) clientRequest(cm *clientMsg) {
	if !n.up {
		return
	}
	if cm.cmd.Op == paxos.OpGet && n.w.p.LeaseReads {
		if idx, ok := n.r.ReadIndex(); ok {
			n.w.chk.checkLeaseIndex(n, idx)
			if n.state.Applied() >= idx {
				n.serveRead(cm)
			} else {
				n.readWait = append(n.readWait, leaseRead{*cm, idx})
			}
			return
		}
	}
	if err := n.r.Propose([]paxos.Command{cm.cmd}); err != nil {
		n.w.sendClient(evClientReply, cm.client, clientMsg{seq: cm.cmd.Seq, retry: true})
		return
	}
	n.owes[keyOf(&cm.cmd)] = cm.client
	n.process()
}

// process drains the core's Ready: the runtime's job, done the way the real runtime does it.
//
// After every step, the lease oracle: if the replica could serve a lease read now, it must know
// every slot any replica has applied.
func (n *node) process() {
	for range 100 {
		rd := n.r.Ready()
		if rd.Empty() {
			if idx, ok := n.r.ReadIndex(); ok {
				n.w.chk.checkLeaseIndex(n, idx)
			}
			return
		}
		n.handle(&rd)
		n.r.Advance(&rd)
	}
	n.w.chk.violate("ready-drains", "r%d: Ready never empties", n.id)
}

func (n *node) handle(rd *paxos.Ready) {
	wr := &write{promised: rd.Promised, entries: rd.Entries, chosenTo: rd.ChosenTo, compactTo: rd.CompactTo,
		after: rd.AfterSync, needSync: rd.MustSync || len(rd.AfterSync) > 0}
	if rd.Snapshot != nil {
		n.installSnapshot(rd.Snapshot)
		n.saveSnapshot(*rd.Snapshot)
	}
	for i := range rd.Committed {
		n.apply(&rd.Committed[i])
	}
	for _, m := range rd.Messages {
		n.emit(m)
	}
	for i := range rd.Dropped {
		n.answer(&rd.Dropped[i], clientMsg{retry: true, leader: rd.Leader})
	}
	for _, to := range rd.SendSnapshot {
		if n.state.Applied() > 0 {
			n.w.stats.SnapshotsSent++
			n.emit(paxos.Message{Type: paxos.MsgSnapshot, From: n.id, To: to, Slot: n.state.Applied(), Data: n.state.AppendSnapshot(nil)})
		}
	}
	if p := n.w.p.SnapshotEvery; p > 0 && !n.bgBusy && n.state.Applied() >= n.lastSnp+p {
		n.saveSnapshot(paxos.Snapshot{Slot: n.state.Applied(), Data: n.state.AppendSnapshot(nil)})
	}
	if !wr.empty() {
		n.pending = append(n.pending, wr)
		n.maybeSync()
	}
}

func (n *node) emit(m paxos.Message) {
	n.w.chk.onSend(n, &m)
	n.w.send(n.idx, m)
}

func (n *node) apply(e *paxos.Entry) {
	var err error
	n.results, err = n.state.Apply(e.Slot, e.Cmds, n.results[:0])
	if err != nil {
		n.w.chk.violate("apply-order", "r%d: apply slot %d: %v", n.id, e.Slot, err)
		return
	}
	n.w.chk.onApply(n, e, n.results)
	for i := range e.Cmds {
		res := &n.results[i]
		n.answer(&e.Cmds[i], clientMsg{ok: !res.Stale && !res.Expired, retry: res.Stale, expired: res.Expired,
			session: res.Session, servedAt: e.Slot, servedIdx: i, found: res.Found, value: append([]byte(nil), res.Value...)})
	}
	if len(n.readWait) > 0 {
		kept := n.readWait[:0]
		for _, lr := range n.readWait {
			if n.state.Applied() >= lr.index {
				n.serveRead(&lr.cm)
			} else {
				kept = append(kept, lr)
			}
		}
		n.readWait = kept
	}
}

// serveRead answers a lease read from the local state, as the runtime does.
func (n *node) serveRead(cm *clientMsg) {
	v, ok := n.state.Get(cm.cmd.Key)
	n.w.sendClient(evClientReply, cm.client, clientMsg{seq: cm.cmd.Seq, ok: true, lease: true, leader: n.id,
		servedAt: n.state.Applied(), servedIdx: -1, found: ok, value: append([]byte(nil), v...)})
}

// saveSnapshot queues a snapshot for the background saver: durable only when its job completes.
func (n *node) saveSnapshot(s paxos.Snapshot) {
	n.lastSnp = max(n.lastSnp, s.Slot)
	n.bg = append(n.bg, s)
	n.startBackground()
}

func (n *node) startBackground() {
	if n.bgBusy || len(n.bg) == 0 {
		return
	}
	n.bgBusy = true
	at := n.w.nowUs + int64(n.w.p.SnapSaveMinUs+n.w.rng.IntN(n.w.p.SnapSaveSpreadUs+1))
	n.w.schedule(&event{kind: evSnapSaved, node: n.idx, gen: n.bgGen, atUs: at})
}

// snapSaved makes the oldest queued snapshot durable and tells the core, which may then persist its
// chosen prefix past it and truncate the log below it.
func (n *node) snapSaved(gen uint64) {
	if !n.up || gen != n.bgGen || !n.bgBusy {
		return
	}
	s := n.bg[0]
	n.bg = n.bg[1:]
	n.bgBusy = false
	if s.Slot > n.durable.snap.Slot {
		n.durable.snap = s
	}
	n.r.Compact(s.Slot)
	n.startBackground()
	n.process()
}

// answer replies to the client this replica owes a reply for cmd, if any.
func (n *node) answer(cmd *paxos.Command, cm clientMsg) {
	k := keyOf(cmd)
	ci, ok := n.owes[k]
	if !ok {
		return
	}
	delete(n.owes, k)
	cm.seq = cmd.Seq
	if cm.leader == 0 {
		cm.leader = n.r.Status().Leader
	}
	n.w.sendClient(evClientReply, ci, cm)
}

func (n *node) installSnapshot(s *paxos.Snapshot) {
	if err := n.state.Restore(s.Data); err != nil {
		n.w.chk.violate("snapshot-restores", "r%d: snapshot for slot %d does not restore: %v", n.id, s.Slot, err)
		return
	}
	n.w.logf("r%d installed a peer snapshot at slot %d", n.id, s.Slot)
	n.w.chk.onSnapshotInstalled(n, s.Slot)
	if !n.w.healed && n.w.p.CrashInSavePct > 0 && n.w.rng.IntN(100) < n.w.p.CrashInSavePct {
		at := n.w.nowUs + 1 + int64(n.w.rng.IntN(n.w.p.SnapSaveMinUs+n.w.p.SnapSaveSpreadUs+1))
		n.w.schedule(&event{kind: evCrashNode, node: n.idx, gen: uint64(n.inc), atUs: at})
	}
}

// maybeSync starts an fsync covering every write queued so far, unless one is in flight.
func (n *node) maybeSync() {
	if n.syncing || !slices.ContainsFunc(n.pending, func(wr *write) bool { return wr.needSync }) {
		return
	}
	n.syncing, n.syncN = true, len(n.pending)
	n.syncGen++
	at := n.w.nowUs + int64(n.w.p.SyncMinUs+n.w.rng.IntN(n.w.p.SyncSpreadUs+1))
	n.w.schedule(&event{kind: evSyncDone, node: n.idx, gen: n.syncGen, atUs: at})
}

// syncDone makes the covered writes durable and releases the messages that waited for them.
func (n *node) syncDone(gen uint64) {
	if !n.up || gen != n.syncGen || !n.syncing {
		return
	}
	done := n.pending[:n.syncN]
	n.pending = slices.Clone(n.pending[n.syncN:])
	n.syncing = false
	for _, wr := range done {
		n.makeDurable(wr)
		for _, m := range wr.after {
			n.emit(m)
		}
	}
	n.maybeSync()
	n.process()
}

func (n *node) makeDurable(wr *write) {
	before := n.durable.chosenTo
	n.durable.apply(wr)
	n.w.chk.onDurable(n, wr)
	if n.durable.chosenTo > before {
		n.w.chk.checkDurablePrefix(n, before)
	}
}

// crash kills the process: memory, unsynced writes (but a random prefix), and pending replies go.
func (n *node) crash() {
	n.w.stats.Crashes++
	n.w.logf("crash r%d", n.id)
	for _, wr := range n.pending {
		if n.w.rng.IntN(100) >= n.w.p.UnsyncedKeepPct {
			break
		}
		n.makeDurable(wr)
	}
	st := n.r.Status().Metrics
	n.metrics.Preempted += st.Preempted
	n.metrics.Campaigns += st.Campaigns
	n.metrics.LeaseRefusals += st.LeaseRefusals
	if len(n.bg) > 0 {
		n.w.logf("r%d crashed with %d snapshot saves pending (first slot %d, durable %d)", n.id, len(n.bg), n.bg[0].Slot, n.durable.snap.Slot)
	}
	n.pending, n.syncing, n.owes = nil, false, nil
	n.syncGen++
	n.bg, n.bgBusy, n.readWait = nil, false, nil
	n.bgGen++
	n.up, n.r, n.state = false, nil, nil
}

func (n *node) restart() {
	if n.up || n.dead {
		return
	}
	n.w.logf("restart r%d", n.id)
	n.start()
}
