package loadgen

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/sofadb/sofadb/kv"
	"github.com/sofadb/sofadb/loadgen/lincheck"
	"github.com/sofadb/sofadb/loadgen/sofaclient/sofatest"
	"github.com/valyala/fasthttp"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// issue sends one call through a target and waits for it.
func issue(t *testing.T, tg Target, op kv.Op, key, value string) *Call {
	t.Helper()
	done := make(chan *Call, 1)
	tg.Go(&Call{Step: Step{Op: op}, Key: []byte(key), Value: []byte(value), KeepOutput: true}, done)
	select {
	case c := <-done:
		if c.SentNs == 0 || c.DoneNs < c.SentNs {
			t.Fatalf("%v %s: sent %d done %d", op, key, c.SentNs, c.DoneNs)
		}
		return c
	case <-time.After(5 * time.Second):
		t.Fatalf("%v %s: no completion", op, key)
	}
	return nil
}

func expect(t *testing.T, c *Call, class Class, output string) {
	t.Helper()
	if c.Class != class || (output != "" && string(c.Output) != output) {
		t.Fatalf("%v %s: class %v output %q (err %v), want %v %q", c.Op, c.Key, c.Class, c.Output, c.Err, class, output)
	}
}

// kvSemantics checks put, get, get of a missing key and delete through any target.
func kvSemantics(t *testing.T, tg Target) {
	expect(t, issue(t, tg, kv.OpPut, "k1", "value-1"), ClassOK, "")
	expect(t, issue(t, tg, kv.OpGet, "k1", ""), ClassOK, "value-1")
	expect(t, issue(t, tg, kv.OpGet, "nope", ""), ClassNotFound, "")
	expect(t, issue(t, tg, kv.OpDelete, "k1", ""), ClassOK, "")
	expect(t, issue(t, tg, kv.OpGet, "k1", ""), ClassNotFound, "")
}

func opts() TargetOptions {
	return TargetOptions{Connections: 2, Timeout: 300 * time.Millisecond, Policy: PolicyLeader, MaxInflight: 64}
}

// TestSofaTarget: key-value semantics over the binary protocol, then a leader change: the follower's
// not-leader answer (with a hint) is recorded as such, and the next call goes to the hinted leader.
func TestSofaTarget(t *testing.T) {
	follower, leader := startSofa(t), startSofa(t)
	follower.SetFollower(true, leader.Addr())
	tg, err := NewSofaTarget(NewClock(time.Now()), []string{follower.Addr(), leader.Addr()}, opts())
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	expect(t, issue(t, tg, kv.OpPut, "k1", "v"), ClassNotLeader, "")
	kvSemantics(t, tg)
	leader.SetSilent("hole")
	expect(t, issue(t, tg, kv.OpGet, "hole", ""), ClassTimeout, "")
	leader.Close()
	expect(t, issue(t, tg, kv.OpGet, "k1", ""), ClassConnection, "")
}

