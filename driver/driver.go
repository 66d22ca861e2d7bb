// Package driver runs one SofaDB replica: the loop body that owns the Paxos core and the key-value
// state machine and carries out the core's Ready contract (persist, release the replies that wait
// for the disk, apply in order, answer clients, serve lease and log reads, take and install
// snapshots, enforce deadlines). It is written once, against small interfaces for everything it
// cannot do deterministically (a clock, storage, a transport, a background executor), and used by
// the replica process with the real ones (package replica) and by the simulator with simulated
// ones (package paxos/sim): the simulator's seeds drive the same code as the process, as
// TigerBeetle's VOPR drives the real replica with simulated IO.
//
// A Driver is not safe for concurrent use: one goroutine (the replica's loop, or the simulator)
// calls every method. Each wake-up is Begin, then any number of inputs (Step, Submit, OnDurable,
// OnTicker, a background job's completion), then End, which does everything the inputs led to and
// flushes the transport once.
package driver

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/sofadb/sofadb/kv"
	"github.com/sofadb/sofadb/paxos"
	"github.com/sofadb/sofadb/wire"
)

// Clock is the driver's time: the wall clock's monotonic reading in the process, simulated time in
// the simulator. The core counts ticks of Config.TickInterval of this clock, never wake-ups: a
// process that was stopped must see the time that passed (or it would serve reads from a lease that
// expired while it slept).
type Clock interface {
	Now() time.Time
}

// Storage is the durable acceptor state. Persist queues a Ready's durable part and never blocks;
// records resolve in order, and Durable is the highest sequence number resolved. After a failure
// Err is non-nil for good.
type Storage interface {
	// Persist queues rd's Promised, Entries and ChosenTo as one record (fsynced when rd.MustSync)
	// and returns its sequence number. An error means nothing was queued and the store is unusable
	// for this record (too large, failed, closed): the driver fences itself.
	Persist(rd *paxos.Ready) (seq uint64, err error)
	// Durable is the highest sequence number resolved (written, and synced where asked).
	Durable() uint64
	// Err is the sticky failure, or nil.
	Err() error
	// Behind says the backlog of unresolved records is over the store's bounds: the driver then
	// refuses new commands (Busy) and keeps serving peers.
	Behind() bool
	// SaveSnapshot and Truncate run on the background executor, never on the loop.
	SaveSnapshot(data []byte) error
	Truncate(upTo uint64) error
}

// Transport carries peer messages. Send never blocks (a full queue drops: Paxos resends); Flush
// ends a wake-up, so everything sent to a peer in one wake-up leaves in one write. Send may be
// called from a background job too (snapshots for lagging peers).
type Transport interface {
	Send(m *paxos.Message)
	Flush()
}

// Executor runs slow work off the loop, one job at a time in submission order: snapshot encoding
// and saving, log truncation. A job returns a completion that must run on the loop, inside a
// Begin/End pair, once the job is done. Go reports false when its queue is full; the driver then
// skips the job (each kind is retried by a later trigger).
type Executor interface {
	Go(job func() (done func())) bool
}

// Hooks let a checker watch the driver from inside (the simulator's); every field may be nil.
type Hooks struct {
	// Applied is called after each chosen slot is applied, with each command decoded and its result.
	Applied func(e *paxos.Entry, cmds []kv.Command, results []kv.Result)
	// SnapshotInstalled is called after a peer's snapshot replaced the state.
	SnapshotInstalled func(slot uint64)
	// Local is called for each message the replica sends itself (its own promises and votes),
	// when it is released: such messages never reach the transport.
	Local func(m *paxos.Message)
}

// Mutation plants a bug in the driver, for the simulator's runtime canaries only.
type Mutation uint8

const (
	// MutNone is the correct driver.
	MutNone Mutation = iota
	// MutTickerTicks counts one tick per ticker wake-up instead of the clock's elapsed time: a
	// process paused for seconds believes one tick passed and keeps its lease (the bug pinned by
	// TestE2EPausedLeaderServesNoStaleLeaseReads).
	MutTickerTicks
	// MutReleaseEarly sends AfterSync messages (promises, accept replies) as soon as their record is
	// queued, before it is durable.
	MutReleaseEarly
	// MutNoSnapshotCheck installs a peer's snapshot without first checking it restores to the slot
	// it claims.
	MutNoSnapshotCheck
	mutLimit
)

