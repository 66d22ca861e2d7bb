package driver

import (
	"bytes"
	"encoding/binary"
	"time"

	"github.com/sofadb/sofadb/kv"
	"github.com/sofadb/sofadb/paxos"
	"github.com/sofadb/sofadb/wire"
)

// answer replies to a request once; the reply is counted by status unless the request is internal.
func (d *Driver) answer(r *Request, resp Response) {
	if r.done {
		return
	}
	r.done = true
	if int(resp.Status) < len(d.stats.Replies) && !r.internal {
		d.stats.Replies[resp.Status].Add(1)
	}
	if !r.internal && !r.Arrived.IsZero() && (resp.Status == wire.StatusOK || resp.Status == wire.StatusNotFound) {
		kind := 1
		if r.op == kv.OpGet {
			kind = 0
		}
		d.stats.Latency[kind].Observe(int64(d.clock.Now().Sub(r.Arrived)))
	}
	r.Reply(resp)
}

// NewCommand builds the command for a client's operation: its name and the state machine's payload
// (one buffer holds key and value, copied from the caller's).
func NewCommand(clientID, seq uint64, op kv.Op, key, value []byte) paxos.Command {
	return paxos.Command{ClientID: clientID, Seq: seq, Data: kv.AppendPayload(make([]byte, 0, kv.PayloadBytes(key, value)), op, key, value)}
}

// Submit routes one client request: a lease read is answered from local state, everything else
// becomes a command for the log (proposed at End, with the others of this wake-up).
func (d *Driver) Submit(r *Request) {
	if d.failed != nil || d.stopped {
		d.answer(r, Response{Status: wire.StatusUnavailable})
		return
	}
	if r.Arrived.IsZero() {
		r.Arrived = d.clock.Now()
	}
	op, key, _, err := kv.DecodePayload(r.Cmd.Data)
	if err != nil {
		d.answer(r, Response{Status: wire.StatusBadRequest})
		return
	}
	r.op, r.key = op, key
	leader := d.core.Status().Leader
	if op == kv.OpGet {
		if idx, ok := d.ReadIndex(); ok {
			d.stats.LeaseReads.Add(1)
			r.readIndex = idx
			if d.state.Applied() >= idx {
				d.answerRead(r)
			} else {
				d.readWait = append(d.readWait, r)
			}
			return
		}
	}
	// A replica that has known no leader for several election timeouts refuses at once: the
	// request was not taken, so NotLeader (retry elsewhere), not Unavailable (outcome unknown).
	// Held, it would wait out the client's timeout on a replica that cannot reach a quorum.
	if d.leaderless() {
		d.stats.Leaderless.Add(1)
		d.answer(r, Response{Status: wire.StatusNotLeader})
		return
	}
	// A session is opened through whichever replica the client reached: it names the client for
	// good, wherever its later requests go.
	if d.cfg.Redirect && leader != d.cfg.Core.ID && op != kv.OpOpen {
		d.answer(r, Response{Status: wire.StatusNotLeader, Leader: leader})
		return
	}
	if r.HTTP && r.Cmd.ClientID == 0 && !d.assignHTTP(r) {
		return // parked until an HTTP session is open
	}
	if op == kv.OpGet {
		d.stats.LogReads.Add(1)
	}
	k := cmdKey{r.Cmd.ClientID, r.Cmd.Seq}
	w := d.pending[k]
	if len(w.reqs) == 0 && !w.proposedAt.IsZero() {
		d.orphans--
	}
	w.reqs = append(w.reqs, r)
	d.deadlines = append(d.deadlines, r)
	// A retry (same client and sequence) of a command this replica proposed less than a request
	// timeout ago waits for that copy: its answer, when applied, goes to every request waiting for
	// it. Queueing a copy per retry fed a retry storm: with slow slots each copy outlived the
	// request timeout, so every retry added another and the queue never drained (simulator seed
	// 564). An older copy may be lost (a forward to a leader that died unnoticed): then propose.
	if !w.proposedAt.IsZero() && d.now.Sub(w.proposedAt) < d.cfg.RequestTimeout {
		d.pending[k] = w
		d.stats.Coalesced.Add(1)
		return
	}
	w.proposedAt = d.now
	d.pending[k] = w
	d.proposeBuf = append(d.proposeBuf, r.Cmd)
	d.proposeReqs = append(d.proposeReqs, r)
}

