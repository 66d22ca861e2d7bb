package replica_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sofadb/sofadb/bench/cluster"
	"github.com/sofadb/sofadb/kv"
	"github.com/sofadb/sofadb/loadgen/sofaclient"
	"github.com/sofadb/sofadb/paxos"
	"github.com/sofadb/sofadb/replica"
	"github.com/sofadb/sofadb/wire"
)

// inProcessCluster runs three replica Servers in this process on loopback, each with a disk fault
// switch, so a test can make one replica's disk fail (an fsync error, or a full disk) on demand.
type inProcessCluster struct {
	servers []*replica.Server
	clients map[paxos.ReplicaID]string
	faulty  []atomic.Bool
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

func startInProcess(t *testing.T, failStep string, failErr error) *inProcessCluster {
	t.Helper()
	ports, err := cluster.FreePorts(9)
	if err != nil {
		t.Fatal(err)
	}
	addrs := func(off int) map[paxos.ReplicaID]string {
		m := map[paxos.ReplicaID]string{}
		for i := range 3 {
			m[paxos.ReplicaID(i+1)] = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[off+i]))
		}
		return m
	}
	c := &inProcessCluster{clients: addrs(3), faulty: make([]atomic.Bool, 3)}
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	for i := range 3 {
		cfg := replica.DefaultConfig(paxos.ReplicaID(i+1), addrs(0), c.clients, addrs(6))
		cfg.DataDir, cfg.ClusterKey, cfg.Logger = t.TempDir(), []byte("a test cluster key of 32 bytes!!"), quiet
		if raceEnabled {
			cfg.Core.ElectionTicks = 50 // as bench/cluster does for race-built replicas: see raceFlags there
		}
		cfg.Disk.Fault = func(step string) error {
			if step == failStep && c.faulty[i].Load() {
				return failErr
			}
			return nil
		}
		// "space": the file system runs low (1 MiB free) instead of failing an operation.
		cfg.FreeBytes = func(string) (uint64, error) {
			if failStep == "space" && c.faulty[i].Load() {
				return 1 << 20, nil
			}
			return 1 << 40, nil
		}
		s, err := replica.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		c.servers = append(c.servers, s)
		c.wg.Add(1)
		go func() { defer c.wg.Done(); s.Run(ctx) }()
	}
	t.Cleanup(func() { c.cancel(); c.wg.Wait() })
	return c
}

func (c *inProcessCluster) leader(t *testing.T) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for i, s := range c.servers {
			if st, ok := s.Status(); ok && st.Role == "leader" {
				return i
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no leader elected")
	return -1
}

// healthyLeads says a replica other than failed leads.
func (c *inProcessCluster) healthyLeads(failed int) bool {
	for i, s := range c.servers {
		if st, ok := s.Status(); ok && i != failed && st.Role == "leader" {
			return true
		}
	}
	return false
}

func put(t *testing.T, conn *sofaclient.Conn, key, value string) wire.Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	res, err := conn.Do(ctx, kv.OpPut, []byte(key), []byte(value))
	if err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
	return res.Status
}

// TestFailedDiskStopsAcknowledgingAndSaysSo: when a replica's disk fails (an fsync error, or a
// write refused because the disk is full), its store fails for good, /status says so, and from then
// on the replica acknowledges nothing; being fenced off, it also stops leading, and the healthy
// majority elects a leader of its own and keeps serving.
func TestFailedDiskStopsAcknowledgingAndSaysSo(t *testing.T) {
	for _, tc := range []struct {
		step string
		err  error
	}{{"sync", syscall.EIO}, {"write", syscall.ENOSPC}, {"space", nil}} {
		t.Run(fmt.Sprintf("%s-%v", tc.step, tc.err), func(t *testing.T) {
			c := startInProcess(t, tc.step, tc.err)
			li := c.leader(t)
			lid := paxos.ReplicaID(li + 1)
			conn, err := sofaclient.Dial(c.clients[lid], sofaclient.Options{Timeout: 15 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			for i := range 20 {
				if st := put(t, conn, fmt.Sprint("before", i), "v"); st != wire.StatusOK {
					t.Fatalf("put before the failure: %v", st)
				}
			}
			c.faulty[li].Store(true)
			// Writes race the failure until the replica notices it; after that, none may be OK.
			deadline := time.Now().Add(10 * time.Second)
			for n := 0; ; n++ {
				st, _ := c.servers[li].Status()
				if st.DiskError != "" {
					t.Logf("status after %d writes: disk_error=%q", n, st.DiskError)
					if tc.step == "space" && !strings.Contains(st.DiskError, "disk nearly full: 1 MiB free") {
						t.Errorf("a file system running low fenced with %q, want the free space and the headroom named", st.DiskError)
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the failed disk never showed in /status")
				}
				put(t, conn, fmt.Sprint("racing", n), "v")
			}
			for i := range 20 {
				if st := put(t, conn, fmt.Sprint("after", i), "v"); st == wire.StatusOK {
					t.Fatalf("write %d acknowledged by a replica whose disk failed", i)
				}
			}
			// Fenced, the failed leader stops heartbeating: a healthy replica must take over.
			deadline = time.Now().Add(10 * time.Second)
			for !c.healthyLeads(li) {
				if time.Now().After(deadline) {
					t.Fatal("no healthy replica took over from the fenced leader")
				}
				time.Sleep(10 * time.Millisecond)
			}
			healthy := paxos.ReplicaID((li+1)%3 + 1)
			other, err := sofaclient.Dial(c.clients[healthy], sofaclient.Options{Timeout: 15 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer other.Close()
			for i := range 20 {
				if st := put(t, other, fmt.Sprint("healthy", i), "v"); st != wire.StatusOK {
					t.Fatalf("the healthy majority stopped serving: write %d got %v", i, st)
				}
			}
			// Every write the fenced replica acknowledged is there.
			for i := range 20 {
				res, err := other.Do(context.Background(), kv.OpGet, []byte(fmt.Sprint("before", i)), nil)
				if err != nil || res.Status != wire.StatusOK || string(res.Value) != "v" {
					t.Fatalf("acknowledged write before%d after the fence: %v %v", i, res, err)
				}
			}
		})
	}
}