var mutationNames = [...]string{"none", "ticker-ticks", "release-early", "no-snapshot-check"}

func (m Mutation) String() string {
	if int(m) < len(mutationNames) {
		return mutationNames[m]
	}
	return fmt.Sprintf("driver-mutation(%d)", uint8(m))
}

// Mutations lists every planted driver bug, for canary runs.
func Mutations() []Mutation {
	out := make([]Mutation, 0, mutLimit-1)
	for m := MutNone + 1; m < mutLimit; m++ {
		out = append(out, m)
	}
	return out
}

// ReadMode says how reads are served.
type ReadMode uint8

const (
	// ReadLease serves a read from the leader's own state while it holds a lease (a majority granted
	// it, for less than the election timeout by a drift margin); otherwise through the log.
	ReadLease ReadMode = iota
	// ReadLog sends every read through the log, like a write: the baseline leases are measured against.
	ReadLog
)

// ParseReadMode reads a ReadMode from a flag value.
func ParseReadMode(s string) (ReadMode, error) {
	switch s {
	case "lease":
		return ReadLease, nil
	case "log":
		return ReadLog, nil
	}
	return 0, fmt.Errorf("unknown read mode %q (want lease or log)", s)
}

func (m ReadMode) String() string { return [...]string{"lease", "log"}[m] }

// Config is what the driver needs beyond the core's own configuration.
type Config struct {
	Core         paxos.Config
	TickInterval time.Duration
	ReadMode     ReadMode
	// Redirect makes a non-leader answer NotLeader (with the leader's id) instead of forwarding.
	Redirect bool
	// Fsync off skips every fsync (rd.MustSync is cleared): ablation runs only.
	Fsync bool
	// SnapshotEverySlots and SnapshotEveryBytes trigger a snapshot after that many applied slots or
	// bytes of applied commands, whichever comes first; 0 disables that trigger.
	SnapshotEverySlots uint64
	SnapshotEveryBytes uint64
	// SnapshotStateRatio, when above 0, also makes a snapshot wait until the bytes applied since the
	// last one reach this multiple of the last snapshot's size: saving a snapshot costs in proportion
	// to the whole state, so fixed thresholds make a large state cost more per write the larger it
	// grows (a 146 MB state saved every 64 MB applied took 27 s per save, most of a replica's disk
	// and CPU, issue 12). With 1, saving costs at most about as many bytes as were applied, and the
	// log kept for truncation holds at most about one state's worth.
	SnapshotStateRatio float64
	// SnapshotBytesMax is the largest snapshot a peer can receive (one peer frame).
	SnapshotBytesMax int
	RequestTimeout   time.Duration
	// Seed drives the driver's own randomness (snapshot jitter, session nonces).
	Seed     uint64
	Logger   *slog.Logger
	Mutation Mutation
}

// Request is one client operation waiting for its answer. Reply runs on the loop and must not
// block. Cmd names the command: (ClientID, Seq) is its session and sequence number; HTTP requests
// have none and get one from the driver's pool (HTTP true, ClientID 0).
type Request struct {
	Cmd      paxos.Command
	Reply    func(Response)
	Deadline time.Time
	// Arrived is when the replica received the request (the shell sets it as it reads it; zero:
	// when Submit sees it). The latency histograms count from here.
	Arrived time.Time
	HTTP    bool

	op        kv.Op  // decoded from Cmd.Data by Submit
	key       []byte // aliases Cmd.Data
	readIndex uint64 // lease reads: serve once applied through here
	done      bool
	internal  bool // the driver's own request (an OpOpen for HTTP sessions): not counted in Replies
}

// Response answers a Request.
type Response struct {
	Status wire.Status
	Value  []byte // a get's value (a copy), or an open's 8-byte session id
	Leader paxos.ReplicaID
	// Where a read was served, for checkers: a log read's slot and index in its batch; a lease
	// read's applied slot, with Index -1 (after the whole slot).
	Slot  uint64
	Index int
}

