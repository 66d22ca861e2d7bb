package runner

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sofadb/sofadb/bench/cluster"
	"github.com/sofadb/sofadb/bench/scenario"
	"github.com/sofadb/sofadb/faultproxy"
	"github.com/sofadb/sofadb/paxos"
)

// system is a running cluster under test: SofaDB replicas or etcd members, each named by an id
// 1..N. Faults act on ids; metrics and CPU are read per id.
type system interface {
	// Target is the load generator's target URL for the scenario's protocol.
	Target(protocol string) (string, error)
	IDs() []int
	// Leader waits until the members agree on a leader and returns it.
	Leader(timeout time.Duration) (int, error)
	Kill(id int) error
	Pause(id int) error
	Resume(id int) error
	Restart(id int) error
	// Net applies a network shape (faultproxy.Shapes) relative to the current leader and says what
	// it set; Heal clears every link. Both fail for a system without a fault proxy.
	Net(shape string) (string, error)
	Heal() error
	PID(id int) int
	// Counters are the member's monotone counters (name to value); empty for a system without them.
	Counters(id int) map[string]float64
	// CaughtUp waits until every live member applied the same log, and says how far.
	CaughtUp(timeout time.Duration) (string, error)
	Version() string
	// StatusAddrs are the members' HTTP addresses whose /status a run's manifest records (nil:
	// the system has no SofaDB /status).
	StatusAddrs() []string
	Close() error
}

// sofaSystem is a SofaDB cluster started by bench/cluster.
type sofaSystem struct {
	c      *cluster.Cluster
	fp     *faultproxy.Proxy // nil unless the scenario has net faults
	mu     sync.Mutex        // paused is written by the fault injector and read by the scraper
	paused map[int]bool
}

func (f *sofaSystem) isPaused(id int) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.paused[id]
}

func (f *sofaSystem) setPaused(id int, p bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if p {
		f.paused[id] = true
	} else {
		delete(f.paused, id)
	}
}

func startSofa(s *scenario.Scenario, dir string) (*sofaSystem, error) {
	flags := []string{"-mode=" + s.Mode, fmt.Sprintf("-backoff=%v", s.Backoff), "-reads=" + s.Reads}
	flags = append(flags, s.Flags...)
	var fp *faultproxy.Proxy
	if s.NetFaults() {
		fp = faultproxy.New(s.Seed)
	}
	c, err := cluster.Start(cluster.Options{N: s.Replicas, Flags: flags, Dir: dir, Keep: true, Faults: fp})
	if err != nil {
		if fp != nil {
			fp.Close()
		}
		return nil, err
	}
	return &sofaSystem{c: c, fp: fp, paused: map[int]bool{}}, nil
}

func (f *sofaSystem) Net(shape string) (string, error) {
	if f.fp == nil {
		return "", errors.New("no fault proxy: the scenario has no net fault")
	}
	// The leader of the moment, as the replica that says it leads with the highest ballot: under a
	// partial-connectivity shape (a replica cut off knows no leader) the members need not agree.
	leader, best := 0, paxos.Ballot(0)
	for _, id := range f.c.Live() {
		st, err := f.c.Status(id)
		if err != nil || st.Role != "leader" {
			continue
		}
		if b, err := paxos.ParseBallot(st.Ballot); err == nil && b > best {
			leader, best = id, b
		}
	}
	if leader == 0 {
		var err error
		if leader, err = f.Leader(2 * time.Second); err != nil {
			return "", err
		}
	}
	return f.fp.ApplyShape(shape, f.c.IDs(), leader)
}

func (f *sofaSystem) Heal() error {
	if f.fp == nil {
		return errors.New("no fault proxy: the scenario has no net fault")
	}
	f.fp.Heal()
	return nil
}

func (f *sofaSystem) Target(protocol string) (string, error) {
	var addrs []string
	scheme := "sofa"
	for _, id := range f.c.IDs() {
		if protocol == "http" {
			addrs, scheme = append(addrs, f.c.HTTPAddr(id)), "sofa-http"
		} else {
			addrs = append(addrs, f.c.ClientAddr(id))
		}
	}
	return scheme + "://" + strings.Join(addrs, ","), nil
}

func (f *sofaSystem) IDs() []int { return f.c.IDs() }

