package sim

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math"
	"math/bits"
	"slices"

	"github.com/sofadb/sofadb/kv"
	"github.com/sofadb/sofadb/paxos"
)

// checker holds ground truth no replica can see and checks every step against it. Each check is a
// property of Paxos, not of this implementation: unique ballots (B1), promises kept, phase 2 only
// after a majority of promises for the same ballot, re-proposals as P2c demands, every vote a reply
// vouched for kept across crashes, at most one value chosen per slot, nothing learned that was not
// chosen, applied logs that are prefixes of one another, every acknowledged command applied exactly
// once, and the final state equal to the canonical log applied by a model.
type checker struct {
	w          *world
	n, quorum  int
	violations []string
	kinds      []string // the checker behind each violation

	votes  map[slotBallot]*voteRec // durable votes: value and voters per (slot, ballot)
	chosen map[uint64]uint64       // slot -> fingerprint of the value chosen (majority of durable votes)

	wipes        int                       // disks lost and rejoined (WipePct)
	promiseSent  []paxos.Ballot            // per node: highest ballot it sent a Promise for
	acceptedSent []map[uint64]paxos.Ballot // per node: slot -> highest ballot it sent Accepted for
	ballotInc    map[paxos.Ballot]int      // ballot -> incarnation of its owner that used it
	ballotAcc    map[paxos.Ballot]bool     // an Accept was sent under the ballot
	wipedAt      []int                     // per node: the incarnation that started on a wiped disk (0: never)
	p1           map[nodeBallot]*p1Rec     // promises a proposer received, per ballot
	proposals    map[slotBallot]uint64     // value proposed per (slot, ballot)

	canon     map[uint64]canonRec // slot -> first applied value and the state digest after it
	proposed  map[cmdKey]paxos.Command
	acked     map[cmdKey]bool
	effective map[cmdKey]position // command -> where it took effect
	dupSlots  int

	// Reads. lastAcked is the log position of the latest write acknowledged so far (a read sent
	// after that must reflect it); history holds, per key, every write in canonical log order, so
	// the value any read returns can be checked against the log at the position it was served;
	// maxApplied is the highest slot any replica ever applied (or installed from a snapshot), which
	// a leader holding a lease must know of.
	lastAcked  position
	history    map[string][]keyWrite
	maxApplied uint64
	leaseReads int
	logReads   int
}

// keyWrite is one write to a key in the canonical log.
type keyWrite struct {
	at      position
	present bool
	value   []byte
}

type slotBallot struct {
	slot   uint64
	ballot paxos.Ballot
}

type nodeBallot struct {
	node   int
	ballot paxos.Ballot
}

type voteRec struct {
	fp    uint64
	mask  uint64
	count int
}

type p1Rec struct {
	from     uint64
	promises []promiseRec
}

type promiseRec struct {
	from    int
	entries []paxos.Entry
}

// position is a command's place in the log: slot, then index in the slot's batch.
type position struct {
	slot uint64
	idx  int
}

func (p position) before(q position) bool {
	return p.slot < q.slot || p.slot == q.slot && p.idx < q.idx
}

type canonRec struct {
	fp     uint64
	digest uint64
	cmds   []kv.Command
}

// decode is the state machine's view of a logged command.
func decode(c *paxos.Command) kv.Command {
	var out kv.Command
	out.Decode(c.ClientID, c.Seq, c.Data)
	return out
}

func newChecker(n int, w *world) *checker {
	c := &checker{w: w, n: n, quorum: n/2 + 1,
		votes: map[slotBallot]*voteRec{}, chosen: map[uint64]uint64{},
		promiseSent: make([]paxos.Ballot, n), acceptedSent: make([]map[uint64]paxos.Ballot, n),
		ballotInc: map[paxos.Ballot]int{}, ballotAcc: map[paxos.Ballot]bool{}, wipedAt: make([]int, n), p1: map[nodeBallot]*p1Rec{}, proposals: map[slotBallot]uint64{},
		canon: map[uint64]canonRec{}, proposed: map[cmdKey]paxos.Command{}, acked: map[cmdKey]bool{},
		effective: map[cmdKey]position{}, history: map[string][]keyWrite{}}
	for i := range c.acceptedSent {
		c.acceptedSent[i] = map[uint64]paxos.Ballot{}
	}
	return c
}