// Stats are counters read from other goroutines (/metrics).
type Stats struct {
	Replies        [16]atomic.Uint64 // by wire.Status
	LeaseReads     atomic.Uint64
	LogReads       atomic.Uint64
	Timeouts       atomic.Uint64
	Busy           atomic.Uint64
	Leaderless     atomic.Uint64 // requests refused at once: no leader known for several election timeouts
	Coalesced      atomic.Uint64 // retries that waited for a copy already proposed instead of proposing another
	Snapshots      atomic.Uint64
	SnapshotErrors atomic.Uint64
	// SnapshotBytes is the size of the last snapshot saved: the state's size, encoded. (The runtime
	// sets it at start-up from the snapshot it restored.)
	SnapshotBytes atomic.Int64
	// Latency is the server-side latency of the requests served (OK or NotFound), from arrival to
	// answer: [0] reads, [1] writes (puts, deletes).
	Latency [2]LatencyHistogram
}

// LatencyBucketsNs are the upper bounds of the request latency histograms' buckets; a last,
// unbounded bucket follows.
var LatencyBucketsNs = [...]int64{100e3, 200e3, 500e3, 1e6, 2e6, 5e6, 10e6, 20e6, 50e6, 100e6, 200e6, 500e6, 1e9, 2e9, 5e9, 10e9}

// LatencyHistogram is a fixed-bucket histogram written by the loop and read by /metrics without a
// lock: each bucket counts the observations that fell in it (not cumulative).
type LatencyHistogram struct {
	Buckets [len(LatencyBucketsNs) + 1]atomic.Uint64
	SumNs   atomic.Uint64
}

// Observe counts one observation of ns nanoseconds.
func (h *LatencyHistogram) Observe(ns int64) {
	ns = max(ns, 0)
	i := 0
	for i < len(LatencyBucketsNs) && ns > LatencyBucketsNs[i] {
		i++
	}
	h.Buckets[i].Add(1)
	h.SumNs.Add(uint64(ns))
}

type cmdKey struct{ client, seq uint64 }

// waiters are the requests waiting for one command, and when its last copy was proposed here.
type waiters struct {
	reqs       []*Request
	proposedAt time.Time
}

type afterItem struct {
	seq  uint64
	msgs []paxos.Message
}

// Driver is one replica's loop body; see the package comment.
type Driver struct {
	cfg   Config
	log   *slog.Logger
	clock Clock
	store Storage
	tr    Transport
	exec  Executor
	hooks Hooks
	core  *paxos.Replica
	state *kv.State
	rng   *rand.Rand

	// pending holds, per command (client, seq), the requests waiting for it and when this replica
	// last proposed (or forwarded) a copy that has not been applied or dropped since: a client's
	// retry then waits for that copy instead of queueing another (see Submit). An entry whose
	// requests all went (timed out) while its copy is in flight is an orphan: kept for retries,
	// pruned a request timeout after the copy was proposed.
	pending       map[cmdKey]waiters
	orphans       int
	now           time.Time // the clock at the last Begin
	proposeBuf    []paxos.Command
	proposeReqs   []*Request
	afterQ        []afterItem
	local         []paxos.Message
	deadlines     []*Request
	readWait      []*Request
	results       []kv.Result
	kvCmds        []kv.Command // the slot being applied, decoded
	snapshotting  bool
	lastSnap      uint64
	bytesSince    uint64  // command bytes applied since the last snapshot began
	lastSnapBytes int     // size of the last snapshot saved
	snapJitter    float64 // this cycle's stretch of the snapshot thresholds, in [0, 0.5)
	lastTick      time.Time
	peerSnap      *kv.State // a peer snapshot validated by Step, for installSnapshot
	validating    uint64    // the slot of the peer snapshot being validated in the background (0: none)
	snapSending   map[paxos.ReplicaID]bool
	snapHold      map[paxos.ReplicaID]time.Time // no snapshot to that peer again before then
	failed        error
	leader        paxos.ReplicaID
	leaderSeen    time.Time // when a leader was last known (start counts): see leaderless
	refusing      bool      // leaderless at the last Begin: new requests are refused at once
	httpSess      httpSessions
	stopped       bool

	stats *Stats
}

