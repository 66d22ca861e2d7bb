package sim

import (
	"container/heap"
	"encoding/binary"
	"fmt"
	"hash"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"slices"

	"github.com/sofadb/sofadb/kv"
	"github.com/sofadb/sofadb/paxos"
)

// Result is what a run found.
type Result struct {
	Params     Params
	Violations []string
	// Kinds names the checker behind each violation (parallel to Violations).
	Kinds []string
	// Digest hashes every event the run processed: the same seed must give the same digest.
	Digest uint64
	Events int
	Stats  Stats
}

// Stats summarise a run, for reports and for scenario tests.
type Stats struct {
	ChosenSlots    uint64 // highest chosen prefix reached
	Acked          int    // client commands acknowledged
	Proposed       int    // distinct client commands issued
	Crashes        int
	Partitions     int
	Pauses         int
	DiskFailures   int
	Preempted      uint64 // summed over replicas
	Campaigns      uint64
	Messages       int
	HealUs         int64 // simulated time from heal to convergence
	Converged      bool
	EndUs          int64
	SnapshotsSent  int
	LeaseRefusals  uint64
	DuplicateSlots int // commands chosen in more than one slot (retries), applied once each
	LeaseReads     int // reads served from a lease, each checked
	LogReads       int // reads served through the log, each checked
	Wipes          int // disks lost and rejoined (Params.WipePct)
}

// Failed reports whether the run broke any property.
func (r Result) Failed() bool { return len(r.Violations) > 0 }

type eventKind uint8

const (
	evTick eventKind = iota + 1
	evDeliver
	evSyncDone
	evClientSend
	evClientTimeout
	evClientReply
	evClientRequest
	evClientRetry
	evCrash
	evRestart
	evPartition
	evHealPartition
	evBgDone
	evCrashNode
	evPause
	evResume
	evDiskFail
)

type event struct {
	atUs int64
	seq  uint64
	kind eventKind
	node int // index into world.nodes (or client index for client events)
	gen  uint64
	msg  paxos.Message
	cmsg clientMsg
}

type eventQueue []*event