// violate records a broken property. kind names the checker (or oracle) that saw it, so a canary's
// report can say which checkers catch its bug: one caught only by its mirror-image check proves little.
func (c *checker) violate(kind, format string, args ...any) {
	c.violations = append(c.violations, fmt.Sprintf("[%s] t=%dus: ", kind, c.w.nowUs)+fmt.Sprintf(format, args...))
	c.kinds = append(c.kinds, kind)
}

// stop ends a run at its first violation: what follows is noise.
func (c *checker) stop() bool { return len(c.violations) > 0 }

// fingerprint identifies a batch of commands (0x1 marks a no-op).
func fingerprint(cmds []paxos.Command) uint64 {
	if len(cmds) == 0 {
		return 1
	}
	h := fnv.New64a()
	var b [8]byte
	for i := range cmds {
		cm := &cmds[i]
		binary.LittleEndian.PutUint64(b[:], cm.ClientID)
		h.Write(b[:])
		binary.LittleEndian.PutUint64(b[:], cm.Seq)
		h.Write(b[:])
		binary.LittleEndian.PutUint64(b[:], uint64(len(cm.Data)))
		h.Write(b[:])
		h.Write(cm.Data)
	}
	return h.Sum64()
}

// onSend checks what a replica vouches for the moment a message leaves it.
func (c *checker) onSend(n *node, m *paxos.Message) {
	switch m.Type {
	case paxos.MsgPrepare:
		c.useBallot(n, m.Ballot)
	case paxos.MsgAccept:
		c.useBallot(n, m.Ballot)
		c.ballotAcc[m.Ballot] = true
		c.checkAccept(n, m)
	case paxos.MsgPromise:
		c.promiseSent[n.idx] = max(c.promiseSent[n.idx], m.Ballot)
	case paxos.MsgAccepted:
		if m.Ballot < c.promiseSent[n.idx] {
			c.violate("promise-kept", "r%d sent Accepted(%v, slot %d) after promising %v: promise broken", n.id, m.Ballot, m.Slot, c.promiseSent[n.idx])
		}
		c.acceptedSent[n.idx][m.Slot] = max(c.acceptedSent[n.idx][m.Slot], m.Ballot)
	}
}

// useBallot checks B1: a ballot is used only by its owner, and never again after the owner restarts.
func (c *checker) useBallot(n *node, b paxos.Ballot) {
	if b.ID() != n.id {
		c.violate("ballot-unique", "r%d used ballot %v owned by r%d", n.id, b, b.ID())
		return
	}
	inc, ok := c.ballotInc[b]
	switch {
	case !ok:
		c.ballotInc[b] = n.inc
	case inc == n.inc:
	case inc < c.wipedAt[n.idx] && !c.ballotAcc[b]:
		// A rejoined replica cannot know the ballots its lost incarnation tried: its floor is above
		// every ballot another replica promised, so a ballot it reuses never won phase 1 before the
		// wipe, and no Accept was sent under it. Reuse of such a ballot is safe.
		c.ballotInc[b] = n.inc
	default:
		c.violate("ballot-unique", "r%d reused ballot %v after a restart (incarnations %d and %d)", n.id, b, inc, n.inc)
	}
}