// New builds a driver around a core restored from durable (nil for a new replica) and a state
// restored from the latest durable snapshot.
func New(cfg Config, clock Clock, store Storage, tr Transport, exec Executor, hooks Hooks,
	state *kv.State, durable *paxos.Durable) (*Driver, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.TickInterval <= 0 || cfg.RequestTimeout <= 0 {
		return nil, fmt.Errorf("driver: tick interval %v and request timeout %v must be positive", cfg.TickInterval, cfg.RequestTimeout)
	}
	core, err := paxos.New(cfg.Core, durable)
	if err != nil {
		return nil, err
	}
	d := &Driver{cfg: cfg, log: cfg.Logger, clock: clock, store: store, tr: tr, exec: exec, hooks: hooks,
		core: core, state: state, rng: rand.New(rand.NewPCG(cfg.Seed, uint64(cfg.Core.ID))),
		pending: map[cmdKey]waiters{}, now: clock.Now(), lastSnap: state.Applied(), lastTick: clock.Now(), leaderSeen: clock.Now(),
		snapSending: map[paxos.ReplicaID]bool{}, snapHold: map[paxos.ReplicaID]time.Time{}, stats: &Stats{}}
	d.snapJitter = d.rng.Float64() / 2 // from the first cycle on: replicas start together
	return d, nil
}

// Core is the Paxos core, for status and for checkers; only the driver drives it.
func (d *Driver) Core() *paxos.Replica { return d.core }

// State is the key-value state machine, for status and for checkers; only the driver changes it.
func (d *Driver) State() *kv.State { return d.state }

// Stats are the driver's counters; safe to read from any goroutine.
func (d *Driver) Stats() *Stats { return d.stats }

// Failed is why the driver fenced itself (a failed disk), or nil.
func (d *Driver) Failed() error { return d.failed }

// Pending is the number of client commands waiting for their answer.
func (d *Driver) Pending() int { return len(d.pending) - d.orphans }

// SnapshotSlot is the slot of the latest snapshot saved.
func (d *Driver) SnapshotSlot() uint64 { return d.lastSnap }

// maxCatchUpTicks bounds the ticks delivered at once after a long stall: by then every lease,
// election and resend timer has expired, and more ticks change nothing.
const maxCatchUpTicks = 10_000

// Begin starts a wake-up: the core is ticked once for every TickInterval of the clock since the
// last tick, before any input is handled (a loop that was stalled, a stopped process, a starved
// CPU, must first see the time that passed), and requests past their deadline are answered.
func (d *Driver) Begin() {
	if d.failed != nil || d.stopped {
		return
	}
	now := d.clock.Now()
	d.now = now
	if d.cfg.Mutation != MutTickerTicks {
		n := now.Sub(d.lastTick) / d.cfg.TickInterval
		for i := time.Duration(0); i < min(n, maxCatchUpTicks); i++ {
			d.core.Tick()
		}
		if n > 0 {
			d.lastTick = d.lastTick.Add(n * d.cfg.TickInterval)
		}
	}
	d.sweepDeadlines(now)
	if l := d.leaderless(); l != d.refusing {
		d.refusing = l
		if l {
			// Commands already handed to the core stay: one may have reached a leader since
			// gone, and the core re-forwards it when a leader is known again. HTTP requests
			// still waiting for a session were never taken: failing the session open hands
			// them back to Submit, which refuses them NotLeader now.
			d.log.Warn("no leader known for several election timeouts: refusing requests at once until one is",
				"since", d.leaderSeen, "pending", len(d.pending))
			if r := d.httpSess.openReq; r != nil && !r.done {
				d.unregister(r)
				d.answer(r, Response{Status: wire.StatusNotLeader})
			}
		} else {
			d.log.Info("a leader is known again: taking requests", "leader", d.leader)
		}
	}
}

// OnTicker is the periodic wake-up; the clock, read in Begin, does the counting. (Counting the
// wake-ups themselves is the planted bug MutTickerTicks.)
func (d *Driver) OnTicker() {
	if d.cfg.Mutation == MutTickerTicks && d.failed == nil && !d.stopped {
		d.core.Tick()
	}
}

