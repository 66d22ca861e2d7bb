package replica

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/sofadb/sofadb/disk"
	"github.com/sofadb/sofadb/paxos"
	"github.com/sofadb/sofadb/wire"
)

// drainMax bounds how many queued inputs of one kind the loop takes per wake-up, so no input
// starves the others and each Ready covers a batch (which is what makes batching work).
const drainMax = 1024

// loop is the one goroutine that owns the core. Each wake-up takes a batch of inputs (peer
// messages, client requests, disk completions, ticks), then handles the core's Ready.
//
// The core's clock is the wall clock, not the ticker: catchUpTicks runs before any input is
// handled, so a loop that was stalled (a stopped process, a starved CPU, a blocked disk) first
// sees the time that passed. Counting ticker wake-ups instead let a leader paused for seconds
// believe one tick had passed, and serve lease reads after the followers had elected another
// leader that acknowledged newer writes (stale reads, found by review and pinned by
// TestE2EPausedLeaderServesNoStaleLeaseReads).
func (s *Server) loop(ctx context.Context) error {
	ticker := time.NewTicker(s.cfg.TickInterval)
	defer ticker.Stop()
	s.lastTick = time.Now()
	for {
		select {
		case <-ctx.Done():
			s.failPending(wire.StatusUnavailable)
			s.flushReplies()
			return nil
		case now := <-ticker.C:
			s.catchUpTicks()
			s.sweepDeadlines(now)
		case m := <-s.peerIn:
			s.catchUpTicks()
			s.stepPeer(&m)
			for i := 0; i < drainMax && len(s.peerIn) > 0; i++ {
				m := <-s.peerIn
				s.stepPeer(&m)
			}
		case r := <-s.reqs:
			s.catchUpTicks()
			s.admit(r)
			for i := 0; i < drainMax && len(s.reqs) > 0; i++ {
				s.admit(<-s.reqs)
			}
		case <-s.store.DurableC():
			s.onDurable()
		case sr := <-s.snapDone:
			s.onSnapshotSaved(sr)
		case ch := <-s.statusReq:
			ch <- s.status()
		}
		if s.failed != nil {
			s.flushReplies() // a fenced replica still answers its clients (Unavailable)
			continue
		}
		s.stepLocal()
		s.flushProposals()
		for i := 0; i < 8; i++ {
			rd := s.core.Ready()
			if rd.Empty() {
				s.noteLeader(rd.Leader)
				break
			}
			s.handle(&rd)
			s.core.Advance(&rd)
			s.stepLocal()
			s.flushProposals() // requests re-admitted while handling it (HTTP sessions opened or expired)
			// Send what this Ready produced before anything later in the iteration can block
			// (a full disk queue, the background worker, a state clone).
			s.tr.flush()
			s.flushReplies()
		}
		// Released AfterSync messages (onDurable) and lease-read replies (admit) come without a
		// Ready: flush them too. (Without this they waited for the next heartbeat: 20 ms a request.)
		s.tr.flush()
		s.flushReplies()
		s.maybeSnapshot()
	}
}

// maxCatchUpTicks bounds the ticks delivered at once after a long stall: by then every lease,
// election and resend timer has expired, and more ticks change nothing.
const maxCatchUpTicks = 10_000

// catchUpTicks ticks the core once for every TickInterval of wall-clock time since the last tick.
func (s *Server) catchUpTicks() {
	if s.failed != nil {
		return
	}
	n := time.Since(s.lastTick) / s.cfg.TickInterval
	if n <= 0 {
		return
	}
	for i := time.Duration(0); i < min(n, maxCatchUpTicks); i++ {
		s.core.Tick()
	}
	s.lastTick = s.lastTick.Add(n * s.cfg.TickInterval)
}