// checkAccept checks phase 2a: the proposer holds promises for this ballot from a majority, and the
// value it proposes is what P2c allows given the promises it received.
func (c *checker) checkAccept(n *node, m *paxos.Message) {
	e := &m.Entries[0]
	k := slotBallot{e.Slot, m.Ballot}
	fp := fingerprint(e.Cmds)
	if old, ok := c.proposals[k]; ok {
		if old != fp {
			c.violate("one-value-per-ballot", "r%d proposed two values for slot %d under ballot %v", n.id, e.Slot, m.Ballot)
		}
		return
	}
	c.proposals[k] = fp
	rec := c.p1[nodeBallot{n.idx, m.Ballot}]
	if rec == nil || bits.OnesCount64(rec.from) < c.quorum {
		got := 0
		if rec != nil {
			got = bits.OnesCount64(rec.from)
		}
		c.violate("phase2-quorum", "r%d sent Accept(%v, slot %d) holding %d promises for that ballot, need %d", n.id, m.Ballot, e.Slot, got, c.quorum)
		return
	}
	if !c.p2cAllows(rec, e.Slot, fp) {
		c.violate("p2c", "r%d proposed %x in slot %d under %v that no majority of its promises allows (P2c): %s", n.id, fp, e.Slot, m.Ballot, c.describePromises(rec, e.Slot))
	}
}

// p2cAllows says some majority of the received promises allows value fp in slot s: the value of the
// highest-ballot vote among them, a chosen value one of them reported, or anything when none voted.
func (c *checker) p2cAllows(rec *p1Rec, s uint64, fp uint64) bool {
	type rep struct {
		ballot paxos.Ballot
		fp     uint64
		chosen bool
		has    bool
	}
	reps := make([]rep, len(rec.promises))
	for i, p := range rec.promises {
		for _, e := range p.entries {
			if e.Slot == s {
				reps[i] = rep{e.Ballot, fingerprint(e.Cmds), e.Chosen, true}
			}
		}
	}
	for set := uint64(1); set < 1<<len(reps); set++ {
		if bits.OnesCount64(set) < c.quorum {
			continue
		}
		var best rep
		chosenFP, anyChosen := uint64(0), false
		for i := range reps {
			if set&(1<<i) == 0 || !reps[i].has {
				continue
			}
			if reps[i].chosen {
				chosenFP, anyChosen = reps[i].fp, true
			} else if reps[i].ballot > best.ballot {
				best = reps[i]
			}
		}
		switch {
		case anyChosen && chosenFP == fp, !anyChosen && (!best.has || best.fp == fp):
			return true
		}
	}
	return false
}

// describePromises says what each promise received for a ballot reported about slot s.
func (c *checker) describePromises(rec *p1Rec, s uint64) string {
	out := ""
	for _, p := range rec.promises {
		what := "nothing"
		for _, e := range p.entries {
			if e.Slot == s {
				what = fmt.Sprintf("vote %v=%x chosen=%v", e.Ballot, fingerprint(e.Cmds), e.Chosen)
			}
		}
		out += fmt.Sprintf("[from r%d: %s]", p.from+1, what)
	}
	return out
}

func (c *checker) onDeliver(n *node, m *paxos.Message) {
	if m.Type != paxos.MsgPromise {
		return
	}
	k := nodeBallot{n.idx, m.Ballot}
	rec := c.p1[k]
	if rec == nil {
		rec = &p1Rec{}
		c.p1[k] = rec
	}
	from := int(m.From) - 1
	if rec.from&(1<<from) == 0 {
		rec.from |= 1 << from
		rec.promises = append(rec.promises, promiseRec{from: from, entries: m.Entries})
	}
}

