package loadgen

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sofadb/sofadb/kv"
	"github.com/sofadb/sofadb/loadgen/sofaclient"
	"github.com/sofadb/sofadb/wire"
)

// redialBackoff is how long a broken connection waits before dialling again: long enough not to
// spin against a replica that is down, short enough to see it come back within a failover run.
const redialBackoff = 100 * time.Millisecond

// SofaTarget sends calls over SofaDB's binary protocol: Connections pipelined connections per
// replica (sofaclient.Conn), used in turn. A connection that breaks is redialled in the background;
// until it is back, calls routed to it fail at once as connection errors, which is what a failover
// run must see.
type SofaTarget struct {
	clock *Clock
	addrs []string
	pick  picker
	slots [][]*sofaSlot // [replica][connection]
	rr    []atomic.Uint32
	opts  sofaclient.Options
	stop  chan struct{}
	wg    sync.WaitGroup
}

// sofaSlot holds one connection, or nil while it is being redialled.
type sofaSlot struct {
	addr    string
	mu      sync.Mutex
	conn    *sofaclient.Conn
	dialing bool
}

func openSofa(clock *Clock, addrs []string, o TargetOptions) (Target, error) {
	return NewSofaTarget(clock, addrs, o)
}

// NewSofaTarget dials every connection. It fails only if no replica can be reached at all: a replica
// that is down at the start is redialled like one that fails later.
func NewSofaTarget(clock *Clock, addrs []string, o TargetOptions) (*SofaTarget, error) {
	t := &SofaTarget{clock: clock, addrs: addrs, pick: picker{policy: o.Policy, n: len(addrs)},
		rr: make([]atomic.Uint32, len(addrs)), stop: make(chan struct{}),
		opts: sofaclient.Options{Timeout: o.Timeout, DialTimeout: o.Timeout}}
	var errs []error
	reachable := 0
	for _, addr := range addrs {
		var row []*sofaSlot
		for range o.Connections {
			s := &sofaSlot{addr: addr}
			if c, err := sofaclient.Dial(addr, t.opts); err != nil {
				errs = append(errs, err)
				t.redial(s)
			} else {
				s.conn = c
				reachable++
			}
			row = append(row, s)
		}
		t.slots = append(t.slots, row)
	}
	if reachable == 0 {
		t.Close()
		return nil, fmt.Errorf("%w: no replica reachable: %w", ErrBadTarget, errors.Join(errs...))
	}
	return t, nil
}

// Go sends c on the next connection to the replica the policy picks.
func (t *SofaTarget) Go(c *Call, done chan<- *Call) {
	i := t.pick.pick()
	row := t.slots[i]
	s := row[int(t.rr[i].Add(1))%len(row)]
	conn := s.get()
	c.SentNs = t.clock.Now()
	if conn == nil {
		c.DoneNs, c.Class, c.Err = c.SentNs, ClassConnection, fmt.Errorf("%s: reconnecting", s.addr)
		t.pick.unreachable(i)
		done <- c
		return
	}
	conn.Go(c.Op, c.Key, c.Value, func(resp *wire.Response, err error) {
		c.DoneNs = t.clock.Now()
		if err != nil {
			c.Err = err
			c.Class = ClassConnection
			if errors.Is(err, sofaclient.ErrTimeout) {
				c.Class = ClassTimeout
			} else {
				t.broken(s, conn)
				t.pick.unreachable(i)
			}
		} else {
			t.classify(i, c, resp)
			if resp.Status == wire.StatusSessionExpired {
				t.broken(s, conn) // a new connection opens a new session
			}
		}
		done <- c
	})
}

// classify turns a response into the call's outcome; it runs on the connection's reader, while resp
// is still valid.
func (t *SofaTarget) classify(replica int, c *Call, resp *wire.Response) {
	switch resp.Status {
	case wire.StatusOK:
		c.Class = ClassOK
		if c.KeepOutput && c.Op == kv.OpGet {
			c.Output = append(c.Output[:0], resp.Value...)
		}
		return
	case wire.StatusNotFound:
		c.Class = ClassNotFound
		if c.Op != kv.OpGet {
			c.Class = ClassOK // deleting an absent key is done
		}
		return
	case wire.StatusNotLeader:
		c.Class = ClassNotLeader
		t.pick.notLeader(replica, indexOf(t.addrs, string(resp.LeaderAddr)))
	case wire.StatusBusy:
		c.Class = ClassBusy
	case wire.StatusUnavailable:
		c.Class = ClassUnavailable
	case wire.StatusTooLarge, wire.StatusBadRequest, wire.StatusSessionExpired:
		// Refused, not applied. (An expired session means the cluster evicted this connection's
		// session: 65,536 newer clients came since; the connection is redialled with a new one.)
		c.Class = ClassRejected
	default:
		c.Class = ClassServer
	}
	c.Err = fmt.Errorf("%s: %v", t.addrs[replica], resp.Status)
}

func (s *sofaSlot) get() *sofaclient.Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conn
}

// broken takes a failed connection out of its slot and starts redialling, once per failure.
func (t *SofaTarget) broken(s *sofaSlot, conn *sofaclient.Conn) {
	s.mu.Lock()
	if s.conn != conn {
		s.mu.Unlock()
		return
	}
	s.conn = nil
	s.mu.Unlock()
	go conn.Close()
	t.redial(s)
}

// redial dials s again every redialBackoff until it succeeds or the target closes.
func (t *SofaTarget) redial(s *sofaSlot) {
	s.mu.Lock()
	if s.dialing {
		s.mu.Unlock()
		return
	}
	s.dialing = true
	s.mu.Unlock()
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		for {
			select {
			case <-t.stop:
				return
			case <-time.After(redialBackoff):
			}
			c, err := sofaclient.Dial(s.addr, t.opts)
			if err != nil {
				continue
			}
			s.mu.Lock()
			s.conn, s.dialing = c, false
			s.mu.Unlock()
			return
		}
	}()
}

// Close closes every connection; calls in flight complete with ClassConnection.
func (t *SofaTarget) Close() error {
	select {
	case <-t.stop:
		return nil
	default:
	}
	close(t.stop)
	t.wg.Wait()
	for _, row := range t.slots {
		for _, s := range row {
			if c := s.get(); c != nil {
				c.Close()
			}
		}
	}
	return nil
}
