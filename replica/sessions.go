package replica

import (
	"encoding/binary"
	"time"

	"github.com/sofadb/sofadb/paxos"
	"github.com/sofadb/sofadb/wire"
)

// httpSessionsMax is how many sessions the loop keeps for HTTP requests. HTTP clients have no
// session of their own (a request is one exchange, never retried under the same name), so the
// replica opens sessions through the log, like any client, and deals their sequence numbers out to
// HTTP requests in turn. Several sessions, because a session remembers only SessionWindow sequence
// numbers below its highest: with thousands of HTTP requests in flight one would refuse late ones as
// stale.
const httpSessionsMax = 16

// httpSessions is the loop's pool of sessions for HTTP requests. Only the loop touches it.
type httpSessions struct {
	ids     []uint64
	next    []uint64 // next sequence number per session
	rr      int
	opening bool
	waiting []*request // HTTP requests admitted while no session was open
}

// assignHTTP gives an HTTP request a session and sequence number, or parks it until a session is
// open (and starts opening one). It reports whether the request may go on to the log now.
func (s *Server) assignHTTP(r *request) bool {
	p := &s.httpSess
	if len(p.ids) < httpSessionsMax && !p.opening {
		s.openHTTPSession()
	}
	if len(p.ids) == 0 {
		p.waiting = append(p.waiting, r)
		s.deadlines = append(s.deadlines, r)
		return false
	}
	i := p.rr % len(p.ids)
	p.rr++
	r.cmd.ClientID, r.cmd.Seq = p.ids[i], p.next[i]
	p.next[i]++
	return true
}

// openHTTPSession proposes an OpOpen whose answer comes back to the loop itself.
func (s *Server) openHTTPSession() {
	p := &s.httpSess
	p.opening = true
	r := &request{
		cmd:      paxos.Command{ClientID: s.rng.Uint64() | 1, Op: paxos.OpOpen},
		deadline: time.Now().Add(s.cfg.RequestTimeout),
		internal: true,
	}
	r.reply = func(resp response) { s.onHTTPSession(resp) }
	s.admit(r)
}

// onHTTPSession takes a session the log gave out (or the failure to get one) and admits the HTTP
// requests that waited for it.
func (s *Server) onHTTPSession(resp response) {
	p := &s.httpSess
	p.opening = false
	if resp.status == wire.StatusOK && len(resp.value) == 8 {
		p.ids = append(p.ids, binary.BigEndian.Uint64(resp.value))
		p.next = append(p.next, 1)
	}
	waiting := p.waiting
	p.waiting = nil
	for _, r := range waiting {
		if !r.done {
			s.admit(r) // parks them again (and retries the open) if it failed
		}
	}
}

// httpSessionExpired drops a session the state machine no longer holds and sends the request again
// under another: expired means it was not applied, so nothing is applied twice.
func (s *Server) httpSessionExpired(r *request) {
	p := &s.httpSess
	for i, id := range p.ids {
		if id == r.cmd.ClientID {
			p.ids = append(p.ids[:i], p.ids[i+1:]...)
			p.next = append(p.next[:i], p.next[i+1:]...)
			break
		}
	}
	r.cmd.ClientID, r.cmd.Seq = 0, 0
	s.admit(r)
}