// flushProposals hands the commands admitted in this wake-up to the core in one Propose, so they
// can share a slot.
func (d *Driver) flushProposals() {
	if len(d.proposeBuf) == 0 {
		return
	}
	if d.store.Behind() || d.core.Propose(d.proposeBuf) != nil {
		// A full core queue, or a disk that is behind: refuse new commands (clients retry) rather
		// than queue more. Heartbeats and replies keep flowing: the loop never waits for the disk.
		d.stats.Busy.Add(uint64(len(d.proposeReqs)))
		reqs := d.proposeReqs
		d.proposeBuf, d.proposeReqs = nil, nil
		for _, r := range reqs {
			k := cmdKey{r.Cmd.ClientID, r.Cmd.Seq}
			if w, ok := d.pending[k]; ok { // not proposed after all: a retry must propose again
				w.proposedAt = time.Time{}
				d.pending[k] = w
			}
			d.unregister(r)
			d.answer(r, Response{Status: wire.StatusBusy})
		}
		return
	}
	// The core keeps the slice it was given: start a fresh one.
	d.proposeBuf, d.proposeReqs = nil, d.proposeReqs[:0]
}

// unregister forgets r (answered elsewhere, or timed out). The entry of a command with a copy
// in flight outlives its last request, so that a retry still finds the copy (an orphan, pruned a
// request timeout after the copy was proposed: see sweepDeadlines).
func (d *Driver) unregister(r *Request) {
	k := cmdKey{r.Cmd.ClientID, r.Cmd.Seq}
	w, ok := d.pending[k]
	if !ok {
		return
	}
	for i, x := range w.reqs {
		if x == r {
			w.reqs = append(w.reqs[:i], w.reqs[i+1:]...)
			break
		}
	}
	switch {
	case len(w.reqs) > 0:
		d.pending[k] = w
	case w.proposedAt.IsZero():
		delete(d.pending, k)
	default:
		d.pending[k] = w
		d.orphans++
	}
}

// answerCmd answers every request waiting for command c.
func (d *Driver) answerCmd(c *paxos.Command, resp Response) {
	k := cmdKey{c.ClientID, c.Seq}
	w, ok := d.pending[k]
	if !ok {
		return
	}
	delete(d.pending, k)
	if len(w.reqs) == 0 {
		d.orphans--
	}
	ws := w.reqs
	for _, r := range ws {
		if r.HTTP && resp.Status == wire.StatusSessionExpired {
			d.httpSessionExpired(r)
			continue
		}
		d.answer(r, resp)
	}
}

func (d *Driver) answerRead(r *Request) {
	v, ok := d.state.Get(r.key)
	resp := Response{Status: wire.StatusNotFound, Slot: d.state.Applied(), Index: -1}
	if ok {
		resp.Status, resp.Value = wire.StatusOK, bytes.Clone(v)
	}
	d.answer(r, resp)
}

func (d *Driver) releaseReads() {
	kept := d.readWait[:0]
	for _, r := range d.readWait {
		if d.state.Applied() >= r.readIndex {
			d.answerRead(r)
		} else {
			kept = append(kept, r)
		}
	}
	clear(d.readWait[len(kept):])
	d.readWait = kept
}

// sweepDeadlines answers requests that waited RequestTimeout: their command may still be chosen
// later, so the answer says "unknown" (Unavailable), never "failed".
func (d *Driver) sweepDeadlines(now time.Time) {
	n := 0
	for ; n < len(d.deadlines) && !now.Before(d.deadlines[n].Deadline); n++ {
		r := d.deadlines[n]
		if !r.done {
			d.stats.Timeouts.Add(1)
			d.unregister(r)
			d.answer(r, Response{Status: wire.StatusUnavailable, Leader: d.leader})
		}
	}
	clear(d.deadlines[:n])
	d.deadlines = d.deadlines[n:]
	// Orphans whose copy was never applied here (covered by a peer snapshot, lost with a leader)
	// would stay for ever: past a request timeout they no longer hold retries back anyway.
	if d.orphans > 1024 {
		for k, w := range d.pending {
			if len(w.reqs) == 0 && now.Sub(w.proposedAt) >= d.cfg.RequestTimeout {
				delete(d.pending, k)
				d.orphans--
			}
		}
	}
	for len(d.deadlines) > 0 && d.deadlines[0].done {
		d.deadlines = d.deadlines[1:]
	}
}