// onDurable records votes as they become durable: a value is chosen once a majority of acceptors
// durably voted for it under one ballot.
func (c *checker) onDurable(n *node, wr *write) {
	for _, e := range wr.entries {
		fp := fingerprint(e.Cmds)
		if e.Chosen {
			if ch, ok := c.chosen[e.Slot]; ok && ch != fp {
				c.violate("learned-chosen", "r%d persisted as chosen a value for slot %d that was not chosen", n.id, e.Slot)
			}
			continue
		}
		k := slotBallot{e.Slot, e.Ballot}
		v := c.votes[k]
		if v == nil {
			v = &voteRec{fp: fp}
			c.votes[k] = v
		} else if v.fp != fp {
			c.violate("one-value-per-ballot", "two values voted for slot %d under one ballot %v (r%d)", e.Slot, e.Ballot, n.id)
		}
		if v.mask&(1<<n.idx) == 0 {
			v.mask |= 1 << n.idx
			v.count++
		}
		if v.count >= c.quorum {
			if ch, ok := c.chosen[e.Slot]; ok && ch != fp {
				c.violate("agreement", "two different values chosen for slot %d (second under ballot %v)", e.Slot, e.Ballot)
			}
			c.chosen[e.Slot] = fp
		}
	}
}

// checkDurablePrefix checks the contract of paxos.Durable on what a replica has made durable, each
// time its persisted chosen prefix advances: every slot above the durable snapshot and up to the
// prefix holds, on disk, the value chosen there. A restart trusts exactly that (it marks those slots
// chosen without asking anyone), so a prefix persisted ahead of its values, or ahead of the snapshot
// that covers them, would make a restarted replica apply a value that was not chosen.
func (c *checker) checkDurablePrefix(n *node, before uint64) {
	d := n.disk.durable
	for s := max(before, d.snap.Slot) + 1; s <= d.chosenTo; s++ {
		e, ok := d.entries[s]
		ch, known := c.chosen[s]
		switch {
		case !ok:
			c.violate("durable-prefix", "r%d persisted chosen prefix %d but holds nothing for slot %d on disk (snapshot at %d)", n.id, d.chosenTo, s, d.snap.Slot)
			return
		case !known || ch != fingerprint(e.Cmds):
			c.violate("durable-prefix", "r%d persisted chosen prefix %d but holds a value for slot %d on disk that was not chosen", n.id, d.chosenTo, s)
			return
		}
	}
}

// onApply checks a replica applying a slot: the value was chosen, every replica applies the same
// value there with the same state after it, and de-duplication matches the canonical log.
func (c *checker) onApply(n *node, e *paxos.Entry, cmds []kv.Command, results []kv.Result) {
	c.maxApplied = max(c.maxApplied, e.Slot)
	fp := fingerprint(e.Cmds)
	if ch, ok := c.chosen[e.Slot]; !ok || ch != fp {
		c.violate("learned-chosen", "r%d learned slot %d with a value that was not chosen (chosen known: %v)", n.id, e.Slot, ok)
		return
	}
	rec, seen := c.canon[e.Slot]
	if !seen {
		rec = canonRec{fp: fp, digest: n.st().Digest(), cmds: slices.Clone(cmds)} // the driver reuses cmds
		c.canon[e.Slot] = rec
		for i := range cmds {
			cm := &cmds[i]
			if !cm.Op.Mutates() || results[i].Stale || results[i].Expired {
				continue
			}
			if _, ok := c.effective[kvKey(cm)]; !ok {
				c.effective[kvKey(cm)] = position{e.Slot, i}
				c.history[string(cm.Key)] = append(c.history[string(cm.Key)],
					keyWrite{at: position{e.Slot, i}, present: cm.Op == kv.OpPut, value: cm.Value})
			} else {
				c.dupSlots++
			}
		}
	} else if rec.fp != fp || rec.digest != n.st().Digest() {
		c.violate("logs-agree", "r%d applied log diverges at slot %d", n.id, e.Slot)
		return
	}
	for i := range e.Cmds {
		c.checkCommand(n, position{e.Slot, i}, &e.Cmds[i], &cmds[i], results[i])
	}
}

func (c *checker) checkCommand(n *node, at position, pcm *paxos.Command, cm *kv.Command, res kv.Result) {
	k := keyOf(pcm)
	orig, ok := c.proposed[k]
	if !ok || !bytes.Equal(orig.Data, pcm.Data) {
		c.violate("no-invented-command", "r%d applied a command (client %d seq %d) no client issued", n.id, k.client, k.seq)
		return
	}
	if !cm.Op.Mutates() {
		return
	}
	first := c.effective[k]
	if wantDup := first.before(at); res.Dup != wantDup && !res.Stale {
		c.violate("exactly-once", "r%d: command (client %d seq %d) at %v: dup=%v, but it took effect at %v", n.id, k.client, k.seq, at, res.Dup, first)
	}
}