// stepPeer hands a peer message to the core. A snapshot is restored into a scratch state first: the
// core moves its log past the snapshot's slot as soon as it steps it, so a snapshot the state
// machine cannot read (corrupt, another format version, a slot that disagrees with its contents)
// must be refused before that, or the next applied slot would be out of order.
//
// Several snapshots can arrive in one batch (two peers answering one catch-up). The core installs
// only one newer than everything it holds, and the last one it installs is the newest, so only a
// snapshot newer than both the chosen prefix and the one already validated is worth validating and
// keeping: an older one stepped after a newer one used to replace it, and installSnapshot then found
// the wrong state and fenced the replica.
func (s *Server) stepPeer(m *paxos.Message) {
	if s.failed != nil {
		return // fenced: a replica whose disk failed takes no further part
	}
	if m.Type == paxos.MsgSnapshot {
		if m.Slot <= s.core.Status().Commit || (s.peerSnap != nil && m.Slot <= s.peerSnap.Applied()) {
			return // the core would ignore it, or holds a newer one already
		}
		st := disk.NewState()
		if err := st.Restore(m.Data); err != nil || st.Applied() != m.Slot {
			s.log.Error("refusing a peer snapshot the state machine cannot use", "peer", m.From, "slot", m.Slot,
				"restored_slot", st.Applied(), "err", err)
			return
		}
		s.peerSnap = st
	}
	s.core.Step(m)
}

// noteLeader logs every change of leader, so a failover can be reconstructed from the logs.
func (s *Server) noteLeader(l paxos.ReplicaID) {
	if l == s.leader {
		return
	}
	st := s.core.Status()
	s.log.Info("leader changed", "from", s.leader, "to", l, "role", st.Role, "ballot", st.Ballot,
		"promised", st.Promised, "commit", st.Commit)
	s.leader = l
}

// stepLocal delivers the replica's messages to itself (promises and votes of its own acceptor).
func (s *Server) stepLocal() {
	for len(s.local) > 0 {
		msgs := s.local
		s.local = nil
		for i := range msgs {
			s.core.Step(&msgs[i])
		}
	}
}

// admit routes one client request: a lease read is answered from local state, everything else
// becomes a command for the log.
func (s *Server) admit(r *request) {
	if s.failed != nil {
		r.answer(s, response{status: wire.StatusUnavailable})
		return
	}
	leader := s.core.Status().Leader
	if r.cmd.Op == paxos.OpGet && s.cfg.ReadMode == ReadLease {
		if idx, ok := s.core.ReadIndex(); ok {
			s.stats.leaseReads.Add(1)
			r.readIndex = idx
			if s.state.Applied() >= idx {
				s.answerRead(r)
			} else {
				s.readWait = append(s.readWait, r)
			}
			return
		}
	}
	// A session is opened through whichever replica the client reached: it names the client for
	// good, wherever its later requests go.
	if s.cfg.Redirect && leader != s.cfg.ID && r.cmd.Op != paxos.OpOpen {
		r.answer(s, response{status: wire.StatusNotLeader, leader: leader})
		return
	}
	if r.http && r.cmd.ClientID == 0 && !s.assignHTTP(r) {
		return // parked until an HTTP session is open
	}
	if r.cmd.Op == paxos.OpGet {
		s.stats.logReads.Add(1)
	}
	k := cmdKey{r.cmd.ClientID, r.cmd.Seq}
	s.pending[k] = append(s.pending[k], r)
	s.deadlines = append(s.deadlines, r)
	s.proposeBuf = append(s.proposeBuf, r.cmd)
	s.proposeReqs = append(s.proposeReqs, r)
}

// flushProposals hands the commands admitted in this wake-up to the core in one Propose, so they
// can share a slot.
func (s *Server) flushProposals() {
	if len(s.proposeBuf) == 0 {
		return
	}
	_, _, diskBehind := s.store.Backlog()
	if diskBehind || s.core.Propose(s.proposeBuf) != nil {
		// A full core queue, or a disk that is behind: refuse new commands (clients retry) rather
		// than queue more. Heartbeats and replies keep flowing: the loop never waits for the disk.
		s.stats.busy.Add(uint64(len(s.proposeReqs)))
		for _, r := range s.proposeReqs {
			s.unregister(r)
			r.answer(s, response{status: wire.StatusBusy})
		}
	}
	// The core keeps the slice it was given: start a fresh one.
	s.proposeBuf, s.proposeReqs = nil, s.proposeReqs[:0]
}

