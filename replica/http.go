package replica

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/sofadb/sofadb/driver"
	"github.com/sofadb/sofadb/kv"
	"github.com/sofadb/sofadb/wire"
)

func (s *front) newHTTPServer(connState func(net.Conn, fasthttp.ConnState)) *fasthttp.Server {
	return &fasthttp.Server{
		Handler:               s.handleHTTP,
		Name:                  "sofadb",
		NoDefaultServerHeader: true,
		// The limit answers 413 itself; the slack lets our own check name the limit in its message.
		MaxRequestBodySize: s.cfg.ValueBytesMax + 1024,
		// The request line carries the key, percent-encoded at worst three bytes per byte: the
		// header buffer must hold it, or fasthttp answers 431 below -key-max (issue 11, bug 3).
		ReadBufferSize: 3*s.cfg.KeyBytesMax + 4096,
		// Connections are admitted by an httpListener (per-source cap, idle eviction at the
		// global cap): fasthttp's own limit answered 503 to every new client once silent
		// connections filled it. Its Concurrency is only a backstop above ours.
		Concurrency: 2 * s.cfg.ClientConnsMax,
		ConnState:   connState,
		// A request must arrive whole within ReadTimeout (slowloris).
		ReadTimeout:  10 * time.Second,
		WriteTimeout: 30 * time.Second,
		IdleTimeout:  60 * time.Second,
		Logger:       httpLogger{s},
		ErrorHandler: s.httpError,
	}
}

// httpError answers a request fasthttp could not read. Its default handler answers 400 "Error when
// parsing request" to everything, a body over MaxRequestBodySize included; the API promises 413 for
// a value over the limit, and a message that says what was wrong.
func (s *front) httpError(ctx *fasthttp.RequestCtx, err error) {
	var small *fasthttp.ErrSmallBuffer
	var netErr net.Error
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		s.stats.tooLarge.Add(1)
		ctx.Error(fmt.Sprintf("too large: keys up to %d bytes, values up to %d bytes\n", s.cfg.KeyBytesMax, s.cfg.ValueBytesMax),
			fasthttp.StatusRequestEntityTooLarge)
	case errors.As(err, &small):
		ctx.Error("request header too large\n", fasthttp.StatusRequestHeaderFieldsTooLarge)
	case errors.As(err, &netErr) && netErr.Timeout():
		ctx.Error("request timeout\n", fasthttp.StatusRequestTimeout)
	default:
		s.stats.badRequests.Add(1)
		ctx.Error("bad request: "+err.Error()+"\n", fasthttp.StatusBadRequest)
	}
}

type httpLogger struct{ s *front }

// Printf logs fasthttp's complaints (mostly broken connections) at a bounded rate.
func (l httpLogger) Printf(format string, args ...any) {
	l.s.refuse.refuse("http connection error", "", fmt.Sprintf(format, args...))
}

var kvPrefix = []byte("/kv/")

// handleHTTP serves the key-value API, /status and /metrics. A fasthttp handler must answer before
// it returns (the RequestCtx and every slice from it are reused after), so the key and value are
// copied before the request goes to the loop, and the handler waits for the loop's answer.
func (s *front) handleHTTP(ctx *fasthttp.RequestCtx) {
	path := ctx.Path()
	switch {
	case bytes.HasPrefix(ctx.RequestURI(), kvPrefix):
		key, err := rawKey(ctx.RequestURI())
		if err != nil {
			s.stats.badRequests.Add(1)
			ctx.Error("bad request: "+err.Error()+"\n", fasthttp.StatusBadRequest)
			return
		}
		s.handleKV(ctx, key)
	case string(path) == "/status" && ctx.IsGet():
		s.handleStatus(ctx)
	case string(path) == "/metrics" && ctx.IsGet():
		s.metrics(ctx)
	default:
		ctx.Error("not found: use /kv/{key}, /status or /metrics\n", fasthttp.StatusNotFound)
	}
}

// rawKey is the key of a /kv/ request: the raw request path after /kv/ (up to any query),
// percent-decoded. fasthttp's normalised Path() would turn /kv/a/../b into /kv/b and collapse
// slashes; keys are opaque bytes, so they are read from the raw URI. The encoding is the URL's:
// a%2Fb and a/b name the same key, any byte can be sent as %XX, and a malformed escape is refused.
func rawKey(uri []byte) ([]byte, error) {
	raw := uri[len(kvPrefix):]
	if i := bytes.IndexByte(raw, '?'); i >= 0 {
		raw = raw[:i]
	}
	if bytes.IndexByte(raw, '%') < 0 {
		return raw, nil
	}
	key, err := url.PathUnescape(string(raw))
	if err != nil {
		return nil, fmt.Errorf("key %q is not a valid percent-encoded path", raw)
	}
	return []byte(key), nil
}