func (c *checker) onSnapshotInstalled(n *node, slot uint64) {
	c.maxApplied = max(c.maxApplied, slot)
	rec, ok := c.canon[slot]
	if !ok || n.st().Applied() != slot || rec.digest != n.st().Digest() {
		c.violate("snapshot-matches-log", "r%d installed a snapshot for slot %d that does not match the applied log", n.id, slot)
	}
}

// onWipe forgets what a replica vouched for: its disk is gone, and its rejoin (a promise floor
// above every ballot, no vote before it has learned past every slot voted) stands in for it. What
// the cluster chose stays checked: agreement, learned values and the logs.
func (c *checker) onWipe(n *node) {
	c.promiseSent[n.idx] = 0
	c.acceptedSent[n.idx] = map[uint64]paxos.Ballot{}
	c.wipedAt[n.idx] = n.inc + 1 // the incarnation about to start
	c.wipes++
}

// onStart checks a restarted replica kept every promise and vote it had vouched for in a reply.
func (c *checker) onStart(n *node) {
	if n.inc == 1 {
		return
	}
	st := n.core().Status()
	if st.Promised < c.promiseSent[n.idx] {
		c.violate("promise-durable", "restarted r%d promises %v but had sent a promise for %v", n.id, st.Promised, c.promiseSent[n.idx])
	}
	// What it read back as chosen must be what was chosen: a restart that takes a vote for a chosen
	// value (say, a chosen prefix persisted past a snapshot that was never saved) diverges later.
	for s := st.LogBase + 1; s <= st.LogLast; s++ {
		cmds, chosen, ok := n.core().Value(s)
		if !ok || !chosen {
			continue
		}
		if ch, known := c.chosen[s]; known && ch != fingerprint(cmds) {
			c.violate("learned-chosen", "restarted r%d believes slot %d chosen with a value that was not chosen", n.id, s)
			return
		}
	}
	sent := c.acceptedSent[n.idx]
	for _, s := range sortedKeys(sent) {
		if s <= st.LogBase {
			delete(sent, s) // covered by its durable snapshot
			continue
		}
		b, chosen, ok := n.core().Vote(s)
		if !ok || (!chosen && b < sent[s]) {
			c.violate("vote-durable", "restarted r%d lost its vote for slot %d (had acknowledged ballot %v, holds %v)", n.id, s, sent[s], b)
			return
		}
	}
}

func (c *checker) onPropose(cm *paxos.Command) { c.proposed[keyOf(cm)] = *cm }

// onAck records an acknowledged command. A write must have taken effect, and after every write
// acknowledged before it was sent (mustSee): the log's order must respect real time.
func (c *checker) onAck(cm *paxos.Command, op kv.Op, mustSee position) {
	c.acked[keyOf(cm)] = true
	at, ok := c.effective[keyOf(cm)]
	if op.Mutates() && !ok {
		c.violate("acked-took-effect", "client %d seq %d acknowledged but never took effect", cm.ClientID, cm.Seq)
	}
	if op.Mutates() && ok && !mustSee.before(at) {
		c.violate("write-order", "client %d seq %d took effect at %v, before the write at %v that was acknowledged before it was sent",
			cm.ClientID, cm.Seq, at, mustSee)
	}
	if op.Mutates() && c.lastAcked.before(at) {
		c.lastAcked = at
	}
}