// TestSofaTargetReconnects: after its replica restarts, a broken connection is redialled in the
// background; calls fail as connection errors until then, and succeed after.
func TestSofaTargetReconnects(t *testing.T) {
	s := startSofa(t)
	o := opts()
	o.Connections = 1
	tg, err := NewSofaTarget(NewClock(time.Now()), []string{s.Addr()}, o)
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	expect(t, issue(t, tg, kv.OpPut, "k", "v"), ClassOK, "")
	addr := s.Addr()
	s.Close()
	expect(t, issue(t, tg, kv.OpGet, "k", ""), ClassConnection, "")
	expect(t, issue(t, tg, kv.OpGet, "k", ""), ClassConnection, "") // redial pending: fails at once
	s2, err := sofatest.StartAt(addr)
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", addr, err)
	}
	defer s2.Close()
	deadline := time.Now().Add(3 * time.Second)
	for {
		c := issue(t, tg, kv.OpGet, "k", "")
		if c.Class == ClassNotFound { // the restarted server has lost its data, but it answers
			return
		}
		if c.Class != ClassConnection || time.Now().After(deadline) {
			t.Fatalf("after the restart: %v (%v), want the connection back", c.Class, c.Err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSofaTargetMovesOffDeadLeader: when the replica the generator believes leads stops answering
// at the connection, the next calls go to another replica (which forwards or names the leader)
// instead of failing until the dead one comes back. The bench's failover window depends on it.
func TestSofaTargetMovesOffDeadLeader(t *testing.T) {
	dead, alive := startSofa(t), startSofa(t)
	tg, err := NewSofaTarget(NewClock(time.Now()), []string{dead.Addr(), alive.Addr()}, opts())
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	expect(t, issue(t, tg, kv.OpPut, "k", "v"), ClassOK, "")
	dead.Close()
	var classes []Class
	for range 4 {
		c := issue(t, tg, kv.OpPut, "k", "v2")
		classes = append(classes, c.Class)
		if c.Class == ClassOK {
			return
		}
	}
	t.Fatalf("after the leader guess died: %v, want a success from the live replica", classes)
}

// TestHTTPTargetMovesOffDeadLeader: the same over HTTP.
func TestHTTPTargetMovesOffDeadLeader(t *testing.T) {
	alive := startHTTP(t, sofaHTTPHandler)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := ln.Addr().String()
	ln.Close() // nothing listens there: connection refused
	tg := NewSofaHTTPTarget(NewClock(time.Now()), []string{deadAddr, alive.addr()}, opts())
	defer tg.Close()
	var classes []Class
	for range 4 {
		c := issue(t, tg, kv.OpPut, "k", "v")
		classes = append(classes, c.Class)
		if c.Class == ClassOK {
			return
		}
	}
	t.Fatalf("with the first replica down: %v, want a success from the live one", classes)
}

func startSofa(t *testing.T) *sofatest.Server {
	s, err := sofatest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// kvServer is an in-memory HTTP server on loopback speaking either SofaDB's /kv API or etcd's
// JSON gateway; a follower answers 307 to the leader; key "slow" is answered after 1 s.
type kvServer struct {
	ln       net.Listener
	mu       sync.Mutex
	data     map[string][]byte
	leader   string // when set, this server redirects there
	requests int
}

func startHTTP(t *testing.T, handler func(*kvServer, *fasthttp.RequestCtx)) *kvServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &kvServer{ln: ln, data: map[string][]byte{}}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		s.mu.Lock()
		s.requests++
		s.mu.Unlock()
		handler(s, ctx)
	}}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Shutdown() })
	return s
}

func (s *kvServer) addr() string { return s.ln.Addr().String() }

func sofaHTTPHandler(s *kvServer, ctx *fasthttp.RequestCtx) {
	key := strings.TrimPrefix(string(ctx.Path()), "/kv/")
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.leader != "" {
		ctx.Response.Header.Set("Location", "http://"+s.leader+"/kv/"+key)
		ctx.SetStatusCode(fasthttp.StatusTemporaryRedirect)
		return
	}
	if key == "slow" {
		s.mu.Unlock()
		time.Sleep(time.Second)
		s.mu.Lock()
	}
	switch string(ctx.Method()) {
	case "PUT":
		s.data[key] = append([]byte(nil), ctx.PostBody()...)
		ctx.SetStatusCode(fasthttp.StatusNoContent)
	case "GET":
		if v, ok := s.data[key]; ok {
			ctx.SetBody(v)
		} else {
			ctx.SetStatusCode(fasthttp.StatusNotFound)
		}
	case "DELETE":
		delete(s.data, key)
		ctx.SetStatusCode(fasthttp.StatusNoContent)
	}
}

// TestSofaHTTPTarget: the same semantics over HTTP, a 307 recorded as not_leader that moves the
// leader guess, and a slow answer recorded as a timeout.
func TestSofaHTTPTarget(t *testing.T) {
	follower, leader := startHTTP(t, sofaHTTPHandler), startHTTP(t, sofaHTTPHandler)
	follower.mu.Lock()
	follower.leader = leader.addr()
	follower.mu.Unlock()
	tg := NewSofaHTTPTarget(NewClock(time.Now()), []string{follower.addr(), leader.addr()}, opts())
	defer tg.Close()
	expect(t, issue(t, tg, kv.OpPut, "k1", "v"), ClassNotLeader, "")
	kvSemantics(t, tg)
	expect(t, issue(t, tg, kv.OpGet, "slow", ""), ClassTimeout, "")
	follower.mu.Lock()
	defer follower.mu.Unlock()
	if follower.requests != 1 {
		t.Fatalf("follower saw %d requests, want 1: the redirect did not move the leader", follower.requests)
	}
}