// Leader waits for an agreed leader among the replicas that are running and not paused.
func (f *sofaSystem) Leader(timeout time.Duration) (int, error) {
	f.mu.Lock()
	none := len(f.paused) == 0
	f.mu.Unlock()
	if none {
		return f.c.WaitLeader(timeout)
	}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for _, id := range f.c.Live() {
			if f.isPaused(id) {
				continue
			}
			if st, err := f.c.Status(id); err == nil && st.Role == "leader" {
				return id, nil
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return 0, fmt.Errorf("no leader among the running replicas after %v", timeout)
}

func (f *sofaSystem) Kill(id int) error    { return f.c.Kill(id) }
func (f *sofaSystem) Restart(id int) error { return f.c.Restart(id) }
func (f *sofaSystem) PID(id int) int       { return f.c.Replica(id).PID() }

func (f *sofaSystem) Pause(id int) error {
	f.setPaused(id, true)
	return syscall.Kill(f.c.Replica(id).PID(), syscall.SIGSTOP)
}

func (f *sofaSystem) Resume(id int) error {
	f.setPaused(id, false)
	return syscall.Kill(f.c.Replica(id).PID(), syscall.SIGCONT)
}

// Counters parses the replica's /metrics with the Prometheus text parser; labelled series are
// summed per name.
func (f *sofaSystem) Counters(id int) map[string]float64 {
	if f.isPaused(id) {
		return nil // a stopped process would only make the scrape wait for its timeout
	}
	text, err := f.c.Replica(id).Metrics()
	if err != nil {
		return nil
	}
	return parseMetrics(strings.NewReader(text))
}

// parseMetrics is the cluster launcher's parser; nil when the text does not parse.
func parseMetrics(r io.Reader) map[string]float64 {
	m, err := cluster.ParseMetrics(r)
	if err != nil {
		return nil
	}
	return m
}

func (f *sofaSystem) CaughtUp(timeout time.Duration) (string, error) {
	sts, err := f.c.WaitConverged(timeout)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("all %d replicas applied slot %d, digest %s", len(sts), sts[0].Applied, sts[0].Digest), nil
}

func (f *sofaSystem) Version() string { return "sofadb (this commit)" }

func (f *sofaSystem) StatusAddrs() []string {
	var addrs []string
	for _, id := range f.c.IDs() {
		addrs = append(addrs, f.c.HTTPAddr(id))
	}
	return addrs
}

func (f *sofaSystem) Close() error {
	f.mu.Lock()
	var ids []int
	for id := range f.paused {
		ids = append(ids, id)
	}
	f.mu.Unlock()
	for _, id := range ids {
		f.Resume(id)
	}
	err := f.c.Close()
	if f.fp != nil {
		f.fp.Close() // after the cluster: the proxy outlives the replicas' links
	}
	return err
}

// etcdSystem is a static etcd cluster of Debian's etcd binary, started on loopback ports with its
// data in the run's directory.
type etcdSystem struct {
	dir     string
	members []*etcdMember
	version string
}

type etcdMember struct {
	id            int
	name, dataDir string
	client, peer  string
	args          []string
	cmd           *exec.Cmd
	exited        chan struct{}
	log           *os.File
	paused        atomic.Bool
	mu            sync.Mutex // cmd and exited change on a restart (fault injector) and are read by the scraper
}

// proc is the member's current process and the channel closed when it exits.
func (m *etcdMember) proc() (*exec.Cmd, chan struct{}) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cmd, m.exited
}

// ErrNoEtcd says the etcd binary is not installed (scripts/install-etcd.sh installs it).
var ErrNoEtcd = errors.New("etcd is not installed (scripts/install-etcd.sh installs Debian's etcd)")

func startEtcd(s *scenario.Scenario, dir string) (*etcdSystem, error) {
	bin, err := exec.LookPath("etcd")
	if err != nil {
		return nil, ErrNoEtcd
	}
	out, _ := exec.Command(bin, "--version").Output()
	e := &etcdSystem{dir: dir, version: strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])}
	ports, err := cluster.FreePorts(2 * s.Replicas)
	if err != nil {
		return nil, err
	}
	var initial []string
	for i := range s.Replicas {
		m := &etcdMember{id: i + 1, name: fmt.Sprintf("e%d", i+1), dataDir: filepath.Join(dir, fmt.Sprintf("e%d", i+1)),
			client: "127.0.0.1:" + strconv.Itoa(ports[2*i]), peer: "127.0.0.1:" + strconv.Itoa(ports[2*i+1])}
		e.members = append(e.members, m)
		initial = append(initial, m.name+"=http://"+m.peer)
	}
	for _, m := range e.members {
		m.args = append([]string{"--name", m.name, "--data-dir", m.dataDir,
			"--listen-client-urls", "http://" + m.client, "--advertise-client-urls", "http://" + m.client,
			"--listen-peer-urls", "http://" + m.peer, "--initial-advertise-peer-urls", "http://" + m.peer,
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new",
			"--initial-cluster-token", "sofabench", "--log-level", "warn"}, s.Flags...)
		if err := m.start(bin, dir); err != nil {
			e.Close()
			return nil, err
		}
	}
	for _, m := range e.members {
		if err := waitHTTP("http://"+m.client+"/health", 20*time.Second); err != nil {
			e.Close()
			return nil, fmt.Errorf("etcd member %d: %w", m.id, err)
		}
	}
	return e, nil
}

