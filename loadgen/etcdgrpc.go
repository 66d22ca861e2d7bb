package loadgen

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sofadb/sofadb/kv"
)

// EtcdGRPCTarget drives etcd through its gRPC API with the official client (go.etcd.io/etcd/client/v3),
// the way etcd's users talk to it. Each member gets Connections clients of its own, each pinned to
// that one endpoint, so the targeting policy decides which member a call goes to (the client's own
// balancer would spread calls over all of them). etcd never refuses a write for not leading, it
// forwards it; under PolicyLeader the target starts at the member that leads when it connects, and
// moves on when a call fails at the connection.
type EtcdGRPCTarget struct {
	clock   *Clock
	addrs   []string
	clients [][]*clientv3.Client
	rr      []atomic.Uint32
	pick    picker
	timeout time.Duration
	wg      sync.WaitGroup
	closed  atomic.Bool
}

// NewEtcdGRPCTarget connects to every member (gRPC connects lazily: a member down at the start is
// reached when it comes back).
func NewEtcdGRPCTarget(clock *Clock, addrs []string, o TargetOptions) (*EtcdGRPCTarget, error) {
	t := &EtcdGRPCTarget{clock: clock, addrs: addrs, rr: make([]atomic.Uint32, len(addrs)),
		pick: picker{policy: o.Policy, n: len(addrs)}, timeout: o.Timeout}
	conns := max(o.Connections, 1)
	for _, a := range addrs {
		var row []*clientv3.Client
		for range conns {
			c, err := clientv3.New(clientv3.Config{Endpoints: []string{a}, DialTimeout: 2 * time.Second,
				Logger: zap.NewNop(), MaxCallSendMsgSize: 4 << 20})
			if err != nil {
				t.Close()
				return nil, fmt.Errorf("%w: etcd member %s: %w", ErrBadTarget, a, err)
			}
			row = append(row, c)
		}
		t.clients = append(t.clients, row)
	}
	if o.Policy == PolicyLeader {
		t.findLeader()
	}
	return t, nil
}

// findLeader asks the members which of them leads, and starts the leader guess there.
func (t *EtcdGRPCTarget) findLeader() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ids := map[uint64]int{}
	var leader uint64
	for i, row := range t.clients {
		st, err := row[0].Status(ctx, t.addrs[i])
		if err != nil {
			continue
		}
		ids[st.Header.MemberId] = i
		leader = st.Leader
	}
	if i, ok := ids[leader]; ok {
		t.pick.leader.Store(int32(i))
	}
}

// Go sends c from a goroutine of its own: the generator bounds the calls in flight (MaxInflight).
func (t *EtcdGRPCTarget) Go(c *Call, done chan<- *Call) {
	i := t.pick.pick()
	row := t.clients[i]
	cli := row[int(t.rr[i].Add(1))%len(row)]
	c.SentNs = t.clock.Now()
	if t.closed.Load() {
		c.DoneNs, c.Class, c.Err = c.SentNs, ClassConnection, ErrClosed
		done <- c
		return
	}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), t.timeout)
		defer cancel()
		var err error
		switch c.Op {
		case kv.OpPut:
			_, err = cli.Put(ctx, string(c.Key), string(c.Value))
		case kv.OpDelete:
			_, err = cli.Delete(ctx, string(c.Key))
		case kv.OpGet:
			var resp *clientv3.GetResponse
			if resp, err = cli.Get(ctx, string(c.Key)); err == nil {
				if len(resp.Kvs) == 0 {
					c.Class = ClassNotFound
				} else if c.KeepOutput {
					c.Output = append(c.Output[:0], resp.Kvs[0].Value...)
				}
			}
		default:
			err = fmt.Errorf("loadgen: etcd target cannot send %v", c.Op)
		}
		c.DoneNs = t.clock.Now()
		if err != nil {
			c.Class, c.Err = classifyGRPC(err), err
			if c.Class == ClassConnection {
				t.pick.unreachable(i)
			}
		}
		done <- c
	}()
}

// classifyGRPC sorts an etcd client error into the generator's classes.
func classifyGRPC(err error) Class {
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, rpctypes.ErrTimeout),
		errors.Is(err, rpctypes.ErrTimeoutDueToLeaderFail), errors.Is(err, rpctypes.ErrTimeoutDueToConnectionLost):
		return ClassTimeout
	case errors.Is(err, rpctypes.ErrNoLeader), errors.Is(err, rpctypes.ErrNotCapable), errors.Is(err, rpctypes.ErrStopped),
		errors.Is(err, rpctypes.ErrLeaderChanged):
		return ClassUnavailable
	case errors.Is(err, rpctypes.ErrTooManyRequests):
		return ClassBusy
	case errors.Is(err, rpctypes.ErrRequestTooLarge), errors.Is(err, rpctypes.ErrKeyNotFound):
		return ClassRejected
	}
	if s, ok := status.FromError(err); ok {
		switch s.Code() {
		case codes.Unavailable, codes.Canceled:
			return ClassConnection
		case codes.DeadlineExceeded:
			return ClassTimeout
		case codes.ResourceExhausted:
			return ClassBusy
		case codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange:
			return ClassRejected
		}
	}
	return ClassServer
}

// Close waits for the calls in flight (each ends by its timeout at the latest) and closes the clients.
func (t *EtcdGRPCTarget) Close() error {
	t.closed.Store(true)
	t.wg.Wait()
	for _, row := range t.clients {
		for _, c := range row {
			c.Close()
		}
	}
	return nil
}
