package replica

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/sofadb/sofadb/disk"
	"github.com/sofadb/sofadb/paxos"
	"github.com/sofadb/sofadb/wire"
)

func randomU64() uint64 { return rand.Uint64() }

// drainMax bounds how many queued inputs of one kind the loop takes per wake-up, so no input
// starves the others and each Ready covers a batch (which is what makes batching work).
const drainMax = 1024

// loop is the one goroutine that owns the core. Each wake-up takes a batch of inputs (peer
// messages, client requests, disk completions, ticks), then handles the core's Ready.
func (s *Server) loop(ctx context.Context) error {
	ticker := time.NewTicker(s.cfg.TickInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			s.failPending(wire.StatusUnavailable)
			s.flushReplies()
			return nil
		case <-ticker.C:
			s.core.Tick()
			s.sweepDeadlines(time.Now())
		case m := <-s.peerIn:
			s.core.Step(&m)
			for i := 0; i < drainMax && len(s.peerIn) > 0; i++ {
				m := <-s.peerIn
				s.core.Step(&m)
			}
		case r := <-s.reqs:
			s.admit(r)
			for i := 0; i < drainMax && len(s.reqs) > 0; i++ {
				s.admit(<-s.reqs)
			}
		case d := <-s.durable:
			s.onDurable(d)
			for i := 0; i < drainMax && len(s.durable) > 0; i++ {
				s.onDurable(<-s.durable)
			}
		case sr := <-s.snapDone:
			s.onSnapshotSaved(sr)
		case ch := <-s.statusReq:
			ch <- s.status()
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
		}
		s.tr.flush()
		s.flushReplies()
	}
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
	if s.cfg.Redirect && leader != s.cfg.ID {
		r.answer(s, response{status: wire.StatusNotLeader, leader: leader})
		return
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
	if err := s.core.Propose(s.proposeBuf); err != nil {
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
	s.maybeSnapshot()
}

// persist hands the Ready's durable part to the disk; its AfterSync messages wait for the ticket.
func (s *Server) persist(rd *paxos.Ready) {
	if !s.cfg.Fsync {
		rd.MustSync = false
	}
	t := s.store.Persist(rd)
	s.ticketSeq++
	if len(rd.AfterSync) > 0 {
		s.afterQ = append(s.afterQ, afterItem{s.ticketSeq, rd.AfterSync})
	}
	s.tickets <- ticketItem{s.ticketSeq, t}
}

// onDurable releases every message whose persist is now durable. A failed ticket fails the replica:
// nothing that depended on it is ever sent.
func (s *Server) onDurable(d ticketResult) {
	if d.err != nil {
		s.fail(d.err)
		return
	}
	if s.failed != nil {
		return
	}
	n := 0
	for ; n < len(s.afterQ) && s.afterQ[n].seq <= d.seq; n++ {
		for i := range s.afterQ[n].msgs {
			s.sendPeer(&s.afterQ[n].msgs[i])
		}
	}
	clear(s.afterQ[:n])
	s.afterQ = s.afterQ[n:]
}

func (s *Server) fail(err error) {
	if s.failed != nil {
		return
	}
	s.failed = err
	s.afterQ = nil
	s.log.Error("DISK FAILED: no longer acknowledging anything; restart from the data directory once fixed", "err", err)
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
	s.readWait, s.deadlines = nil, nil
}

// installSnapshot replaces the state with a peer's snapshot and saves it, so a restart resumes from
// it. Requests waiting for commands inside it are answered by their deadline.
func (s *Server) installSnapshot(snap *paxos.Snapshot) {
	if err := s.state.Restore(snap.Data); err != nil {
		s.log.Error("peer snapshot does not restore; ignoring it", "slot", snap.Slot, "err", err)
		return
	}
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
// lined up with those moments). Each cycle's thresholds are stretched by a random 0-50 % per replica.
func (s *Server) maybeSnapshot() {
	slots, bytes := s.cfg.SnapshotEverySlots, s.cfg.SnapshotEveryBytes
	slots += uint64(float64(slots) * s.snapJitter)
	bytes += uint64(float64(bytes) * s.snapJitter)
	due := (slots > 0 && s.state.Applied() >= s.lastSnap+slots) || (bytes > 0 && s.bytesSince >= bytes)
	if !due || s.snapshotting || s.state.Applied() <= s.lastSnap {
		return
	}
	s.bytesSince = 0
	s.snapJitter = rand.Float64() / 2
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
		s.snapDone <- snapResult{slot, err}
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
	frozen := s.state.Clone()
	go func() {
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
// right backpressure (truncation and snapshots must not pile up).
func (s *Server) runBackground(job func()) { s.bg <- job }