// checkLeaseIndex is an oracle inside the run: a leader whose lease lets it serve reads at index idx
// must know every slot any replica has applied. (If another replica applied more, a write chosen and
// acknowledged there may be missing from the leader's reads: a deposed leader serving from a lease
// renewed where it should not have been, or a new one serving before its re-proposals are chosen.)
//
// And the lease's own condition: while a leader holds one, no higher ballot may hold promises from a
// majority (that ballot's owner could choose values the leader's reads would miss).
func (c *checker) checkLeaseIndex(n *node, idx uint64) {
	if c.w.p.NoOracles {
		return
	}
	if idx < c.maxApplied {
		c.violate("lease-oracle", "r%d holds a read lease at index %d, but slot %d is already applied elsewhere", n.id, idx, c.maxApplied)
		return
	}
	b := n.core().Status().Ballot
	higher := 0
	for _, p := range c.promiseSent {
		if p > b {
			higher++
		}
	}
	if higher >= c.quorum {
		c.violate("lease-majority", "r%d holds a read lease under ballot %v while %d replicas promised higher ballots", n.id, b, higher)
	}
}

// onRead checks a read's answer: it was served at a log position after every write acknowledged
// before the read was sent, and it returned what the canonical log holds for its key there.
func (c *checker) onRead(cl *client, cm *clientMsg) {
	at := position{cm.servedAt, cm.servedIdx}
	kind := "log"
	if cm.lease {
		at, kind = position{cm.servedAt, math.MaxInt}, "lease"
		c.leaseReads++
	} else {
		c.logReads++
	}
	if at.before(cl.mustSee) || at == cl.mustSee {
		c.violate("read-fresh", "stale %s read by client %d seq %d: served at %v, but the write at %v was acknowledged before it was sent",
			kind, cl.id, cl.seq, at, cl.mustSee)
		return
	}
	key := string(cl.key)
	var want keyWrite
	for _, kw := range c.history[key] {
		if !kw.at.before(at) {
			break
		}
		want = kw
	}
	if cm.found != want.present || !bytes.Equal(cm.value, want.value) {
		c.violate("read-value", "%s read by client %d seq %d of %s served at %v returned %q (found %v); the log holds %q (found %v) there",
			kind, cl.id, cl.seq, key, at, cm.value, cm.found, want.value, want.present)
	}
}

// final runs once everything converged: every acknowledged write took effect exactly once, and every
// replica's state equals a model replaying the canonical log.
func (c *checker) final() {
	for _, k := range sortedCmdKeys(c.acked) {
		if cm := c.proposed[k]; decode(&cm).Op.Mutates() {
			if _, ok := c.effective[k]; !ok {
				c.violate("acked-took-effect", "acknowledged command (client %d seq %d) missing from the log", k.client, k.seq)
			}
		}
	}
	model := map[string]string{}
	top := uint64(len(c.canon))
	for s := uint64(1); s <= top; s++ {
		rec, ok := c.canon[s]
		if !ok {
			c.violate("log-complete", "canonical log has a hole at slot %d", s)
			return
		}
		for i := range rec.cmds {
			cm := &rec.cmds[i]
			if c.effective[kvKey(cm)] != (position{s, i}) {
				continue
			}
			switch cm.Op {
			case kv.OpPut:
				model[string(cm.Key)] = string(cm.Value)
			case kv.OpDelete:
				delete(model, string(cm.Key))
			}
		}
	}
	for _, n := range c.w.nodes {
		if n.dead {
			continue
		}
		for k := range c.w.p.Keys {
			key := fmt.Sprintf("k%d", k)
			got, ok := n.st().Get([]byte(key))
			want, wok := model[key]
			if ok != wok || string(got) != want {
				c.violate("final-state", "r%d final state %s=%q (present %v), model says %q (present %v)", n.id, key, got, ok, want, wok)
				return
			}
		}
	}
}

func sortedCmdKeys(m map[cmdKey]bool) []cmdKey {
	keys := make([]cmdKey, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b cmdKey) int {
		if a.client != b.client {
			return cmp.Compare(a.client, b.client)
		}
		return cmp.Compare(a.seq, b.seq)
	})
	return keys
}
