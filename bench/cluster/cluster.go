// Package cluster starts a local SofaDB cluster of real replica processes on 127.0.0.1, so that the
// end-to-end tests and the bench runner crash, stop and restart the same binary users run, with
// SIGKILL and SIGTERM, instead of an in-process imitation.
//
// A Cluster owns one temporary directory holding the cluster key file and, per replica, a data
// directory and a log file (the process's stdout and stderr, appended across restarts). Replicas
// are named by their replica id, 1..N, the ids /status reports as "leader". All traffic stays on
// loopback. A Cluster is safe for concurrent use.
//
// A typical test:
//
//	c := cluster.StartT(t, cluster.Options{N: 3})
//	leader, err := c.WaitLeader(10 * time.Second)
//	...
//	c.Kill(leader)
//	...
//	c.Restart(leader)
package cluster

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mathrand "math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sofadb/sofadb/faultproxy"
	"github.com/sofadb/sofadb/replica"
)

// Options describe a cluster to start. The zero value is a 3-replica cluster with the binary's
// default flags.
type Options struct {
	// N is the number of replicas (3 or 5 in practice); 0 means 3.
	N int
	// Flags are extra command-line flags given to every replica (e.g. "-redirect", "-fsync=false").
	Flags []string
	// ReplicaFlags are extra flags for one replica only, by id, after Flags.
	ReplicaFlags map[int][]string
	// Dir is where the cluster's temporary directory is created; "" means os.TempDir().
	Dir string
	// Keep leaves the temporary directory (data and logs) in place after Close. The environment
	// variable SOFADB_CLUSTER_KEEP=1 sets it too, for looking at the logs of a passing run.
	Keep bool
	// Logf receives the launcher's own messages (where the logs are when they are kept); nil
	// discards them.
	Logf func(format string, args ...any)
	// ReadyTimeout bounds how long a started process may take to answer /status; 0 means 15 s.
	ReadyTimeout time.Duration
	// Faults, when set, carries every peer link through this fault proxy: the replica that dials
	// (the lower id of a pair) is given the proxy's address for its peer, so each direction of
	// each pair can be delayed, lossy, capped, blackholed or cut at run time (faultproxy.Set).
	// The caller owns the proxy and closes it after the cluster.
	Faults *faultproxy.Proxy
	// DataDirs, when set, is called with each replica's data directory (created, empty) before
	// the replica first starts, and again once every process has stopped at Close, before the
	// directory is removed: to mount a file system there (a power-loss file system, say) and to
	// unmount it.
	DataDirs DataDirHooks
}

// DataDirHooks mount something on replicas' data directories and unmount it; see Options.DataDirs.
type DataDirHooks interface {
	Mount(id int, dir string) error
	Unmount(id int, dir string) error
}

// Cluster is a running set of replica processes; see the package comment.
type Cluster struct {
	// Dir is the cluster's temporary directory; KeyFile the cluster key file inside it.
	Dir, KeyFile string

	opts   Options
	bin    string
	reps   []*Proc // reps[id-1]
	peers  string  // the -peers, -clients and -http lists every replica gets
	client string
	https  string

	mu     sync.Mutex
	extras []*Proc
	keep   bool
	closed bool
}