// End does everything the wake-up's inputs led to: proposes the commands admitted, handles the
// core's Readies (persist, send, apply, answer), flushes the transport once, and starts a snapshot
// when one is due.
func (d *Driver) End() {
	if d.stopped {
		return
	}
	if d.failed != nil {
		return // a fenced replica still answers its clients (Unavailable), nothing else
	}
	d.stepLocal()
	d.flushProposals()
	for range 8 {
		rd := d.core.Ready()
		if rd.Empty() {
			d.noteLeader(rd.Leader)
			break
		}
		d.handle(&rd)
		d.core.Advance(&rd)
		d.stepLocal()
		d.flushProposals() // requests re-admitted while handling it (HTTP sessions opened or expired)
		if d.failed != nil {
			return
		}
	}
	d.tr.Flush()
	d.maybeSnapshot()
}

// Stop answers everything still waiting Unavailable (the outcome is unknown): the replica is
// shutting down. Nothing is done after it.
func (d *Driver) Stop() {
	d.failPending(wire.StatusUnavailable)
	d.stopped = true
}

// Step hands the core one peer message. A snapshot is restored into a scratch state first: the
// core moves its log past the snapshot's slot as soon as it steps it, so a snapshot the state
// machine cannot read (corrupt, another format version, a slot that disagrees with its contents)
// must be refused before that, or the next applied slot would be out of order.
//
// The restore runs in the background and the core steps the snapshot when it is done: restoring
// a large state on the loop stalled it for seconds, the ticks credited for the stall fired the
// election timer before the leader's queued heartbeats were stepped, and a restarted replica
// deposed the live leader while installing its snapshot, again and again (issue 12, item 8).
//
// Several snapshots can arrive in one wake-up (two peers answering one catch-up). The core installs
// only one newer than everything it holds, and the last one it installs is the newest, so only a
// snapshot newer than the chosen prefix, the one already validated and the one being validated is
// worth validating: an older one stepped after a newer one used to replace it, and installSnapshot
// then found the wrong state and fenced the replica.
func (d *Driver) Step(m *paxos.Message) {
	if d.failed != nil || d.stopped {
		return // fenced: a replica whose disk failed takes no further part
	}
	if m.Type != paxos.MsgSnapshot {
		d.core.Step(m)
		return
	}
	if d.snapshotStale(m.Slot) || m.Slot <= d.validating {
		return // the core would ignore it, or a newer one is held or on its way
	}
	msg := *m // the message is ours (the transport hands over copies); the job reads only Data
	d.validating = msg.Slot
	ok := d.exec.Go(func() func() {
		st := kv.NewState()
		err := st.Restore(msg.Data)
		return func() {
			if d.validating == msg.Slot {
				d.validating = 0
			}
			if d.failed != nil || d.stopped || d.snapshotStale(msg.Slot) {
				return
			}
			if d.cfg.Mutation != MutNoSnapshotCheck && (err != nil || st.Applied() != msg.Slot) {
				d.log.Error("refusing a peer snapshot the state machine cannot use", "peer", msg.From, "slot", msg.Slot,
					"restored_slot", st.Applied(), "err", err)
				return
			}
			d.peerSnap = st
			d.core.Step(&msg)
		}
	})
	if !ok {
		d.validating = 0 // the executor is full: the peer offers the snapshot again
	}
}

// snapshotStale says a peer snapshot of slot is no use: the core has chosen that far, or holds a
// validated snapshot at least as new.
func (d *Driver) snapshotStale(slot uint64) bool {
	return slot <= d.core.Status().Commit || (d.peerSnap != nil && slot <= d.peerSnap.Applied())
}

// noteLeader logs every change of leader, so a failover can be reconstructed from the logs.
func (d *Driver) noteLeader(l paxos.ReplicaID) {
	if l != 0 || d.leader != 0 {
		d.leaderSeen = d.clock.Now()
	}
	if l == d.leader {
		return
	}
	st := d.core.Status()
	d.log.Info("leader changed", "from", d.leader, "to", l, "role", st.Role, "ballot", st.Ballot,
		"promised", st.Promised, "commit", st.Commit)
	d.leader = l
}

// ReadIndex is the index a lease read would be served at now, and whether one would be: never on a
// fenced or stopped driver (its core is frozen, lease and all).
func (d *Driver) ReadIndex() (uint64, bool) {
	if d.failed != nil || d.stopped || d.cfg.ReadMode != ReadLease {
		return 0, false
	}
	return d.core.ReadIndex()
}