func (q eventQueue) Len() int { return len(q) }
func (q eventQueue) Less(i, j int) bool {
	if q[i].atUs != q[j].atUs {
		return q[i].atUs < q[j].atUs
	}
	return q[i].seq < q[j].seq
}
func (q eventQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *eventQueue) Push(x any)   { *q = append(*q, x.(*event)) }
func (q *eventQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

// world is one simulated cluster, its clients, its network and the checkers watching them.
type world struct {
	p      Params
	rng    *rand.Rand
	nowUs  int64
	seq    uint64
	q      eventQueue
	nodes  []*node
	cls    []*client
	chk    *checker
	trace  hash.Hash64
	buf    [8]byte
	events int
	healed bool
	log    io.Writer
	stats  Stats
	// cut[i][j] drops messages from node i to node j (partitions).
	cut [][]bool
	// drop, when set, drops any peer message it returns true for: scenario tests use it to script
	// faults precisely ("the leader never hears its accept replies").
	drop func(from int, m *paxos.Message) bool
}

// Run executes one seeded simulation and checks it. log, when not nil, receives a line per
// notable event (crashes, partitions, violations) for debugging a failing seed.
//
// A panic in the core (a broken invariant it asserts) is a violation of kind "core-invariant", not
// a crash of the simulator: mutation canaries are often caught that way.
func Run(p Params, log io.Writer) Result {
	w := newWorld(p, log)
	func() {
		defer func() {
			if x := recover(); x != nil {
				w.chk.violate("core-invariant", "panic: %v", x)
			}
		}()
		w.run()
	}()
	return Result{Params: p, Violations: w.chk.violations, Kinds: w.chk.kinds, Digest: w.trace.Sum64(),
		Events: w.events, Stats: w.finalStats()}
}

func newWorld(p Params, log io.Writer) *world {
	w := &world{p: p, rng: rand.New(rand.NewPCG(p.Seed, 0x0b5e55ed)), trace: fnv.New64a(), log: log}
	w.chk = newChecker(p.Replicas, w)
	w.cut = make([][]bool, p.Replicas)
	for i := range w.cut {
		w.cut[i] = make([]bool, p.Replicas)
	}
	peers := make([]paxos.ReplicaID, p.Replicas)
	for i := range peers {
		peers[i] = paxos.ReplicaID(i + 1)
	}
	for i := range p.Replicas {
		n := &node{w: w, idx: i, id: peers[i], peers: peers}
		n.disk = &simDisk{n: n, durable: newDurableModel()}
		if p.ClockSkewPct > 0 {
			n.skew = (w.rng.Float64()*2 - 1) * float64(p.ClockSkewPct) / 100
		}
		w.nodes = append(w.nodes, n)
		n.start()
		// Stagger first ticks so replicas do not run in lock step.
		w.schedule(&event{kind: evTick, node: i, atUs: int64(w.rng.IntN(p.TickUs))})
	}
	for i := range p.Clients + p.Readers {
		c := &client{w: w, idx: i, id: uint64(1000 + i), pin: -1, hint: -1, follow: w.rng.IntN(100) < p.FollowLeaderPct}
		if i >= p.Clients {
			c.reader, c.follow = true, true
		}
		w.cls = append(w.cls, c)
		w.schedule(&event{kind: evClientSend, node: i, atUs: int64(w.rng.IntN(5_000))})
	}
	if p.CrashEveryUs > 0 {
		w.schedule(&event{kind: evCrash, atUs: w.expDelay(p.CrashEveryUs)})
	}
	if p.PartitionEveryUs > 0 {
		w.schedule(&event{kind: evPartition, atUs: w.expDelay(p.PartitionEveryUs)})
	}
	if p.PauseEveryUs > 0 {
		w.schedule(&event{kind: evPause, atUs: w.expDelay(p.PauseEveryUs)})
	}
	if p.DiskFailEveryUs > 0 {
		w.schedule(&event{kind: evDiskFail, atUs: w.expDelay(p.DiskFailEveryUs)})
	}
	return w
}

func (w *world) logf(format string, args ...any) {
	if w.log != nil {
		fmt.Fprintf(w.log, "%10dus ", w.nowUs)
		fmt.Fprintf(w.log, format, args...)
		fmt.Fprintln(w.log)
	}
}

// expDelay draws an exponentially distributed delay with the given mean.
func (w *world) expDelay(meanUs int) int64 {
	return w.nowUs + 1 + int64(w.rng.ExpFloat64()*float64(meanUs))
}

func (w *world) schedule(e *event) {
	w.seq++
	e.seq = w.seq
	heap.Push(&w.q, e)
}

func (w *world) hashU64(v uint64) {
	binary.LittleEndian.PutUint64(w.buf[:], v)
	w.trace.Write(w.buf[:])
}

// traceEvent folds an event into the run's digest.
func (w *world) traceEvent(e *event) {
	w.hashU64(uint64(e.atUs))
	w.hashU64(uint64(e.kind)<<32 | uint64(e.node))
	if e.kind == evDeliver {
		m := &e.msg
		w.hashU64(uint64(m.Type)<<32 | uint64(m.From)<<16 | uint64(m.To))
		w.hashU64(uint64(m.Ballot))
		w.hashU64(m.Slot ^ m.Commit<<20)
	}
}

// run is the event loop: the fault phase for FaultEvents events, then heal and run until everything
// converges or HealBoundUs passes.
func (w *world) run() {
	healDeadline := int64(-1)
	for w.q.Len() > 0 && !w.chk.stop() {
		if !w.healed && w.events >= w.p.FaultEvents {
			w.heal()
			healDeadline = w.nowUs + int64(w.p.HealBoundUs)
		}
		e := heap.Pop(&w.q).(*event)
		w.nowUs = e.atUs
		if w.healed && w.nowUs > healDeadline {
			w.chk.violate("liveness", "liveness: not converged %dus after heal: %s", w.p.HealBoundUs, w.convergeReport())
			return
		}
		w.events++
		w.traceEvent(e)
		w.dispatch(e)
		if w.healed && e.kind == evTick && e.node == w.firstLive() && w.converged() {
			w.stats.HealUs = w.nowUs - (healDeadline - int64(w.p.HealBoundUs))
			w.stats.Converged = true
			w.chk.final()
			return
		}
	}
}

func (w *world) dispatch(e *event) {
	if w.p.TraceMessages && e.kind == evDeliver {
		m := &e.msg
		w.logf("r%d<-r%d %v ballot=%v slot=%d commit=%d stamp=%d entries=%d cmds=%d", m.To, m.From, m.Type, m.Ballot, m.Slot, m.Commit, m.Stamp, len(m.Entries), len(m.Cmds))
	}
	switch e.kind {
	case evTick:
		w.nodes[e.node].tick()
		w.schedule(&event{kind: evTick, node: e.node, atUs: w.nowUs + int64(w.p.TickUs) + int64(w.rng.IntN(w.p.TickUs/20+1))})
	case evDeliver:
		w.nodes[e.node].deliver(&e.msg)
	case evSyncDone:
		w.nodes[e.node].disk.syncDone(e.gen)
	case evClientSend:
		w.cls[e.node].send()
	case evClientTimeout:
		w.cls[e.node].timeout(e.gen)
	case evClientReply:
		w.cls[e.node].reply(&e.cmsg)
	case evClientRequest:
		w.nodes[e.node].clientRequest(&e.cmsg)
	case evClientRetry:
		w.cls[e.node].retry(e.gen)
	case evCrash:
		w.crashSomeone()
	case evRestart:
		w.nodes[e.node].restart()
	case evPartition:
		w.partition()
	case evHealPartition:
		w.healPartitions()
	case evBgDone:
		w.nodes[e.node].bgDone(e.gen)
	case evPause:
		w.pauseSomeone()
	case evResume:
		w.nodes[e.node].resume()
	case evDiskFail:
		w.failSomeDisk()
	case evCrashNode:
		w.crashNode(w.nodes[e.node], int(e.gen))
	}
}

// heal ends the fault phase: no more loss, duplication, long delays, crashes or partitions; every
// down replica restarts, except DeadForGood of them, which crash now (if up) and never return;
// clients finish what they started and issue nothing new.
func (w *world) heal() {
	w.healed = true
	w.logf("heal")
	w.healPartitions()
	if w.p.DeadForGood > 0 {
		for _, i := range w.rng.Perm(len(w.nodes))[:w.p.DeadForGood] {
			n := w.nodes[i]
			if n.up {
				n.crash()
			}
			n.dead = true
			w.logf("r%d dead for good", n.id)
		}
	}
	for _, n := range w.nodes {
		if n.up && n.paused {
			n.resume()
		}
		if n.up && n.disk.failed != nil {
			n.crash() // a fenced replica is restarted on a repaired disk
		}
		if !n.up {
			n.restart()
		}
	}
}

// send puts a peer message on the network: partitions, loss, duplication and delay apply.
func (w *world) send(from int, m paxos.Message) {
	to := int(m.To) - 1
	w.stats.Messages++
	if to == from {
		w.schedule(&event{kind: evDeliver, node: to, atUs: w.nowUs, msg: m})
		return
	}
	if w.drop != nil && w.drop(from, &m) {
		return
	}
	m, ok := w.throughWire(&m)
	if !ok {
		return
	}
	if m.Type == paxos.MsgSnapshot && !w.healed && w.p.BadSnapshotPct > 0 && w.rng.IntN(100) < w.p.BadSnapshotPct {
		m.Data = badSnapshot(m.Data) // a peer's bug: the receiver must refuse it
	}
	if !w.healed && (w.cut[from][to] || w.rng.IntN(100) < w.p.LossPct) {
		return
	}
	copies := 1
	if !w.healed && w.rng.IntN(100) < w.p.DupPct {
		copies = 2
	}
	for range copies {
		w.schedule(&event{kind: evDeliver, node: to, atUs: w.nowUs + w.linkDelay(), msg: m})
	}
}

func (w *world) linkDelay() int64 {
	if !w.healed && w.p.LongDelayPct > 0 && w.rng.IntN(100) < w.p.LongDelayPct {
		return int64(w.rng.IntN(w.p.LongDelayMaxUs) + 1)
	}
	return int64(w.p.DelayMinUs + w.rng.IntN(w.p.DelaySpreadUs+1))
}

// sendClient carries a request or reply between a client and a replica: loss and delay, no partition.
func (w *world) sendClient(kind eventKind, target int, cm clientMsg) {
	if !w.healed && w.rng.IntN(100) < w.p.LossPct {
		return
	}
	w.schedule(&event{kind: kind, node: target, atUs: w.nowUs + w.linkDelay(), cmsg: cm})
}

func (w *world) crashSomeone() {
	if w.healed {
		return
	}
	up := []*node{}
	for _, n := range w.nodes {
		if n.up {
			up = append(up, n)
		}
	}
	if len(up) > 0 {
		n := up[w.rng.IntN(len(up))]
		n.crash()
		w.schedule(&event{kind: evRestart, node: n.idx, atUs: w.nowUs + int64(w.p.DownMinUs+w.rng.IntN(w.p.DownSpreadUs+1))})
	}
	w.schedule(&event{kind: evCrash, atUs: w.expDelay(w.p.CrashEveryUs)})
}

// pauseSomeone stops a random replica (SIGSTOP) for a while, then resumes it.
func (w *world) pauseSomeone() {
	if w.healed {
		return
	}
	n := w.nodes[w.rng.IntN(len(w.nodes))]
	if n.up && !n.paused {
		n.pause()
		w.stats.Pauses++
		w.schedule(&event{kind: evResume, node: n.idx, atUs: w.nowUs + int64(w.p.PauseMinUs+w.rng.IntN(w.p.PauseSpanUs+1))})
	}
	w.schedule(&event{kind: evPause, atUs: w.expDelay(w.p.PauseEveryUs)})
}

// failSomeDisk makes a random replica's disk fail; it stays fenced until it crashes or the heal
// restarts it on a repaired disk.
func (w *world) failSomeDisk() {
	if w.healed {
		return
	}
	w.nodes[w.rng.IntN(len(w.nodes))].failDisk()
	w.stats.DiskFailures++
	w.schedule(&event{kind: evDiskFail, atUs: w.expDelay(w.p.DiskFailEveryUs)})
}

// crashNode crashes one replica, if it is still the incarnation the crash was aimed at, and
// schedules its restart like any other crash.
func (w *world) crashNode(n *node, inc int) {
	if w.healed || !n.up || n.inc != inc {
		return
	}
	n.crash()
	w.schedule(&event{kind: evRestart, node: n.idx, atUs: w.nowUs + int64(w.p.DownMinUs+w.rng.IntN(w.p.DownSpreadUs+1))})
}

// partition splits the replicas in two random groups, cutting both directions or (OneWayPct) one.
func (w *world) partition() {
	if w.healed {
		return
	}
	w.stats.Partitions++
	if w.p.LinkCutPct > 0 && w.rng.IntN(100) < w.p.LinkCutPct {
		a := w.rng.IntN(len(w.nodes))
		b := (a + 1 + w.rng.IntN(len(w.nodes)-1)) % len(w.nodes)
		w.cut[a][b] = true
		oneWay := w.rng.IntN(100) < w.p.OneWayPct
		if !oneWay {
			w.cut[b][a] = true
		}
		w.logf("link cut r%d-r%d one-way=%v", a+1, b+1, oneWay)
	} else {
		w.bipartition()
	}
	w.schedule(&event{kind: evHealPartition, atUs: w.nowUs + int64(w.p.PartitionMinUs+w.rng.IntN(w.p.PartitionSpanUs+1))})
	w.schedule(&event{kind: evPartition, atUs: w.expDelay(w.p.PartitionEveryUs)})
}

// bipartition splits the replicas in two random groups, cutting both directions or (OneWayPct) one.
func (w *world) bipartition() {
	side := make([]bool, len(w.nodes))
	for i := range side {
		side[i] = w.rng.IntN(2) == 0
	}
	oneWay := w.rng.IntN(100) < w.p.OneWayPct
	for i := range side {
		for j := range side {
			if side[i] && !side[j] {
				w.cut[i][j] = true
				if !oneWay {
					w.cut[j][i] = true
				}
			}
		}
	}
	w.logf("partition %v one-way=%v", side, oneWay)
}

func (w *world) healPartitions() {
	for i := range w.cut {
		clear(w.cut[i])
	}
}

// converged says every replica is up, has applied the highest chosen prefix any of them knows, and
// holds the same state, and every client has finished.
func (w *world) converged() bool {
	for _, c := range w.cls {
		if c.waiting {
			return false
		}
	}
	top := uint64(0)
	var live []*node
	for _, n := range w.nodes {
		if n.dead {
			continue
		}
		if !n.up {
			return false
		}
		top = max(top, n.core().Status().Commit)
		live = append(live, n)
	}
	d := live[0].st().Digest()
	for _, n := range live {
		if n.st().Applied() != top || n.st().Digest() != d {
			return false
		}
	}
	return true
}

// firstLive is the index of the first replica not dead for good: its ticks pace convergence checks.
func (w *world) firstLive() int {
	for i, n := range w.nodes {
		if !n.dead {
			return i
		}
	}
	return 0
}

func (w *world) convergeReport() string {
	s := ""
	for _, n := range w.nodes {
		st := "down"
		if n.dead {
			st = "dead"
		}
		if n.up {
			rs := n.core().Status()
			st = fmt.Sprintf("%s ballot=%v leader=%d commit=%d applied=%d known=%d", rs.Role, rs.Ballot, rs.Leader, rs.Commit, n.st().Applied(), rs.LogLast)
		}
		s += fmt.Sprintf(" [r%d %s]", n.id, st)
	}
	waiting := 0
	for _, c := range w.cls {
		if c.waiting {
			waiting++
		}
	}
	return fmt.Sprintf("%s clients-waiting=%d", s, waiting)
}

func (w *world) finalStats() Stats {
	s := w.stats
	s.EndUs = w.nowUs
	s.Wipes = w.chk.wipes
	for _, n := range w.nodes {
		if n.d != nil {
			st := n.core().Status()
			s.ChosenSlots = max(s.ChosenSlots, st.Commit)
			s.Preempted += st.Metrics.Preempted
			s.Campaigns += st.Metrics.Campaigns
			s.LeaseRefusals += st.Metrics.LeaseRefusals
		}
		s.Preempted += n.metric.Preempted
		s.Campaigns += n.metric.Campaigns
		s.LeaseRefusals += n.metric.LeaseRefusals
	}
	s.Acked = len(w.chk.acked)
	s.Proposed = len(w.chk.proposed)
	s.DuplicateSlots = w.chk.dupSlots
	s.LeaseReads, s.LogReads = w.chk.leaseReads, w.chk.logReads
	return s
}

// sortedKeys returns a map's keys in order, for deterministic iteration.
func sortedKeys[K interface{ ~uint64 | ~int }, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// badSnapshot is a snapshot the state machine reads, but of an empty state: its slot disagrees with
// the one the message claims.
func badSnapshot(data []byte) []byte { return emptySnapshot }

var emptySnapshot = kv.NewState().AppendSnapshot(nil)