func (d *Driver) failPending(st wire.Status) {
	for k, w := range d.pending {
		for _, r := range w.reqs {
			d.answer(r, Response{Status: st})
		}
		delete(d.pending, k)
	}
	d.orphans = 0
	for _, r := range d.readWait {
		d.answer(r, Response{Status: st})
	}
	for _, r := range d.httpSess.waiting {
		d.answer(r, Response{Status: st})
	}
	d.readWait, d.deadlines, d.httpSess.waiting = nil, nil, nil
}

// httpSessionsMax is how many sessions the driver keeps for HTTP requests. HTTP clients have no
// session of their own (a request is one exchange, never retried under the same name), so the
// replica opens sessions through the log, like any client, and deals their sequence numbers out to
// HTTP requests in turn. Several sessions, because a session remembers only SessionWindow sequence
// numbers below its highest: with thousands of HTTP requests in flight one would refuse late ones as
// stale.
const httpSessionsMax = 16

// httpSessions is the pool of sessions for HTTP requests.
type httpSessions struct {
	ids     []uint64
	next    []uint64 // next sequence number per session
	rr      int
	opening bool
	openReq *Request   // the session open in flight, while opening
	waiting []*Request // HTTP requests admitted while no session was open
}

// assignHTTP gives an HTTP request a session and sequence number, or parks it until a session is
// open (and starts opening one). It reports whether the request may go on to the log now.
func (d *Driver) assignHTTP(r *Request) bool {
	p := &d.httpSess
	if len(p.ids) < httpSessionsMax && !p.opening {
		d.openHTTPSession()
	}
	if len(p.ids) == 0 {
		p.waiting = append(p.waiting, r)
		d.deadlines = append(d.deadlines, r)
		return false
	}
	i := p.rr % len(p.ids)
	p.rr++
	r.Cmd.ClientID, r.Cmd.Seq = p.ids[i], p.next[i]
	p.next[i]++
	return true
}

// openHTTPSession proposes an OpOpen whose answer comes back to the driver itself.
func (d *Driver) openHTTPSession() {
	p := &d.httpSess
	p.opening = true
	r := &Request{
		Cmd:      NewCommand(d.rng.Uint64()|1, 0, kv.OpOpen, nil, nil),
		Deadline: d.clock.Now().Add(d.cfg.RequestTimeout),
		internal: true,
	}
	r.Reply = d.onHTTPSession
	p.openReq = r
	d.Submit(r)
}

// onHTTPSession takes a session the log gave out (or the failure to get one) and admits the HTTP
// requests that waited for it.
func (d *Driver) onHTTPSession(resp Response) {
	p := &d.httpSess
	p.opening, p.openReq = false, nil
	if resp.Status == wire.StatusOK && len(resp.Value) == 8 {
		p.ids = append(p.ids, binary.BigEndian.Uint64(resp.Value))
		p.next = append(p.next, 1)
	}
	waiting := p.waiting
	p.waiting = nil
	for _, r := range waiting {
		if !r.done {
			d.Submit(r) // parks them again (and retries the open) if it failed
		}
	}
}

// httpSessionExpired drops a session the state machine no longer holds and sends the request again
// under another: expired means it was not applied, so nothing is applied twice.
func (d *Driver) httpSessionExpired(r *Request) {
	p := &d.httpSess
	for i, id := range p.ids {
		if id == r.Cmd.ClientID {
			p.ids = append(p.ids[:i], p.ids[i+1:]...)
			p.next = append(p.next[:i], p.next[i+1:]...)
			break
		}
	}
	r.Cmd.ClientID, r.Cmd.Seq = 0, 0
	d.Submit(r)
}

func sessionBytes(id uint64) []byte { return binary.BigEndian.AppendUint64(nil, id) }