func (m *etcdMember) start(bin, dir string) error {
	if m.log == nil {
		f, err := os.OpenFile(filepath.Join(dir, m.name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		m.log = f
	}
	cmd := exec.Command(bin, m.args...)
	cmd.Stdout, cmd.Stderr = m.log, m.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the runner
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	m.mu.Lock()
	m.cmd, m.exited = cmd, exited
	m.mu.Unlock()
	go func() { cmd.Wait(); close(exited) }()
	return nil
}

func waitHTTP(url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s not healthy after %v", url, timeout)
}

func (e *etcdSystem) Target(protocol string) (string, error) {
	var addrs []string
	for _, m := range e.members {
		addrs = append(addrs, m.client)
	}
	if protocol == "grpc" {
		return "etcd-grpc://" + strings.Join(addrs, ","), nil
	}
	return "etcd://" + strings.Join(addrs, ","), nil
}

func (e *etcdSystem) IDs() []int {
	var ids []int
	for _, m := range e.members {
		ids = append(ids, m.id)
	}
	return ids
}

func (e *etcdSystem) member(id int) *etcdMember { return e.members[id-1] }

// status asks a member's JSON gateway for its maintenance status: its own id and the leader's.
func (m *etcdMember) status() (self, leader uint64, err error) {
	client := http.Client{Timeout: time.Second}
	resp, err := client.Post("http://"+m.client+"/v3/maintenance/status", "application/json", bytes.NewReader([]byte("{}")))
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	var st struct {
		Header struct {
			MemberID string `json:"member_id"`
		} `json:"header"`
		Leader string `json:"leader"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return 0, 0, err
	}
	self, _ = strconv.ParseUint(st.Header.MemberID, 10, 64)
	leader, _ = strconv.ParseUint(st.Leader, 10, 64)
	return self, leader, nil
}

func (e *etcdSystem) Leader(timeout time.Duration) (int, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		ids := map[uint64]int{}
		var leader uint64
		for _, m := range e.members {
			if m.paused.Load() || !m.running() {
				continue
			}
			if self, l, err := m.status(); err == nil {
				ids[self] = m.id
				if l != 0 {
					leader = l
				}
			}
		}
		if id, ok := ids[leader]; ok && leader != 0 {
			return id, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return 0, fmt.Errorf("etcd: no leader among the running members after %v", timeout)
}

func (m *etcdMember) running() bool {
	cmd, exited := m.proc()
	if cmd == nil {
		return false
	}
	select {
	case <-exited:
		return false
	default:
		return true
	}
}

func (e *etcdSystem) Kill(id int) error {
	m := e.member(id)
	if !m.running() {
		return fmt.Errorf("etcd member %d is not running", id)
	}
	cmd, exited := m.proc()
	cmd.Process.Kill()
	<-exited
	return nil
}

func (e *etcdSystem) Pause(id int) error {
	e.member(id).paused.Store(true)
	return syscall.Kill(e.PID(id), syscall.SIGSTOP)
}

func (e *etcdSystem) Resume(id int) error {
	e.member(id).paused.Store(false)
	return syscall.Kill(e.PID(id), syscall.SIGCONT)
}

func (e *etcdSystem) Net(string) (string, error) {
	return "", errors.New("net faults need the fault proxy, which only sofadb clusters run behind")
}

func (e *etcdSystem) Heal() error { return errors.New("net faults need the fault proxy") }

func (e *etcdSystem) Restart(id int) error {
	m := e.member(id)
	if m.running() {
		return fmt.Errorf("etcd member %d is still running", id)
	}
	m.args = replaceArg(m.args, "--initial-cluster-state", "existing")
	bin, _ := exec.LookPath("etcd")
	if err := m.start(bin, e.dir); err != nil {
		return err
	}
	return waitHTTP("http://"+m.client+"/health", 20*time.Second)
}

func replaceArg(args []string, name, value string) []string {
	out := append([]string(nil), args...)
	for i := range out {
		if out[i] == name && i+1 < len(out) {
			out[i+1] = value
		}
	}
	return out
}

func (e *etcdSystem) PID(id int) int {
	m := e.member(id)
	cmd, _ := m.proc()
	if cmd == nil || cmd.Process == nil || !m.running() {
		return 0
	}
	return cmd.Process.Pid
}

func (e *etcdSystem) Counters(id int) map[string]float64 {
	if m := e.member(id); m.paused.Load() || !m.running() {
		return nil
	}
	client := http.Client{Timeout: time.Second}
	resp, err := client.Get("http://" + e.member(id).client + "/metrics")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	return parseMetrics(resp.Body)
}

// CaughtUp waits until every running member reports the same raft applied index.
func (e *etcdSystem) CaughtUp(timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		var idx []float64
		for _, m := range e.members {
			if m.running() && !m.paused.Load() {
				idx = append(idx, e.Counters(m.id)["etcd_server_proposals_applied_total"])
			}
		}
		same := len(idx) > 0
		for _, v := range idx {
			same = same && v == idx[0] && v > 0
		}
		if same {
			return fmt.Sprintf("all %d members applied index %.0f", len(idx), idx[0]), nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("etcd members not caught up after %v: applied %v", timeout, idx)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (e *etcdSystem) Version() string { return e.version }

func (e *etcdSystem) StatusAddrs() []string { return nil }

func (e *etcdSystem) Close() error {
	for _, m := range e.members {
		cmd, exited := m.proc()
		if cmd == nil {
			continue
		}
		if m.paused.Load() {
			syscall.Kill(cmd.Process.Pid, syscall.SIGCONT)
		}
		if m.running() {
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(5 * time.Second):
				cmd.Process.Kill()
				<-exited
			}
		}
		if m.log != nil {
			m.log.Close()
		}
	}
	return nil
}
