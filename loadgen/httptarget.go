package loadgen

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sofadb/sofadb/kv"
	"github.com/valyala/fasthttp"
)

// httpCodec is what differs between HTTP services: how a call becomes a request, and how a response
// becomes an outcome.
type httpCodec interface {
	// build fills req for c, sent to addr.
	build(req *fasthttp.Request, addr string, c *Call)
	// parse sets c.Class (and c.Output, c.Err) from resp, and returns the leader a redirect names
	// (host:port, or "" when there is none).
	parse(resp *fasthttp.Response, c *Call) (leaderAddr string)
}

// HTTPTarget sends calls over HTTP/1.1 with fasthttp. HTTP/1.1 without pipelining carries one request
// per connection at a time, so each replica gets Connections goroutines, each owning one connection
// and taking calls from the replica's queue: a call's send time is stamped when a connection takes
// it, so time spent waiting for a free connection shows as lag, not as service time.
//
// The client never retries (MaxIdemponentCallAttempts = 1): a retried PUT could apply twice and would
// hide the failover errors a benchmark must show. It never follows a redirect itself either: a 307 is
// recorded as not_leader and moves the leader guess.
type HTTPTarget struct {
	clock   *Clock
	addrs   []string
	codec   httpCodec
	clients []*fasthttp.HostClient
	queues  []chan queuedCall
	pick    picker
	timeout time.Duration
	conns   int
	stop    chan struct{}
	closed  atomic.Bool
	wg      sync.WaitGroup
	busy    []atomic.Int32 // per replica: connections carrying a request
	waits   atomic.Int64   // calls that found every connection of their replica busy
}

type queuedCall struct {
	c    *Call
	done chan<- *Call
}

// NewSofaHTTPTarget sends calls to SofaDB's HTTP API (PUT, GET, DELETE /kv/{key}) on every replica
// in addrs.
func NewSofaHTTPTarget(clock *Clock, addrs []string, o TargetOptions) *HTTPTarget {
	return newHTTPTarget(clock, addrs, sofaHTTPCodec{}, o)
}

// NewEtcdTarget sends calls to etcd v3's JSON gateway on every member in addrs.
func NewEtcdTarget(clock *Clock, addrs []string, o TargetOptions) *HTTPTarget {
	return newHTTPTarget(clock, addrs, etcdCodec{}, o)
}

// newHTTPTarget starts the connection goroutines for every replica in addrs.
func newHTTPTarget(clock *Clock, addrs []string, codec httpCodec, o TargetOptions) *HTTPTarget {
	t := &HTTPTarget{clock: clock, addrs: addrs, codec: codec, timeout: o.Timeout, conns: o.Connections,
		pick: picker{policy: o.Policy, n: len(addrs)}, stop: make(chan struct{}), busy: make([]atomic.Int32, len(addrs))}
	for _, addr := range addrs {
		t.clients = append(t.clients, &fasthttp.HostClient{
			Addr: addr, Name: "sofadb-loadgen", MaxConns: o.Connections,
			MaxIdemponentCallAttempts: 1,         // never retry: see the type's comment
			MaxConnWaitTimeout:        o.Timeout, // else ErrNoFreeConns at once when MaxConns is reached
			ReadTimeout:               o.Timeout, WriteTimeout: o.Timeout,
			DisablePathNormalizing: true, NoDefaultUserAgentHeader: true,
		})
		// A queue holds every call the generator can have outstanding, so Go never blocks.
		t.queues = append(t.queues, make(chan queuedCall, o.MaxInflight))
	}
	// Started only now: the goroutines read t.queues, which the loop above was still growing.
	for i := range addrs {
		for range o.Connections {
			t.wg.Add(1)
			go t.serve(i)
		}
	}
	return t
}

// Concurrency is how many requests can be on the wire at once: the Little's-law warning compares it
// with rate x latency.
func (t *HTTPTarget) Concurrency() int {
	if t.pick.policy == PolicyLeader {
		return t.conns
	}
	return t.conns * len(t.addrs)
}

