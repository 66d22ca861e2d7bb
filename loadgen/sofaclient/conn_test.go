package sofaclient_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sofadb/sofadb/kv"
	"github.com/sofadb/sofadb/loadgen/sofaclient"
	"github.com/sofadb/sofadb/loadgen/sofaclient/sofatest"
	"github.com/sofadb/sofadb/wire"
)

func start(t *testing.T) *sofatest.Server {
	t.Helper()
	s, err := sofatest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func dial(t *testing.T, s *sofatest.Server, o sofaclient.Options) *sofaclient.Conn {
	t.Helper()
	c, err := sofaclient.Dial(s.Addr(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestPipelinedOutOfOrder: puts are answered 50 ms late and gets at once, so responses arrive out of
// order on one connection; each must reach its own callback, with its own value.
func TestPipelinedOutOfOrder(t *testing.T) {
	s := start(t)
	c := dial(t, s, sofaclient.Options{Timeout: 2 * time.Second})
	ctx := context.Background()
	for i := range 50 {
		if r, err := c.Do(ctx, kv.OpPut, fmt.Appendf(nil, "k%d", i), fmt.Appendf(nil, "v%d", i)); err != nil || r.Status != wire.StatusOK {
			t.Fatalf("put: %v %v", r, err)
		}
	}
	s.SetPutDelay(50 * time.Millisecond)
	var mu sync.Mutex
	var order []string
	var wg sync.WaitGroup
	record := func(what string, want string) sofaclient.Callback {
		wg.Add(1)
		return func(resp *wire.Response, err error) {
			defer wg.Done()
			mu.Lock()
			defer mu.Unlock()
			if err != nil || resp.Status != wire.StatusOK || string(resp.Value) != want {
				t.Errorf("%s: resp %+v err %v, want value %q", what, resp, err, want)
			}
			order = append(order, what)
		}
	}
	c.Go(kv.OpPut, []byte("slow"), []byte("x"), record("put", ""))
	for i := range 50 {
		c.Go(kv.OpGet, fmt.Appendf(nil, "k%d", i), nil, record("get", fmt.Sprintf("v%d", i)))
	}
	wg.Wait()
	if order[len(order)-1] != "put" || order[0] != "get" {
		t.Fatalf("the delayed put was not answered last: %v", order[:3])
	}
	if c.InFlight() != 0 {
		t.Fatalf("%d requests still in flight", c.InFlight())
	}
}

// TestTimeoutAndLateAnswer: a request the server never answers fails with ErrTimeout near the
// timeout, and the connection keeps working for the others.
func TestTimeoutAndLateAnswer(t *testing.T) {
	s := start(t)
	s.SetSilent("hole")
	c := dial(t, s, sofaclient.Options{Timeout: 100 * time.Millisecond})
	startAt := time.Now()
	_, err := c.Do(context.Background(), kv.OpGet, []byte("hole"), nil)
	if el := time.Since(startAt); !errors.Is(err, sofaclient.ErrTimeout) || el < 100*time.Millisecond || el > time.Second {
		t.Fatalf("err %v after %v, want ErrTimeout after about 100 ms", err, el)
	}
	if r, err := c.Do(context.Background(), kv.OpGet, []byte("other"), nil); err != nil || r.Status != wire.StatusNotFound {
		t.Fatalf("after a timeout: %+v %v, want not-found", r, err)
	}
}

// TestCloseFailsPending: every request in flight when the connection goes away gets ErrClosed,
// exactly once, and so does every request after.
func TestCloseFailsPending(t *testing.T) {
	s := start(t)
	s.SetSilent("hole")
	c := dial(t, s, sofaclient.Options{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	calls := 0
	for range 10 {
		wg.Add(1)
		c.Go(kv.OpGet, []byte("hole"), nil, func(_ *wire.Response, err error) {
			defer wg.Done()
			mu.Lock()
			calls++
			mu.Unlock()
			if !errors.Is(err, sofaclient.ErrClosed) {
				t.Errorf("err %v, want ErrClosed", err)
			}
		})
	}
	for c.InFlight() < 10 {
		time.Sleep(time.Millisecond)
	}
	s.Close() // the server drops the connection: the reader fails it
	wg.Wait()
	if calls != 10 {
		t.Fatalf("%d callbacks for 10 requests", calls)
	}
	if _, err := c.Do(context.Background(), kv.OpGet, []byte("k"), nil); !errors.Is(err, sofaclient.ErrClosed) {
		t.Fatalf("after the connection failed: %v, want ErrClosed", err)
	}
}

// TestRetryKeepsIdentity: GoRequest sends the caller's (ClientID, Seq), and refuses a Seq still in
// flight; a retry after the first attempt is done is accepted.
func TestRetryKeepsIdentity(t *testing.T) {
	s := start(t)
	s.SetSilent("hole")
	c := dial(t, s, sofaclient.Options{Timeout: 50 * time.Millisecond})
	req := &wire.Request{ClientID: c.ClientID(), Seq: 77, Op: kv.OpGet, Key: []byte("hole")}
	first, second := make(chan error, 1), make(chan error, 1)
	c.GoRequest(req, func(_ *wire.Response, err error) { first <- err })
	c.GoRequest(req, func(_ *wire.Response, err error) { second <- err })
	if err := <-second; !errors.Is(err, sofaclient.ErrSeqInFlight) {
		t.Fatalf("duplicate seq in flight: %v, want ErrSeqInFlight", err)
	}
	if err := <-first; !errors.Is(err, sofaclient.ErrTimeout) {
		t.Fatalf("first attempt: %v, want ErrTimeout", err)
	}
	req.Key = []byte("k")
	c.GoRequest(req, func(resp *wire.Response, err error) {
		if err == nil && resp.Seq != 77 {
			err = fmt.Errorf("seq %d", resp.Seq)
		}
		second <- err
	})
	if err := <-second; err != nil {
		t.Fatalf("retry: %v", err)
	}
	if seq := c.Go(kv.OpGet, []byte("k"), nil, func(*wire.Response, error) {}); seq <= 77 {
		t.Fatalf("Go chose seq %d, not above the caller's 77", seq)
	}
}

// TestNotLeaderHint: a follower's answer carries the leader's address.
func TestNotLeaderHint(t *testing.T) {
	s := start(t)
	s.SetFollower(true, "127.0.0.9:7000")
	c := dial(t, s, sofaclient.Options{Timeout: time.Second})
	r, err := c.Do(context.Background(), kv.OpPut, []byte("k"), []byte("v"))
	if err != nil || r.Status != wire.StatusNotLeader || r.LeaderAddr != "127.0.0.9:7000" {
		t.Fatalf("%+v %v, want not-leader with the hint", r, err)
	}
}