func etcdHandler(s *kvServer, ctx *fasthttp.RequestCtx) {
	var req struct{ Key, Value []byte }
	if err := json.Unmarshal(ctx.PostBody(), &req); err != nil {
		ctx.SetStatusCode(fasthttp.StatusBadRequest)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	header := `{"header":{"cluster_id":"1","member_id":"2","revision":"3","raft_term":"4"}`
	switch string(ctx.Path()) {
	case "/v3/kv/put":
		s.data[string(req.Key)] = req.Value
		ctx.SetBodyString(header + "}")
	case "/v3/kv/range":
		if v, ok := s.data[string(req.Key)]; ok {
			ctx.SetBodyString(header + `,"kvs":[{"key":"` + base64.StdEncoding.EncodeToString(req.Key) +
				`","create_revision":"2","mod_revision":"3","version":"1","value":"` +
				base64.StdEncoding.EncodeToString(v) + `"}],"count":"1"}`)
		} else {
			ctx.SetBodyString(header + "}")
		}
	case "/v3/kv/deleterange":
		delete(s.data, string(req.Key))
		ctx.SetBodyString(header + `,"deleted":"1"}`)
	default:
		ctx.SetStatusCode(fasthttp.StatusNotFound)
	}
}

// TestEtcdTarget: etcd's JSON gateway shapes (base64 keys and values, absent kvs for a miss), as
// etcd 3.4 answers them.
func TestEtcdTarget(t *testing.T) {
	s := startHTTP(t, etcdHandler)
	tg := NewEtcdTarget(NewClock(time.Now()), []string{s.addr()}, opts())
	defer tg.Close()
	kvSemantics(t, tg)
}

// TestRunAgainstSofa: a whole run over the binary protocol with preload, a read-write mix and the
// history file: every read finds a value written by the preload or the run.
func TestRunAgainstSofa(t *testing.T) {
	s := startSofa(t)
	dir := t.TempDir()
	sum, err := Run(context.Background(), Config{TargetURL: "sofa://" + s.Addr(), RateOpsPerSec: 2000,
		Duration: time.Second, Preload: true, OutDir: dir, History: true, MaxLagP99: noisyLagP99,
		Workload: Workload{Mix: MixYCSBA, Keys: 200, KeyBytes: 8, ValueBytes: 32}})
	if err != nil {
		t.Fatal(err)
	}
	get := sum.Ops["get"]
	if get == nil || get.Count == 0 || get.NotFound != 0 || sum.Failed != 0 || sum.Sent != sum.Completed {
		t.Fatalf("sent %d completed %d failed %d, gets %+v: want every call answered, no miss after preload",
			sum.Sent, sum.Completed, sum.Failed, get)
	}
	checkLines(t, dir+"/"+HistoryFile, int(sum.Sent))
	checkLinearizable(t, dir+"/"+HistoryFile)
}

// checkLinearizable runs the history through porcupine, then plants a stale read and checks that the
// checker catches it: the history carries what a checker needs, in the form it needs.
func checkLinearizable(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := lincheck.Read(f)
	if err != nil {
		t.Fatal(err)
	}
	if res := lincheck.Check(recs, 10*time.Second); res != porcupine.Ok {
		t.Fatalf("history of a single in-memory server: %v, want Ok", res)
	}
	// A read after a completed write of its key must see a written value; the first read of a key
	// the history never wrote could legitimately see anything (the preload's value).
	written := map[string]int64{} // key -> earliest return of a successful put
	for _, r := range recs {
		if r.Op == "put" && r.Class == "ok" {
			if at, ok := written[r.Key]; !ok || r.ReturnNs < at {
				written[r.Key] = r.ReturnNs
			}
		}
	}
	for i := range recs {
		r := &recs[i]
		if at, ok := written[r.Key]; ok && r.Op == "get" && r.Found && r.CallNs > at {
			r.Output = "never-written"
			if res := lincheck.Check(recs, 10*time.Second); res != porcupine.Illegal {
				t.Fatalf("history with a read of a value never written: %v, want Illegal", res)
			}
			return
		}
	}
	t.Fatal("no read followed a write of its key")
}

// TestClassifyGRPC: etcd's client errors land in the generator's classes; a call that failed at the
// connection is what moves the leader guess.
func TestClassifyGRPC(t *testing.T) {
	for _, c := range []struct {
		err  error
		want Class
	}{
		{context.DeadlineExceeded, ClassTimeout},
		{fmt.Errorf("wrapped: %w", context.DeadlineExceeded), ClassTimeout},
		{rpctypes.ErrTimeoutDueToLeaderFail, ClassTimeout},
		{rpctypes.ErrNoLeader, ClassUnavailable},
		{rpctypes.ErrTooManyRequests, ClassBusy},
		{rpctypes.ErrRequestTooLarge, ClassRejected},
		{status.Error(codes.Unavailable, "connection refused"), ClassConnection},
		{status.Error(codes.ResourceExhausted, "too big"), ClassBusy},
		{errors.New("something else"), ClassServer},
	} {
		if got := classifyGRPC(c.err); got != c.want {
			t.Errorf("classifyGRPC(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