// QueueWaits is how many calls had to wait for a free connection; their wait is in their lag, and
// the summary names it as the cause when the lag is too high.
func (t *HTTPTarget) QueueWaits() int64 { return t.waits.Load() }

// Go queues c for the replica the policy picks.
func (t *HTTPTarget) Go(c *Call, done chan<- *Call) {
	if t.closed.Load() {
		t.fail(c, done, ClassConnection, ErrClosed)
		return
	}
	i := t.pick.pick()
	if int(t.busy[i].Load())+len(t.queues[i]) >= t.conns {
		t.waits.Add(1) // it will wait in the queue for a connection: lag the summary must explain
	}
	select {
	case t.queues[i] <- queuedCall{c, done}:
	default: // only if the caller broke its in-flight bound
		t.fail(c, done, ClassConnection, errors.New("loadgen: http queue full"))
	}
}

func (t *HTTPTarget) fail(c *Call, done chan<- *Call, class Class, err error) {
	now := t.clock.Now()
	if c.SentNs == 0 {
		c.SentNs = now
	}
	c.DoneNs, c.Class, c.Err = now, class, err
	done <- c
}

// serve is one connection's goroutine for replica i.
func (t *HTTPTarget) serve(i int) {
	defer t.wg.Done()
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	for {
		select {
		case q := <-t.queues[i]:
			t.busy[i].Add(1)
			t.do(i, req, resp, q)
			t.busy[i].Add(-1)
		case <-t.stop:
			for { // answer whatever is still queued, so every call completes once
				select {
				case q := <-t.queues[i]:
					t.fail(q.c, q.done, ClassConnection, ErrClosed)
				default:
					return
				}
			}
		}
	}
}

func (t *HTTPTarget) do(i int, req *fasthttp.Request, resp *fasthttp.Response, q queuedCall) {
	c := q.c
	req.Reset()
	resp.Reset()
	t.codec.build(req, t.addrs[i], c)
	c.SentNs = t.clock.Now()
	err := t.clients[i].DoTimeout(req, resp, t.timeout)
	c.DoneNs = t.clock.Now()
	if err != nil {
		if c.Class, c.Err = classifyNetErr(err), err; c.Class == ClassConnection {
			t.pick.unreachable(i)
		}
	} else if leader := t.codec.parse(resp, c); c.Class == ClassNotLeader {
		t.pick.notLeader(i, indexOf(t.addrs, leader))
	}
	q.done <- c
}

// classifyNetErr sorts a transport error: the call's own deadline is a timeout, anything else that
// kept the request from being answered is a connection error.
func classifyNetErr(err error) Class {
	var ne net.Error
	if errors.Is(err, fasthttp.ErrTimeout) || (errors.As(err, &ne) && ne.Timeout()) {
		return ClassTimeout
	}
	return ClassConnection
}

// Close stops the connection goroutines; calls still queued complete with ErrClosed. It must not
// race with Go (the generator closes its target after its workers have exited).
func (t *HTTPTarget) Close() error {
	if t.closed.Swap(true) {
		return nil
	}
	close(t.stop)
	t.wg.Wait()
	for _, c := range t.clients {
		c.CloseIdleConnections()
	}
	return nil
}

// classifyStatus maps the HTTP statuses both codecs share.
func classifyStatus(code int) Class {
	switch code {
	case fasthttp.StatusTemporaryRedirect, fasthttp.StatusPermanentRedirect:
		return ClassNotLeader
	case fasthttp.StatusServiceUnavailable:
		return ClassUnavailable
	case fasthttp.StatusTooManyRequests:
		return ClassBusy
	case fasthttp.StatusRequestEntityTooLarge, fasthttp.StatusBadRequest:
		return ClassRejected
	case fasthttp.StatusGatewayTimeout, fasthttp.StatusRequestTimeout:
		return ClassTimeout
	}
	return ClassServer
}