// Start builds the replica binary (once per process, see Binary), writes a fresh cluster key,
// starts N replicas and waits until each answers /status. It does not wait for a leader: call
// WaitLeader. On error nothing is left running, and the directory is kept if it holds logs worth
// reading.
func Start(o Options) (*Cluster, error) {
	if o.N == 0 {
		o.N = 3
	}
	if o.N < 1 || o.N > 64 {
		return nil, fmt.Errorf("cluster: %d replicas", o.N)
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = 15 * time.Second
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(o.Dir, "sofadb-cluster-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{Dir: dir, KeyFile: filepath.Join(dir, "cluster.key"), opts: o, bin: bin,
		keep: o.Keep || os.Getenv("SOFADB_CLUSTER_KEEP") == "1"}
	if err := WriteKeyFile(c.KeyFile); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	ports, err := FreePorts(3 * o.N)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	var peers, clients, https []string
	for i := range o.N {
		id := i + 1
		p := &Proc{ID: id, PeerAddr: loopback(ports[3*i]), ClientAddr: loopback(ports[3*i+1]),
			HTTPAddr: loopback(ports[3*i+2]), DataDir: filepath.Join(dir, fmt.Sprintf("r%d", id)),
			LogPath: filepath.Join(dir, fmt.Sprintf("r%d.log", id)), Name: fmt.Sprintf("replica %d", id)}
		c.reps = append(c.reps, p)
		peers = append(peers, fmt.Sprintf("%d=%s", id, p.PeerAddr))
		clients = append(clients, fmt.Sprintf("%d=%s", id, p.ClientAddr))
		https = append(https, fmt.Sprintf("%d=%s", id, p.HTTPAddr))
	}
	c.peers, c.client, c.https = strings.Join(peers, ","), strings.Join(clients, ","), strings.Join(https, ",")
	peersOf, err := c.proxiedPeers(o.Faults)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	for _, p := range c.reps {
		p.bin, p.readyTimeout = bin, o.ReadyTimeout
		p.args = c.args(p.ID, peersOf[p.ID], c.client, c.https, p.DataDir, c.KeyFile)
		p.args = append(p.args, raceFlags()...)
		p.args = append(p.args, o.Flags...)
		p.args = append(p.args, o.ReplicaFlags[p.ID]...)
	}
	if o.DataDirs != nil {
		for _, p := range c.reps {
			err := os.MkdirAll(p.DataDir, 0o755)
			if err == nil {
				err = o.DataDirs.Mount(p.ID, p.DataDir)
			}
			if err != nil {
				c.unmountDataDirs()
				os.RemoveAll(dir)
				return nil, fmt.Errorf("cluster: data directory of %s: %w", p.Name, err)
			}
			p.mounted = true
		}
	}
	// Start every process before waiting for any: a replica is ready (answers /status) on its own,
	// but starting them together keeps the first election short.
	var errs []error
	for _, p := range c.reps {
		if err := p.start(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, p := range c.reps {
		if len(errs) == 0 {
			if err := p.waitReady(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		c.keep = true
		c.Close()
		return nil, err
	}
	return c, nil
}

// proxiedPeers returns the -peers list each replica gets: the common one, or with a fault proxy,
// one where each peer a replica dials (those of higher ids) is at the proxy's address for that
// pair. A replica binds its own entry, which stays real, and never dials a lower id.
func (c *Cluster) proxiedPeers(fp *faultproxy.Proxy) (map[int]string, error) {
	out := map[int]string{}
	for _, p := range c.reps {
		if fp == nil {
			out[p.ID] = c.peers
			continue
		}
		var list []string
		for _, q := range c.reps {
			addr := q.PeerAddr
			if q.ID > p.ID {
				var err error
				if addr, err = fp.AddPair(p.ID, q.ID, q.PeerAddr); err != nil {
					return nil, err
				}
			}
			list = append(list, fmt.Sprintf("%d=%s", q.ID, addr))
		}
		out[p.ID] = strings.Join(list, ",")
	}
	return out, nil
}

func (c *Cluster) args(id int, peers, clients, https, dataDir, keyFile string) []string {
	return []string{"-id", strconv.Itoa(id), "-peers", peers, "-clients", clients, "-http", https,
		"-data", dataDir, "-cluster-key", keyFile}
}

func loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// N is the number of replicas.
func (c *Cluster) N() int { return len(c.reps) }

// IDs lists the replica ids, 1..N.
func (c *Cluster) IDs() []int {
	ids := make([]int, len(c.reps))
	for i := range ids {
		ids[i] = i + 1
	}
	return ids
}

// Replica returns the process of replica id; it panics for an id outside 1..N, which is a bug in
// the caller.
func (c *Cluster) Replica(id int) *Proc {
	if id < 1 || id > len(c.reps) {
		panic(fmt.Sprintf("cluster: no replica %d in a cluster of %d", id, len(c.reps)))
	}
	return c.reps[id-1]
}

// ClientAddr is replica id's binary-protocol address (host:port).
func (c *Cluster) ClientAddr(id int) string { return c.Replica(id).ClientAddr }

// HTTPAddr is replica id's HTTP address (host:port).
func (c *Cluster) HTTPAddr(id int) string { return c.Replica(id).HTTPAddr }

// PeerAddr is replica id's peer-transport address (host:port).
func (c *Cluster) PeerAddr(id int) string { return c.Replica(id).PeerAddr }

// ClientAddrs lists every replica's binary-protocol address, by id order.
func (c *Cluster) ClientAddrs() []string {
	out := make([]string, len(c.reps))
	for i, p := range c.reps {
		out[i] = p.ClientAddr
	}
	return out
}

// Status asks replica id for its /status.
func (c *Cluster) Status(id int) (replica.Status, error) { return c.Replica(id).Status() }

// Kill sends SIGKILL to replica id and waits until it is gone: a crash, with whatever the page
// cache holds surviving it (SIGKILL does not test fsync).
func (c *Cluster) Kill(id int) error { return c.Replica(id).Kill() }

// Stop sends SIGTERM to replica id and waits for its clean shutdown.
func (c *Cluster) Stop(id int) error { return c.Replica(id).Stop() }

// Restart starts replica id again, with the same flags, ports and data directory, and waits until
// it answers /status. The replica must have been killed or stopped.
func (c *Cluster) Restart(id int) error { return c.Replica(id).Restart() }

// Running reports whether replica id's process is alive.
func (c *Cluster) Running(id int) bool { return c.Replica(id).Running() }

// Live lists the ids of the replicas whose processes are alive.
func (c *Cluster) Live() []int {
	var ids []int
	for _, p := range c.reps {
		if p.Running() {
			ids = append(ids, p.ID)
		}
	}
	return ids
}

// WaitLeader polls /status of every live replica until they all name the same leader and that
// leader says it leads, and returns its id. Agreement of all live replicas (not just a majority)
// is what a test wants before it measures or kills anything.
func (c *Cluster) WaitLeader(timeout time.Duration) (int, error) {
	deadline := time.Now().Add(timeout)
	last := "no replica is running"
	for {
		if id, why := c.leaderNow(); id != 0 {
			return id, nil
		} else {
			last = why
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("cluster: no agreed leader after %v: %s", timeout, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// leaderNow returns the agreed leader, or 0 and why there is none.
func (c *Cluster) leaderNow() (int, string) {
	leader := -1
	var roles []string
	for _, id := range c.Live() {
		st, err := c.Status(id)
		if err != nil {
			return 0, err.Error()
		}
		roles = append(roles, fmt.Sprintf("%d:%s(leader %d)", id, st.Role, st.Leader))
		if st.Leader == 0 || (leader != -1 && int(st.Leader) != leader) {
			return 0, strings.Join(roles, " ")
		}
		leader = int(st.Leader)
		if int(st.ID) == leader && st.Role != "leader" {
			return 0, strings.Join(roles, " ")
		}
	}
	if leader <= 0 || leader > len(c.reps) || !c.Running(leader) {
		return 0, "leader not running: " + strings.Join(roles, " ")
	}
	return leader, ""
}

// WaitConverged polls until every live replica reports the same applied slot and digest, and
// returns their statuses (by id order of the live replicas). It is how a test sees that a
// restarted replica caught up, and that no replica applied a different log.
func (c *Cluster) WaitConverged(timeout time.Duration) ([]replica.Status, error) {
	deadline := time.Now().Add(timeout)
	for {
		sts, why := c.convergedNow()
		if why == "" {
			return sts, nil
		}
		if time.Now().After(deadline) {
			return sts, fmt.Errorf("cluster: not converged after %v: %s", timeout, why)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (c *Cluster) convergedNow() ([]replica.Status, string) {
	var sts []replica.Status
	var desc []string
	same := true
	for _, id := range c.Live() {
		st, err := c.Status(id)
		if err != nil {
			return sts, err.Error()
		}
		sts = append(sts, st)
		desc = append(desc, fmt.Sprintf("%d: applied %d digest %s", id, st.Applied, st.Digest))
		if st.Applied != sts[0].Applied || st.Digest != sts[0].Digest {
			same = false
		}
	}
	if len(sts) == 0 {
		return nil, "no replica is running"
	}
	if !same {
		return sts, strings.Join(desc, "; ")
	}
	return sts, ""
}

// CheckAlive returns an error naming every process (replicas and extras) that exited without
// being killed or stopped through the launcher, with the end of its log: a crashed replica.
func (c *Cluster) CheckAlive() error {
	var errs []error
	for _, p := range c.procs() {
		if err := p.unexpectedExit(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// StartExtra starts one more process that claims to be replica id (of the cluster's ids or a new
// one), on fresh ports, with its own data directory and log, and the cluster's address lists with
// its own entries replaced. keyFile "" means the cluster's key file. It exists to test what the
// cluster refuses (an impostor without the key); it is stopped by Close.
func (c *Cluster) StartExtra(id int, keyFile string, flags ...string) (*Proc, error) {
	ports, err := FreePorts(3)
	if err != nil {
		return nil, err
	}
	if keyFile == "" {
		keyFile = c.KeyFile
	}
	c.mu.Lock()
	n := len(c.extras) + 1
	c.mu.Unlock()
	p := &Proc{ID: id, PeerAddr: loopback(ports[0]), ClientAddr: loopback(ports[1]), HTTPAddr: loopback(ports[2]),
		DataDir: filepath.Join(c.Dir, fmt.Sprintf("extra%d", n)), LogPath: filepath.Join(c.Dir, fmt.Sprintf("extra%d.log", n)),
		Name: fmt.Sprintf("extra process %d (as replica %d)", n, id), bin: c.bin, readyTimeout: c.opts.ReadyTimeout}
	replace := func(list, addr string) string {
		var out []string
		found := false
		for _, e := range strings.Split(list, ",") {
			if strings.HasPrefix(e, strconv.Itoa(id)+"=") {
				e, found = fmt.Sprintf("%d=%s", id, addr), true
			}
			out = append(out, e)
		}
		if !found {
			out = append(out, fmt.Sprintf("%d=%s", id, addr))
		}
		return strings.Join(out, ",")
	}
	p.args = c.args(id, replace(c.peers, p.PeerAddr), replace(c.client, p.ClientAddr), replace(c.https, p.HTTPAddr), p.DataDir, keyFile)
	p.args = append(p.args, raceFlags()...)
	p.args = append(p.args, flags...)
	c.mu.Lock()
	c.extras = append(c.extras, p)
	c.mu.Unlock()
	if err := p.start(); err != nil {
		return nil, err
	}
	if err := p.waitReady(); err != nil {
		return nil, err
	}
	return p, nil
}

func (c *Cluster) procs() []*Proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append(slices.Clone(c.reps), c.extras...)
}

// KeepOnClose makes Close leave the directory in place and report where the logs are; a failing
// test calls it (StartT does so automatically).
func (c *Cluster) KeepOnClose() {
	c.mu.Lock()
	c.keep = true
	c.mu.Unlock()
}

// LogPaths lists every process's log file, replicas first.
func (c *Cluster) LogPaths() []string {
	var out []string
	for _, p := range c.procs() {
		out = append(out, p.LogPath)
	}
	return out
}

// Close stops every process (SIGTERM, then SIGQUIT for one that does not stop within 10 s),
// then removes the directory, unless it is to be kept: then it reports where the logs are. A
// process that did not shut down cleanly, or whose log reports a data race (a replica built with
// SOFADB_BUILD_FLAGS=-race), is an error, and keeps the directory. Calling it again does nothing.
func (c *Cluster) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	var errs []error
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, p := range c.procs() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.Stop(); err != nil && !errors.Is(err, ErrNotRunning) {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for _, p := range c.procs() {
		if strings.Contains(p.Log(), "WARNING: DATA RACE") {
			errs = append(errs, fmt.Errorf("cluster: %s reported a data race; log %s", p.Name, p.LogPath))
		}
	}
	if err := c.unmountDataDirs(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		c.KeepOnClose()
	}
	c.mu.Lock()
	keep := c.keep
	c.mu.Unlock()
	if keep {
		c.opts.Logf("cluster: kept %s; logs:\n  %s", c.Dir, strings.Join(c.LogPaths(), "\n  "))
	} else if err := os.RemoveAll(c.Dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// unmountDataDirs calls the Unmount hook for each data directory mounted.
func (c *Cluster) unmountDataDirs() error {
	var errs []error
	for _, p := range c.reps {
		if p.mounted {
			if err := c.opts.DataDirs.Unmount(p.ID, p.DataDir); err != nil {
				errs = append(errs, fmt.Errorf("cluster: unmount the data directory of %s: %w", p.Name, err))
			}
			p.mounted = false
		}
	}
	return errors.Join(errs...)
}

// TB is the part of testing.TB that StartT uses; it keeps package testing out of the bench
// runner's binary.
type TB interface {
	Helper()
	Cleanup(func())
	Failed() bool
	Logf(format string, args ...any)
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
}

// StartT starts a cluster for a test: it fails the test if the cluster does not start, and
// registers a cleanup that closes the cluster, keeping the directory and printing the log paths
// when the test failed. A replica that does not shut down cleanly at the end fails the test.
func StartT(tb TB, o Options) *Cluster {
	tb.Helper()
	if o.Logf == nil {
		o.Logf = tb.Logf
	}
	c, err := Start(o)
	if err != nil {
		tb.Fatalf("start cluster: %v", err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			c.KeepOnClose()
		}
		if err := c.Close(); err != nil {
			tb.Errorf("cluster close: %v", err)
		}
	})
	return c
}

// WriteKeyFile writes a fresh random cluster key (32 random bytes, hex) to path, readable by its
// owner only.
func WriteKeyFile(path string) error {
	var k [32]byte
	if _, err := rand.Read(k[:]); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(hex.EncodeToString(k[:])+"\n"), 0o600)
}

// FreePorts returns n distinct loopback TCP ports that were free a moment ago, for replicas to
// listen on. They are drawn below the kernel's ephemeral range (net.ipv4.ip_local_port_range), so
// no outgoing connection on the machine takes one between now and the replica's listen, nor while
// a killed replica is down; each is checked by listening on it, with all n listeners open at once
// so they are distinct, and then closed. Another program could still bind one in between, which a
// start reports as a listen error. Without that range (not Linux), ports come from port 0.
func FreePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	lo, hi := 10000, ephemeralStart()
	ports := make([]int, 0, n)
	for tries := 0; len(ports) < n && hi-lo > 1000 && tries < 100*n; tries++ {
		port := lo + mathrand.IntN(hi-lo)
		ln, err := net.Listen("tcp", loopback(port))
		if err != nil {
			continue // taken
		}
		lns = append(lns, ln)
		ports = append(ports, port)
	}
	for len(ports) < n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// ephemeralStart is the first port the kernel hands to outgoing connections (0 if unknown).
func ephemeralStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0
	}
	lo, err := strconv.Atoi(f[0])
	if err != nil {
		return 0
	}
	return lo
}
