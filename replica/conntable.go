package replica

import (
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// connTable admits client connections on one port. A global cap alone let 1,024 silent
// connections lock every new client out for as long as they were held (issue 12, item 4). So:
//   - one source host may hold at most perSource connections;
//   - at the global cap, a new connection evicts the connection that has been idle longest (no
//     request being served, nothing read for at least evictAfter), and is refused only when none is;
//   - idle connections are also closed after a timeout (the binary reader's deadline, fasthttp's
//     ReadTimeout and IdleTimeout).
//
// A busy client is never evicted; a silent one gives way. Safe for concurrent use.
type connTable struct {
	max, perSource int
	evictAfter     time.Duration

	mu       sync.Mutex
	conns    map[tracked]string // connection -> source host
	bySource map[string]int
}

// tracked is a connection the table can judge and close.
type tracked interface {
	// idleSince reports whether the connection is idle (nothing being served) and since when (unix ns).
	idleSince() (int64, bool)
	kill()
}

func newConnTable(max, perSource int, evictAfter time.Duration) *connTable {
	return &connTable{max: max, perSource: perSource, evictAfter: evictAfter,
		conns: map[tracked]string{}, bySource: map[string]int{}}
}

// refusal reasons, as logged.
const (
	refusedPerSource = "over the per-source connection limit"
	refusedFull      = "over the connection limit, no idle connection to evict"
)

// admit takes c (from source) in, or says why not. A victim, when returned, has been removed to
// make room and must be killed by the caller.
func (t *connTable) admit(c tracked, source string, now time.Time) (victim tracked, refused string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.bySource[source] >= t.perSource {
		return nil, refusedPerSource
	}
	if len(t.conns) >= t.max {
		var oldest int64
		for x := range t.conns {
			since, idle := x.idleSince()
			if idle && now.Sub(time.Unix(0, since)) >= t.evictAfter && (victim == nil || since < oldest) {
				victim, oldest = x, since
			}
		}
		if victim == nil {
			return nil, refusedFull
		}
		t.removeLocked(victim)
	}
	t.conns[c] = source
	t.bySource[source]++
	return victim, ""
}

// enter admits x (accepted as nc) or refuses it: a refusal is counted, logged as kind and closed;
// an eviction is counted and the victim closed (its reader sees the close and ends it).
func (t *connTable) enter(x tracked, source string, nc net.Conn, now time.Time, kind string, rl *refusalLog, st *serverStats) bool {
	victim, why := t.admit(x, source, now)
	if why != "" {
		st.refusedClientConns.Add(1)
		rl.refuse(kind, nc.RemoteAddr().String(), why)
		nc.Close()
		return false
	}
	if victim != nil {
		st.evictedClientConns.Add(1)
		victim.kill()
	}
	return true
}

// remove forgets c (its connection ended); removing twice is harmless.
func (t *connTable) remove(c tracked) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.removeLocked(c)
}

func (t *connTable) removeLocked(c tracked) {
	source, ok := t.conns[c]
	if !ok {
		return
	}
	delete(t.conns, c)
	if t.bySource[source]--; t.bySource[source] <= 0 {
		delete(t.bySource, source)
	}
}

// sourceOf is the host part of a remote address: connections are counted per source host.
func sourceOf(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

// touch records activity on cc (a request read): it is not idle.
func (cc *clientConn) touch(now time.Time) { cc.lastActive.Store(now.UnixNano()) }

func (cc *clientConn) idleSince() (int64, bool) { return cc.lastActive.Load(), len(cc.slots) == 0 }
func (cc *clientConn) kill()                    { cc.c.Close() }

// httpConn is an HTTP connection as the table sees it: fasthttp reports its state (ConnState).
type httpConn struct {
	net.Conn
	state atomic.Int32 // fasthttp.ConnState
	since atomic.Int64 // unix ns of the last state change
}

func (c *httpConn) idleSince() (int64, bool) {
	st := fasthttp.ConnState(c.state.Load())
	return c.since.Load(), st == fasthttp.StateNew || st == fasthttp.StateIdle
}
func (c *httpConn) kill() { c.Conn.Close() }

// httpListener admits HTTP connections through a connTable before fasthttp sees them; fasthttp's
// own Concurrency limit answers 503 to everyone once full, which is what slowloris exploited.
type httpListener struct {
	net.Listener
	table  *connTable
	refuse *refusalLog
	stats  *serverStats
}

func (l *httpListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		now := time.Now()
		hc := &httpConn{Conn: c}
		hc.state.Store(int32(fasthttp.StateNew))
		hc.since.Store(now.UnixNano())
		if l.table.enter(hc, sourceOf(c.RemoteAddr()), c, now, "refused http connection", l.refuse, l.stats) {
			return hc, nil
		}
	}
}

// connState is fasthttp's ConnState hook: it keeps the table's view of each connection current.
func (l *httpListener) connState(c net.Conn, st fasthttp.ConnState) {
	hc, ok := c.(*httpConn)
	if !ok {
		return
	}
	hc.state.Store(int32(st))
	hc.since.Store(time.Now().UnixNano())
	if st == fasthttp.StateClosed || st == fasthttp.StateHijacked {
		l.table.remove(hc)
	}
}