func statusErr(resp *fasthttp.Response) error {
	body := resp.Body()
	return fmt.Errorf("http %d: %.200s", resp.StatusCode(), body)
}

// sofaHTTPCodec speaks SofaDB's HTTP API: PUT, GET and DELETE on /kv/{key}.
type sofaHTTPCodec struct{}

func (sofaHTTPCodec) build(req *fasthttp.Request, addr string, c *Call) {
	uri := req.URI()
	uri.SetScheme("http")
	uri.SetHost(addr)
	var buf [128]byte
	uri.SetPathBytes(append(append(buf[:0], "/kv/"...), c.Key...)) // copied by SetPathBytes
	switch c.Op {
	case kv.OpPut:
		req.Header.SetMethod(fasthttp.MethodPut)
		req.SetBodyRaw(c.Value)
	case kv.OpGet:
		req.Header.SetMethod(fasthttp.MethodGet)
	case kv.OpDelete:
		req.Header.SetMethod(fasthttp.MethodDelete)
	}
}

func (sofaHTTPCodec) parse(resp *fasthttp.Response, c *Call) string {
	code := resp.StatusCode()
	switch {
	case code == fasthttp.StatusOK || code == fasthttp.StatusNoContent:
		c.Class = ClassOK
		if c.Op == kv.OpGet && c.KeepOutput {
			c.Output = append(c.Output[:0], resp.Body()...)
		}
		return ""
	case code == fasthttp.StatusNotFound && c.Op == kv.OpGet:
		c.Class = ClassNotFound
		return ""
	}
	c.Class, c.Err = classifyStatus(code), statusErr(resp)
	if c.Class == ClassNotLeader {
		if u, err := url.Parse(string(resp.Header.Peek(fasthttp.HeaderLocation))); err == nil {
			return u.Host
		}
	}
	return ""
}

// etcdCodec speaks etcd v3's JSON gateway (POST /v3/kv/put, /v3/kv/range, /v3/kv/deleterange with
// base64 keys and values), so the same run can measure etcd. etcd forwards to its leader itself, so
// it never redirects.
type etcdCodec struct{}

var etcdPaths = [numOps]string{"/v3/kv/put", "/v3/kv/range", "/v3/kv/deleterange"}

func (etcdCodec) build(req *fasthttp.Request, addr string, c *Call) {
	uri := req.URI()
	uri.SetScheme("http")
	uri.SetHost(addr)
	uri.SetPath(etcdPaths[c.Op-1])
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentType("application/json")
	b := append(req.Body()[:0], `{"key":"`...)
	b = base64.StdEncoding.AppendEncode(b, c.Key)
	if c.Op == kv.OpPut {
		b = append(b, `","value":"`...)
		b = base64.StdEncoding.AppendEncode(b, c.Value)
	}
	req.SetBodyRaw(append(b, `"}`...))
}

// etcdRange is the part of a range response the generator reads.
type etcdRange struct {
	Kvs []struct {
		Value []byte `json:"value"` // base64 in JSON; encoding/json decodes it into bytes
	} `json:"kvs"`
}

func (etcdCodec) parse(resp *fasthttp.Response, c *Call) string {
	code := resp.StatusCode()
	if code != fasthttp.StatusOK {
		c.Class, c.Err = classifyStatus(code), statusErr(resp)
		return ""
	}
	c.Class = ClassOK
	if c.Op != kv.OpGet {
		return ""
	}
	var r etcdRange
	if err := json.Unmarshal(resp.Body(), &r); err != nil {
		c.Class, c.Err = ClassServer, fmt.Errorf("etcd range response: %w", err)
		return ""
	}
	if len(r.Kvs) == 0 {
		c.Class = ClassNotFound
	} else if c.KeepOutput {
		c.Output = append(c.Output[:0], r.Kvs[0].Value...)
	}
	return ""
}