func (s *front) handleKV(ctx *fasthttp.RequestCtx, key []byte) {
	var op kv.Op
	switch {
	case ctx.IsPut():
		op = kv.OpPut
	case ctx.IsGet(), ctx.IsHead(): // HEAD: GET's status and headers; fasthttp sends no body
		op = kv.OpGet
	case ctx.IsDelete():
		op = kv.OpDelete
	default:
		// ctx.Error resets the response, headers included: set Allow after it.
		ctx.Error("method not allowed: use GET, HEAD, PUT or DELETE on /kv/{key}\n", fasthttp.StatusMethodNotAllowed)
		ctx.Response.Header.Set("Allow", "GET, HEAD, PUT, DELETE")
		return
	}
	var value []byte
	if op == kv.OpPut {
		value = ctx.PostBody()
	}
	switch s.checkRequest(op, len(key), len(value)) {
	case wire.StatusBadRequest:
		ctx.Error("bad request: empty key\n", fasthttp.StatusBadRequest)
		return
	case wire.StatusTooLarge:
		ctx.Error(fmt.Sprintf("too large: keys up to %d bytes, values up to %d bytes\n", s.cfg.KeyBytesMax, s.cfg.ValueBytesMax),
			fasthttp.StatusRequestEntityTooLarge)
		return
	}
	done := make(chan driver.Response, 1)
	r := &driver.Request{
		// The driver gives the request a session and sequence number of its own.
		Cmd:      driver.NewCommand(0, 0, op, key, value), // copies
		HTTP:     true,
		Deadline: time.Now().Add(s.cfg.RequestTimeout),
		Arrived:  ctx.Time(), // when fasthttp began serving the request
		Reply:    func(resp driver.Response) { done <- resp },
	}
	if !s.trySubmit(r) {
		r.Reply(driver.Response{Status: wire.StatusBusy})
	}
	select {
	case resp := <-done:
		s.writeKV(ctx, op, key, resp)
	case <-s.stopped:
		// The loop is gone and will not answer a request it had not taken yet; fasthttp's
		// Shutdown waits for this handler, so answer now: with the loop's answer if it made it
		// (pending requests are failed before the loop returns), else "unknown".
		select {
		case resp := <-done:
			s.writeKV(ctx, op, key, resp)
		default:
			ctx.Error("replica stopping: the outcome is unknown\n", fasthttp.StatusServiceUnavailable)
		}
	case <-time.After(s.cfg.RequestTimeout + time.Second):
		ctx.Error("timed out: the outcome is unknown\n", fasthttp.StatusGatewayTimeout)
	}
}

func (s *front) writeKV(ctx *fasthttp.RequestCtx, op kv.Op, key []byte, resp driver.Response) {
	switch resp.Status {
	case wire.StatusOK:
		if op == kv.OpGet {
			ctx.SetContentType("application/octet-stream")
			ctx.SetBody(resp.Value)
			return
		}
		ctx.SetStatusCode(fasthttp.StatusNoContent)
	case wire.StatusNotFound:
		ctx.Error("not found\n", fasthttp.StatusNotFound)
	case wire.StatusNotLeader:
		if addr := s.cfg.HTTPAddrs[resp.Leader]; resp.Leader != 0 && addr != "" {
			// ctx.Error resets the response, headers included: set Location after it.
			ctx.Error(fmt.Sprintf("not the leader: replica %d is\n", resp.Leader), fasthttp.StatusTemporaryRedirect)
			ctx.Response.Header.Set("Location", "http://"+addr+"/kv/"+string(key))
			return
		}
		ctx.Error("no leader known yet: retry\n", fasthttp.StatusServiceUnavailable)
	case wire.StatusBusy:
		ctx.Error("busy: retry later\n", fasthttp.StatusTooManyRequests)
	case wire.StatusStale:
		ctx.Error("stale request\n", fasthttp.StatusConflict)
	default:
		ctx.Error("unavailable: the outcome is unknown\n", fasthttp.StatusServiceUnavailable)
	}
}

func (s *front) handleStatus(ctx *fasthttp.RequestCtx) {
	st, ok := s.status()
	if !ok {
		ctx.Error("replica stopping\n", fasthttp.StatusServiceUnavailable)
		return
	}
	body, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		ctx.Error(err.Error(), fasthttp.StatusInternalServerError)
		return
	}
	ctx.SetContentType("application/json")
	ctx.SetBody(append(body, '\n'))
}
