// Package sofatest is an in-memory stand-in for a SofaDB replica's binary client port, for testing
// clients (the load generator, sofaclient) without a cluster. It speaks the real wire protocol over
// loopback TCP, can answer out of order, refuse as a follower with a leader hint, or stay silent.
package sofatest

import (
	"bufio"
	"encoding/binary"
	"net"
	"sync"
	"time"

	"github.com/sofadb/sofadb/kv"
	"github.com/sofadb/sofadb/wire"
)

// Server is a single-replica key-value server. Safe for concurrent use; configure it with the
// setters while it runs.
type Server struct {
	ln net.Listener

	mu         sync.Mutex
	data       map[string][]byte
	notLeader  bool
	hint       string
	putDelay   time.Duration
	silentKeys map[string]bool
	conns      map[net.Conn]bool
	requests   int
	sessions   uint64
	wg         sync.WaitGroup
}

// Start listens on a free loopback port.
func Start() (*Server, error) { return StartAt("127.0.0.1:0") }

// StartAt listens on addr: a test restarts a "replica" on the address it had, to exercise
// reconnection. Its data starts empty, as after a crash without persistence.
func StartAt(addr string) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &Server{ln: ln, data: map[string][]byte{}, silentKeys: map[string]bool{}, conns: map[net.Conn]bool{}}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// Addr is the host:port clients dial.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// SetFollower makes every request answer StatusNotLeader with hint as LeaderAddr ("" for none);
// SetFollower(false, "") makes the server lead again.
func (s *Server) SetFollower(follower bool, hint string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.notLeader, s.hint = follower, hint
}

// SetPutDelay delays the answer to every put, so that gets sent after it are answered before it.
func (s *Server) SetPutDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.putDelay = d
}

// SetSilent makes the server never answer requests for key.
func (s *Server) SetSilent(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.silentKeys[key] = true
}

// Requests is how many requests the server has read.
func (s *Server) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// Close stops listening and drops every connection.
func (s *Server) Close() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns[nc] = true
		s.mu.Unlock()
		s.wg.Add(1)
		go s.serve(nc)
	}
}

// conn writes responses: from the reading goroutine and from delayed-answer timers, under a lock.
type conn struct {
	mu sync.Mutex
	bw *bufio.Writer
}

func (c *conn) send(r *wire.Response, flush bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.bw.Write(wire.AppendResponseFrame(nil, r))
	if flush {
		c.bw.Flush()
	}
}

func (s *Server) serve(nc net.Conn) {
	defer s.wg.Done()
	defer nc.Close()
	rd := wire.NewReader(nc, 0, wire.ClientRequestTypes)
	c := &conn{bw: bufio.NewWriter(nc)}
	var req wire.Request
	for {
		_, payload, err := rd.Next()
		if err == nil {
			_, err = wire.DecodeRequest(payload, &req)
		}
		if err != nil {
			return
		}
		resp, delay, silent := s.handle(&req)
		switch {
		case silent:
		case delay > 0:
			time.AfterFunc(delay, func() { c.send(resp, true) })
		default:
			c.send(resp, false)
		}
		if rd.Buffered() == 0 { // flush when the input runs dry: one write per burst of requests
			c.mu.Lock()
			c.bw.Flush()
			c.mu.Unlock()
		}
	}
}

// handle applies one request and returns its response, how long to hold it, and whether to drop it.
func (s *Server) handle(req *wire.Request) (*wire.Response, time.Duration, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	resp := &wire.Response{Seq: req.Seq, Status: wire.StatusOK}
	if req.Op == kv.OpOpen {
		// Like a real replica, a follower too opens sessions (it forwards them), and an open is not
		// counted among the requests tests look at.
		s.sessions++
		resp.Value = binary.BigEndian.AppendUint64(nil, s.sessions)
		return resp, 0, false
	}
	s.requests++
	if s.silentKeys[string(req.Key)] {
		return nil, 0, true
	}
	if s.notLeader {
		resp.Status = wire.StatusNotLeader
		if s.hint != "" {
			resp.LeaderAddr = []byte(s.hint)
		}
		return resp, 0, false
	}
	switch req.Op {
	case kv.OpPut:
		s.data[string(req.Key)] = append([]byte(nil), req.Value...)
		return resp, s.putDelay, false
	case kv.OpGet:
		v, ok := s.data[string(req.Key)]
		if !ok {
			resp.Status = wire.StatusNotFound
		}
		resp.Value = v
	case kv.OpDelete:
		if _, ok := s.data[string(req.Key)]; !ok {
			resp.Status = wire.StatusNotFound
		}
		delete(s.data, string(req.Key))
	default:
		resp.Status = wire.StatusBadRequest
	}
	return resp, 0, false
}