// leaderlessAfterElections is how many election timeouts without a known leader make a replica
// answer new requests at once instead of holding them: one election fits in one or two (a timeout
// and a randomised retry); past that, the replica most likely cannot reach a quorum (its peers are
// down, or refuse its cluster key) and a client is better told now than after its timeout.
const leaderlessAfterElections = 3

// leaderless reports whether this replica (in leader mode) has known no leader for long enough
// that new requests are refused NotLeader at once, with no leader to name.
func (d *Driver) leaderless() bool {
	if d.cfg.Core.Mode != paxos.ModeLeader || d.leader != 0 {
		return false
	}
	timeout := time.Duration(d.cfg.Core.ElectionTicks) * d.cfg.TickInterval
	return d.clock.Now().Sub(d.leaderSeen) > leaderlessAfterElections*timeout
}

// Leader is the replica this one believes leads (0: none known).
func (d *Driver) Leader() paxos.ReplicaID { return d.leader }

// stepLocal delivers the replica's messages to itself (promises and votes of its own acceptor).
func (d *Driver) stepLocal() {
	for len(d.local) > 0 {
		msgs := d.local
		d.local = nil
		for i := range msgs {
			d.core.Step(&msgs[i])
		}
	}
}

func (d *Driver) sendPeer(m *paxos.Message) {
	if m.To == d.cfg.Core.ID {
		if d.hooks.Local != nil {
			d.hooks.Local(m)
		}
		d.local = append(d.local, *m)
		return
	}
	d.tr.Send(m)
}

// handle does what a Ready asks, in the order the contract requires.
func (d *Driver) handle(rd *paxos.Ready) {
	d.noteLeader(rd.Leader)
	if rd.Snapshot != nil {
		d.installSnapshot(rd.Snapshot)
		if d.failed != nil {
			return
		}
	}
	if rd.Promised != 0 || len(rd.Entries) > 0 || rd.ChosenTo != 0 || len(rd.AfterSync) > 0 {
		d.persist(rd)
		if d.failed != nil {
			return
		}
	}
	for i := range rd.Messages {
		d.sendPeer(&rd.Messages[i])
	}
	for i := range rd.Committed {
		d.apply(&rd.Committed[i])
	}
	for i := range rd.Dropped {
		d.answerCmd(&rd.Dropped[i], Response{Status: wire.StatusNotLeader, Leader: rd.Leader})
	}
	for _, to := range rd.SendSnapshot {
		d.sendSnapshot(to)
	}
	if rd.CompactTo != 0 {
		upTo := rd.CompactTo
		d.exec.Go(func() func() {
			err := d.store.Truncate(upTo)
			return func() {
				if err != nil {
					d.log.Error("log truncation failed", "up_to", upTo, "err", err)
				}
			}
		})
	}
}

// persist hands the Ready's durable part to the store; its AfterSync messages wait until the store's
// durable sequence number reaches the record's. Persist never blocks.
func (d *Driver) persist(rd *paxos.Ready) {
	if !d.cfg.Fsync {
		rd.MustSync = false
	}
	seq, err := d.store.Persist(rd)
	if err != nil {
		d.fail(err)
		return
	}
	if len(rd.AfterSync) == 0 {
		return
	}
	if d.cfg.Mutation == MutReleaseEarly {
		for i := range rd.AfterSync {
			d.sendPeer(&rd.AfterSync[i])
		}
		return
	}
	d.afterQ = append(d.afterQ, afterItem{seq, rd.AfterSync})
}

// OnDurable releases every message whose record is now durable. A failed store fences the driver:
// nothing that depended on it is ever sent.
func (d *Driver) OnDurable() {
	if d.failed != nil || d.stopped {
		return
	}
	if err := d.store.Err(); err != nil {
		d.fail(err)
		return
	}
	durable := d.store.Durable()
	n := 0
	for ; n < len(d.afterQ) && d.afterQ[n].seq <= durable; n++ {
		for i := range d.afterQ[n].msgs {
			d.sendPeer(&d.afterQ[n].msgs[i])
		}
	}
	clear(d.afterQ[:n])
	d.afterQ = d.afterQ[n:]
}