func (s *Server) unregister(r *request) {
	k := cmdKey{r.cmd.ClientID, r.cmd.Seq}
	ws := s.pending[k]
	for i, w := range ws {
		if w == r {
			ws = append(ws[:i], ws[i+1:]...)
			break
		}
	}
	if len(ws) == 0 {
		delete(s.pending, k)
	} else {
		s.pending[k] = ws
	}
}

// handle does what a Ready asks, in the order the contract requires.
func (s *Server) handle(rd *paxos.Ready) {
	s.noteLeader(rd.Leader)
	if rd.Snapshot != nil {
		s.installSnapshot(rd.Snapshot)
	}
	if rd.Promised != 0 || len(rd.Entries) > 0 || rd.ChosenTo != 0 || len(rd.AfterSync) > 0 {
		s.persist(rd)
	}
	for i := range rd.Messages {
		s.sendPeer(&rd.Messages[i])
	}
	for i := range rd.Committed {
		s.apply(&rd.Committed[i])
	}
	for i := range rd.Dropped {
		s.answerCmd(&rd.Dropped[i], response{status: wire.StatusNotLeader, leader: rd.Leader})
	}
	for _, to := range rd.SendSnapshot {
		s.sendSnapshot(to)
	}
	if rd.CompactTo != 0 {
		upTo := rd.CompactTo
		s.runBackground(func() {
			if err := s.store.Truncate(upTo); err != nil {
				s.log.Error("log truncation failed", "up_to", upTo, "err", err)
			}
		})
	}
}

// persist hands the Ready's durable part to the disk; its AfterSync messages wait until the store's
// durable sequence number reaches the record's. Persist never blocks.
func (s *Server) persist(rd *paxos.Ready) {
	if !s.cfg.Fsync {
		rd.MustSync = false
	}
	t, err := s.store.Persist(rd)
	if err != nil {
		s.fail(err)
		return
	}
	if len(rd.AfterSync) > 0 {
		s.afterQ = append(s.afterQ, afterItem{t.Seq(), rd.AfterSync})
	}
}

// onDurable releases every message whose persist is now durable. A failed store fails the replica:
// nothing that depended on it is ever sent.
func (s *Server) onDurable() {
	if err := s.store.Err(); err != nil {
		s.fail(err)
		return
	}
	if s.failed != nil {
		return
	}
	durable := s.store.Durable()
	n := 0
	for ; n < len(s.afterQ) && s.afterQ[n].seq <= durable; n++ {
		for i := range s.afterQ[n].msgs {
			s.sendPeer(&s.afterQ[n].msgs[i])
		}
	}
	clear(s.afterQ[:n])
	s.afterQ = s.afterQ[n:]
}

// fail fences the replica after a disk failure: it acknowledges nothing, steps and ticks the core
// no more and sends nothing further, so it stops leading (the others elect a healthy leader when its
// heartbeats stop), and its memory stops growing. /status keeps answering and says why.
func (s *Server) fail(err error) {
	if s.failed != nil {
		return
	}
	s.failed = err
	s.afterQ, s.readWait, s.proposeBuf, s.proposeReqs = nil, nil, nil, nil
	s.log.Error("DISK FAILED: fenced off; acknowledging nothing; restart from the data directory once fixed", "err", err)
	s.failPending(wire.StatusUnavailable)
}

func (s *Server) sendPeer(m *paxos.Message) {
	if m.To == s.cfg.ID {
		s.local = append(s.local, *m)
		return
	}
	s.tr.send(m)
}

// apply applies one chosen slot and answers the requests waiting for its commands.
func (s *Server) apply(e *paxos.Entry) {
	var err error
	s.results, err = s.state.Apply(e.Slot, e.Cmds, s.results[:0])
	if err != nil {
		// The core released slots out of order: a bug that must stop the replica, not corrupt it.
		panic(err)
	}
	for i := range e.Cmds {
		s.bytesSince += uint64(e.Cmds[i].Size())
		s.answerCmd(&e.Cmds[i], resultResponse(&e.Cmds[i], &s.results[i]))
	}
	if len(s.readWait) > 0 {
		s.releaseReads()
	}
}