// fail fences the replica after a disk failure: it acknowledges nothing, steps and ticks the core
// no more and sends nothing further, so it stops leading (the others elect a healthy leader when
// its heartbeats stop), and its memory stops growing. Status keeps answering and says why.
// Fence stops the replica acknowledging anything, as a failed disk does, for a reason the shell
// found (a file system about to fill): clients get Unavailable, Failed reports err.
func (d *Driver) Fence(err error) { d.fail(err) }

func (d *Driver) fail(err error) {
	if d.failed != nil {
		return
	}
	d.failed = err
	d.afterQ, d.proposeBuf, d.proposeReqs = nil, nil, nil
	d.log.Error("DISK FAILED: fenced off; acknowledging nothing; restart from the data directory once fixed", "err", err)
	d.failPending(wire.StatusUnavailable)
}

// apply applies one chosen slot and answers the requests waiting for its commands.
func (d *Driver) apply(e *paxos.Entry) {
	d.kvCmds = d.kvCmds[:0]
	for i := range e.Cmds {
		var c kv.Command
		c.Decode(e.Cmds[i].ClientID, e.Cmds[i].Seq, e.Cmds[i].Data) // a bad payload keeps Op 0: Invalid
		d.kvCmds = append(d.kvCmds, c)
	}
	var err error
	d.results, err = d.state.Apply(e.Slot, d.kvCmds, d.results[:0])
	if err != nil {
		// The core released slots out of order: a bug that must stop the replica, not corrupt it.
		panic(err)
	}
	if d.hooks.Applied != nil {
		d.hooks.Applied(e, d.kvCmds, d.results)
	}
	for i := range e.Cmds {
		d.bytesSince += uint64(e.Cmds[i].Size())
		resp := resultResponse(&d.kvCmds[i], &d.results[i])
		resp.Slot, resp.Index = e.Slot, i
		d.answerCmd(&e.Cmds[i], resp)
	}
	if len(d.readWait) > 0 {
		d.releaseReads()
	}
}

func resultResponse(c *kv.Command, res *kv.Result) Response {
	switch {
	case res.Invalid:
		return Response{Status: wire.StatusBadRequest}
	case res.Stale:
		return Response{Status: wire.StatusStale}
	case res.Expired:
		return Response{Status: wire.StatusSessionExpired}
	case c.Op == kv.OpOpen:
		return Response{Status: wire.StatusOK, Value: sessionBytes(res.Session)}
	case c.Op != kv.OpGet:
		return Response{Status: wire.StatusOK}
	case !res.Found:
		return Response{Status: wire.StatusNotFound}
	}
	// The state's memory changes with the next write: the reply gets its own copy.
	return Response{Status: wire.StatusOK, Value: bytes.Clone(res.Value)}
}

// errNotValidated fences a replica whose core took a snapshot Step did not validate: a bug.
var errNotValidated = errors.New("driver: snapshot was not validated before the core took it")

// installSnapshot replaces the state with a peer's snapshot and saves it, so a restart resumes from
// it; the core learns it is durable (and only then persists its chosen prefix past it) when the
// save completes. Requests waiting for commands inside it are answered by their deadline.
func (d *Driver) installSnapshot(snap *paxos.Snapshot) {
	st := d.peerSnap
	d.peerSnap = nil
	if st == nil || (st.Applied() != snap.Slot && d.cfg.Mutation != MutNoSnapshotCheck) {
		d.fail(fmt.Errorf("%w (slot %d)", errNotValidated, snap.Slot))
		return
	}
	d.state = st
	d.log.Info("installed snapshot from a peer", "slot", snap.Slot, "keys", d.state.Len())
	if d.hooks.SnapshotInstalled != nil {
		d.hooks.SnapshotInstalled(snap.Slot)
	}
	data := snap.Data
	d.saveSnapshot(func() []byte { return data }, snap.Slot)
}