func resultResponse(c *paxos.Command, res *disk.Result) response {
	switch {
	case res.Stale:
		return response{status: wire.StatusStale}
	case res.Expired:
		return response{status: wire.StatusSessionExpired}
	case c.Op == paxos.OpOpen:
		return response{status: wire.StatusOK, value: binary.BigEndian.AppendUint64(nil, res.Session)}
	case c.Op != paxos.OpGet:
		return response{status: wire.StatusOK}
	case !res.Found:
		return response{status: wire.StatusNotFound}
	}
	// The state's memory changes with the next write: the reply gets its own copy.
	return response{status: wire.StatusOK, value: bytes.Clone(res.Value)}
}

func (s *Server) answerCmd(c *paxos.Command, resp response) {
	k := cmdKey{c.ClientID, c.Seq}
	ws, ok := s.pending[k]
	if !ok {
		return
	}
	delete(s.pending, k)
	for _, r := range ws {
		if r.http && resp.status == wire.StatusSessionExpired {
			s.httpSessionExpired(r)
			continue
		}
		r.answer(s, resp)
	}
}

func (s *Server) answerRead(r *request) {
	v, ok := s.state.Get(r.cmd.Key)
	if !ok {
		r.answer(s, response{status: wire.StatusNotFound})
		return
	}
	r.answer(s, response{status: wire.StatusOK, value: bytes.Clone(v)})
}

func (s *Server) releaseReads() {
	kept := s.readWait[:0]
	for _, r := range s.readWait {
		if s.state.Applied() >= r.readIndex {
			s.answerRead(r)
		} else {
			kept = append(kept, r)
		}
	}
	clear(s.readWait[len(kept):])
	s.readWait = kept
}

// sweepDeadlines answers requests that waited RequestTimeout: their command may still be chosen
// later, so the answer says "unknown" (Unavailable), never "failed".
func (s *Server) sweepDeadlines(now time.Time) {
	n := 0
	for ; n < len(s.deadlines) && !now.Before(s.deadlines[n].deadline); n++ {
		r := s.deadlines[n]
		if !r.done {
			s.stats.timeouts.Add(1)
			s.unregister(r)
			r.answer(s, response{status: wire.StatusUnavailable, leader: s.leader})
		}
	}
	clear(s.deadlines[:n])
	s.deadlines = s.deadlines[n:]
	for len(s.deadlines) > 0 && s.deadlines[0].done {
		s.deadlines = s.deadlines[1:]
	}
}

func (s *Server) failPending(st wire.Status) {
	for k, ws := range s.pending {
		for _, r := range ws {
			r.answer(s, response{status: st})
		}
		delete(s.pending, k)
	}
	for _, r := range s.readWait {
		r.answer(s, response{status: st})
	}
	for _, r := range s.httpSess.waiting {
		r.answer(s, response{status: st})
	}
	s.readWait, s.deadlines, s.httpSess.waiting = nil, nil, nil
}

// installSnapshot replaces the state with a peer's snapshot and saves it, so a restart resumes from
// it. Requests waiting for commands inside it are answered by their deadline.
func (s *Server) installSnapshot(snap *paxos.Snapshot) {
	st := s.peerSnap
	s.peerSnap = nil
	if st == nil || st.Applied() != snap.Slot {
		// stepPeer validated every snapshot it let through; this one was not seen there.
		s.fail(fmt.Errorf("replica: snapshot for slot %d was not validated before the core took it", snap.Slot))
		return
	}
	s.state = st
	s.log.Info("installed snapshot from a peer", "slot", snap.Slot, "keys", s.state.Len())
	data := snap.Data
	s.saveSnapshot(func() []byte { return data }, snap.Slot)
}

// maybeSnapshot saves a snapshot every SnapshotEverySlots applied slots or SnapshotEveryBytes
// applied command bytes, so the log can be truncated. The loop only clones the state (a few ms for
// 100k keys); sorting, encoding (tens of ms) and saving run in the background. Encoding on the loop
// stalled every request for as long, every few seconds under load.
//
// Every replica applies the same log, so the same thresholds would make all of them save a snapshot
// at once, and a quorum of disks would be busy with it together (the p99 spikes of an open-loop run
// lined up with those moments). Each cycle's thresholds are stretched by a random 0-50 % per replica,
// so snapshots come every 1 to 1.5 times SnapshotEverySlots/Bytes.
func (s *Server) maybeSnapshot() {
	slots, bytes := s.cfg.SnapshotEverySlots, s.cfg.SnapshotEveryBytes
	slots += uint64(float64(slots) * s.snapJitter)
	bytes += uint64(float64(bytes) * s.snapJitter)
	due := (slots > 0 && s.state.Applied() >= s.lastSnap+slots) || (bytes > 0 && s.bytesSince >= bytes)
	if !due || s.snapshotting || s.state.Applied() <= s.lastSnap {
		return
	}
	s.bytesSince = 0
	s.snapJitter = s.rng.Float64() / 2
	frozen := s.state.Clone()
	s.saveSnapshot(func() []byte { return frozen.AppendSnapshot(nil) }, frozen.Applied())
}

func (s *Server) saveSnapshot(encode func() []byte, slot uint64) {
	s.snapshotting = true
	s.runBackground(func() {
		started := time.Now()
		data := encode()
		err := s.store.SaveSnapshot(data)
		s.log.Info("snapshot saved", "slot", slot, "bytes", len(data), "took", time.Since(started).Round(time.Millisecond), "err", err)
		select {
		case s.snapDone <- snapResult{slot, err}:
		case <-s.ctx.Done():
		}
	})
}

func (s *Server) onSnapshotSaved(sr snapResult) {
	s.snapshotting = false
	if sr.err != nil {
		s.stats.snapshotErrors.Add(1)
		if errors.Is(sr.err, disk.ErrFailed) {
			s.fail(sr.err)
		} else if !errors.Is(sr.err, disk.ErrSnapshotOlder) {
			s.log.Error("snapshot not saved", "slot", sr.slot, "err", sr.err)
		}
		return
	}
	s.stats.snapshots.Add(1)
	s.lastSnap = max(s.lastSnap, sr.slot)
	s.core.Compact(sr.slot)
}

// sendSnapshot brings a peer behind the truncated log up to date: the loop clones the state, a
// goroutine encodes and queues it (the transport is safe for concurrent use).
func (s *Server) sendSnapshot(to paxos.ReplicaID) {
	if s.state.Applied() == 0 {
		return
	}
	p := s.tr.peers[to]
	if p == nil || !p.snapSending.CompareAndSwap(false, true) {
		return // one snapshot per peer at a time: encoding a large state takes longer than the core waits
	}
	frozen := s.state.Clone()
	s.snapWG.Add(1)
	go func() {
		defer s.snapWG.Done()
		defer p.snapSending.Store(false)
		data := frozen.AppendSnapshot(nil)
		if len(data)+64 > s.cfg.PeerFrameBytesMax {
			s.log.Error("state too large for one peer frame; replica cannot be brought up to date", "peer", to, "bytes", len(data))
			return
		}
		s.log.Info("sending snapshot", "peer", to, "slot", frozen.Applied(), "bytes", len(data))
		s.tr.send(&paxos.Message{Type: paxos.MsgSnapshot, From: s.cfg.ID, To: to, Slot: frozen.Applied(), Data: data})
	}()
}

// runBackground queues slow disk work; if the worker is busy for long the loop waits, which is the
// right backpressure (truncation and snapshots must not pile up). While it waits it takes the
// worker's snapshot results, or the two could wait for each other for ever.
func (s *Server) runBackground(job func()) {
	for {
		select {
		case s.bg <- job:
			return
		case sr := <-s.snapDone:
			s.onSnapshotSaved(sr)
		case <-s.ctx.Done():
			return
		}
	}
}