// maybeSnapshot saves a snapshot every SnapshotEverySlots applied slots or SnapshotEveryBytes
// applied command bytes, so the log can be truncated. The loop only clones the state (a few ms for
// 100k keys); sorting, encoding (tens of ms) and saving run in the background.
//
// Every replica applies the same log, so the same thresholds would make all of them save a snapshot
// at once, and a quorum of disks would be busy with it together. Each cycle's thresholds are
// stretched by a random 0-50 % per replica, so snapshots come every 1 to 1.5 times the thresholds.
func (d *Driver) maybeSnapshot() {
	slots, bytes := d.cfg.SnapshotEverySlots, d.cfg.SnapshotEveryBytes
	slots += uint64(float64(slots) * d.snapJitter)
	bytes += uint64(float64(bytes) * d.snapJitter)
	due := (slots > 0 && d.state.Applied() >= d.lastSnap+slots) || (bytes > 0 && d.bytesSince >= bytes)
	if r := d.cfg.SnapshotStateRatio; r > 0 && float64(d.bytesSince) < r*float64(d.lastSnapBytes) {
		due = false
	}
	if !due || d.snapshotting || d.state.Applied() <= d.lastSnap {
		return
	}
	d.bytesSince = 0
	d.snapJitter = d.rng.Float64() / 2
	frozen := d.state.Clone()
	d.saveSnapshot(func() []byte { return frozen.AppendSnapshot(nil) }, frozen.Applied())
}

func (d *Driver) saveSnapshot(encode func() []byte, slot uint64) {
	d.snapshotting = true
	started := d.clock.Now()
	ok := d.exec.Go(func() func() {
		data := encode()
		err := d.store.SaveSnapshot(data)
		return func() { d.onSnapshotSaved(slot, len(data), started, err) }
	})
	if !ok {
		d.snapshotting = false
	}
}

func (d *Driver) onSnapshotSaved(slot uint64, size int, started time.Time, err error) {
	d.snapshotting = false
	d.log.Info("snapshot saved", "slot", slot, "bytes", size, "took", d.clock.Now().Sub(started).Round(time.Millisecond), "err", err)
	if err != nil {
		d.stats.SnapshotErrors.Add(1)
		if serr := d.store.Err(); serr != nil {
			d.fail(serr) // the store failed: fence
		} else {
			d.log.Warn("snapshot not saved", "slot", slot, "err", err) // older than the saved one, say
		}
		return
	}
	d.stats.Snapshots.Add(1)
	d.lastSnap = max(d.lastSnap, slot)
	d.lastSnapBytes = size
	d.stats.SnapshotBytes.Store(int64(size))
	d.core.Compact(slot)
}

// sendSnapshot brings a peer behind the truncated log up to date: the loop clones the state, a
// background job encodes and sends it (the transport is safe for that). One per peer at a time:
// encoding a large state takes longer than the core waits between offers.
// snapshotHold is how long a peer sent a snapshot of size bytes gets before it is sent another:
// its transfer and install at a conservative 8 MB/s, and at least 100 ticks (a second at the
// replica's 10 ms tick).
func snapshotHold(size int, tick time.Duration) time.Duration {
	return max(100*tick, time.Duration(size)*time.Second/(8<<20))
}

func (d *Driver) sendSnapshot(to paxos.ReplicaID) {
	if d.state.Applied() == 0 || d.snapSending[to] || d.now.Before(d.snapHold[to]) {
		return
	}
	d.snapSending[to] = true
	frozen := d.state.Clone()
	self, limit := d.cfg.Core.ID, d.cfg.SnapshotBytesMax
	ok := d.exec.Go(func() func() {
		data := frozen.AppendSnapshot(nil)
		tooLarge := limit > 0 && len(data)+64 > limit
		if !tooLarge {
			d.tr.Send(&paxos.Message{Type: paxos.MsgSnapshot, From: self, To: to, Slot: frozen.Applied(), Data: data})
		}
		return func() {
			d.snapSending[to] = false
			// Handing the snapshot to the transport is not delivering it: the peer still has to
			// receive, check and install it, and until then it keeps asking for what it lacks.
			// Sending again meanwhile only queued more copies (an 82 MB state went three times
			// from each of two replicas to one restarted peer, issue 12 item 8).
			d.snapHold[to] = d.now.Add(snapshotHold(len(data), d.cfg.TickInterval))
			if tooLarge {
				d.log.Error("state too large for one peer frame; replica cannot be brought up to date", "peer", to, "bytes", len(data))
			} else {
				d.log.Info("sent snapshot", "peer", to, "slot", frozen.Applied(), "bytes", len(data))
			}
		}
	})
	if !ok {
		d.snapSending[to] = false
	}
}
