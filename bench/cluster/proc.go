package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/sofadb/sofadb/replica"
)

// ErrNotRunning is returned by Kill and Stop for a process that is not running.
var ErrNotRunning = errors.New("cluster: process not running")

// stopTimeout is how long Stop waits for a clean shutdown before it kills.
const stopTimeout = 10 * time.Second

// Proc is one replica process (or an extra one, see Cluster.StartExtra). Its addresses and paths
// stay the same across restarts.
type Proc struct {
	ID                             int
	Name                           string // "replica 2", for messages
	PeerAddr, ClientAddr, HTTPAddr string
	DataDir, LogPath               string

	bin          string
	args         []string
	readyTimeout time.Duration

	mu       sync.Mutex
	cmd      *exec.Cmd
	exited   chan struct{} // closed when the current process has been waited for
	waitErr  error
	intended bool // the exit was asked for (Kill or Stop)
	starts   int
	mounted  bool // Options.DataDirs mounted something on DataDir (the cluster's goroutine only)
}

var statusClient = &http.Client{Timeout: 2 * time.Second}

// Args are the command-line arguments the process is started with (without the binary).
func (p *Proc) Args() []string { return append([]string(nil), p.args...) }

// start launches the process with its output appended to LogPath, after a header line naming the
// start, so one log tells the story of every restart.
func (p *Proc) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return fmt.Errorf("cluster: %s is already running", p.Name)
	}
	if err := os.MkdirAll(p.DataDir, 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close() // the child holds its own descriptor
	p.starts++
	fmt.Fprintf(f, "=== cluster: start #%d of %s at %s: %s %s\n", p.starts, p.Name,
		time.Now().Format(time.RFC3339Nano), p.bin, strings.Join(p.args, " "))
	cmd := exec.Command(p.bin, p.args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("cluster: start %s: %w", p.Name, err)
	}
	p.cmd, p.exited, p.waitErr, p.intended = cmd, make(chan struct{}), nil, false
	go p.wait(cmd, p.exited)
	return nil
}

// wait reaps the process and notes how it ended, in the log too.
func (p *Proc) wait(cmd *exec.Cmd, exited chan struct{}) {
	err := cmd.Wait()
	p.mu.Lock()
	p.waitErr = err
	if p.cmd == cmd {
		p.cmd = nil
	}
	intended := p.intended
	p.mu.Unlock()
	if f, ferr := os.OpenFile(p.LogPath, os.O_WRONLY|os.O_APPEND, 0); ferr == nil {
		how := "exited cleanly"
		if err != nil {
			how = err.Error()
		}
		if !intended {
			how += " (UNEXPECTED: not stopped by the launcher)"
		}
		fmt.Fprintf(f, "=== cluster: %s %s at %s\n", p.Name, how, time.Now().Format(time.RFC3339Nano))
		f.Close()
	}
	close(exited)
}

// waitReady polls /status until it answers, the process exits, or readyTimeout passes.
func (p *Proc) waitReady() error {
	p.mu.Lock()
	exited := p.exited
	p.mu.Unlock()
	deadline := time.Now().Add(p.readyTimeout)
	for {
		if _, err := p.Status(); err == nil {
			return nil
		} else if time.Now().After(deadline) {
			return fmt.Errorf("cluster: %s not ready after %v: %w; log %s:\n%s", p.Name, p.readyTimeout, err, p.LogPath, p.LogTail(20))
		}
		select {
		case <-exited:
			return fmt.Errorf("cluster: %s exited while starting: %v; log %s:\n%s", p.Name, p.exitErr(), p.LogPath, p.LogTail(20))
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (p *Proc) exitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.waitErr
}

// Running reports whether the process is alive (started and not yet reaped).
func (p *Proc) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil
}

// signal sends sig to the running process, marks the exit as intended and returns the channel
// that closes when it is gone.
func (p *Proc) signal(sig os.Signal) (chan struct{}, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotRunning, p.Name)
	}
	p.intended = true
	if err := p.cmd.Process.Signal(sig); err != nil {
		return nil, fmt.Errorf("cluster: signal %s: %w", p.Name, err)
	}
	return p.exited, nil
}

// Kill sends SIGKILL and waits until the process is reaped.
func (p *Proc) Kill() error {
	exited, err := p.signal(syscall.SIGKILL)
	if err != nil {
		return err
	}
	<-exited
	return nil
}

// Stop sends SIGTERM and waits for the clean shutdown; a process that is not gone within 10 s gets
// SIGQUIT (its goroutine stacks go to its log) and is reported, since a replica that cannot shut
// down is a bug.
func (p *Proc) Stop() error {
	exited, err := p.signal(syscall.SIGTERM)
	if err != nil {
		return err
	}
	select {
	case <-exited:
		if err := p.exitErr(); err != nil {
			return fmt.Errorf("cluster: %s did not shut down cleanly: %w", p.Name, err)
		}
		return nil
	case <-time.After(stopTimeout):
	}
	// SIGQUIT makes the Go runtime write every goroutine's stack to the log before it exits: the
	// story of what the shutdown was waiting for.
	p.signal(syscall.SIGQUIT)
	select {
	case <-exited:
	case <-time.After(2 * time.Second):
		p.Kill()
	}
	return fmt.Errorf("cluster: %s ignored SIGTERM for %v and was stopped with SIGQUIT (goroutine stacks in its log %s)", p.Name, stopTimeout, p.LogPath)
}

// Restart starts the stopped or killed process again with the same arguments (ports, data
// directory) and waits until it answers /status.
func (p *Proc) Restart() error {
	if err := p.start(); err != nil {
		return err
	}
	return p.waitReady()
}

// unexpectedExit describes a process that died without Kill or Stop.
func (p *Proc) unexpectedExit() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil || p.intended || p.starts == 0 {
		return nil
	}
	return fmt.Errorf("cluster: %s exited unexpectedly (%v); log %s:\n%s", p.Name, p.waitErr, p.LogPath, p.LogTail(30))
}

// Status fetches and decodes the process's /status.
func (p *Proc) Status() (replica.Status, error) {
	var st replica.Status
	body, err := p.get("/status")
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return st, fmt.Errorf("cluster: %s /status: %w", p.Name, err)
	}
	return st, nil
}

// Metrics fetches the process's /metrics text.
func (p *Proc) Metrics() (string, error) {
	b, err := p.get("/metrics")
	return string(b), err
}

// Metric reads one sample (e.g. "sofadb_peer_handshakes_refused_total") from /metrics: a labelled
// family summed over its series, a histogram's or summary's count under its own name.
func (p *Proc) Metric(name string) (float64, error) {
	text, err := p.Metrics()
	if err != nil {
		return 0, err
	}
	m, err := ParseMetrics(strings.NewReader(text))
	if err != nil {
		return 0, fmt.Errorf("cluster: %s /metrics: %w", p.Name, err)
	}
	if v, ok := m[name]; ok {
		return v, nil
	}
	if v, ok := m[name+"_count"]; ok {
		return v, nil
	}
	return 0, fmt.Errorf("cluster: %s has no metric %s", p.Name, name)
}

// ParseMetrics reads the Prometheus text format with its own parser: each counter, gauge or untyped
// family summed over its labelled series under its name, and each histogram or summary as
// name_count and name_sum. The bench runner reads SofaDB's and etcd's /metrics with it.
func ParseMetrics(r io.Reader) (map[string]float64, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(r)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for name, fam := range fams {
		for _, m := range fam.GetMetric() {
			switch {
			case m.GetCounter() != nil:
				out[name] += m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				out[name] += m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				out[name+"_count"] += float64(m.GetHistogram().GetSampleCount())
				out[name+"_sum"] += m.GetHistogram().GetSampleSum()
			case m.GetSummary() != nil:
				out[name+"_count"] += float64(m.GetSummary().GetSampleCount())
				out[name+"_sum"] += m.GetSummary().GetSampleSum()
			case m.GetUntyped() != nil:
				out[name] += m.GetUntyped().GetValue()
			}
		}
	}
	return out, nil
}

func (p *Proc) get(path string) ([]byte, error) {
	resp, err := statusClient.Get("http://" + p.HTTPAddr + path)
	if err != nil {
		return nil, fmt.Errorf("cluster: %s %s: %w", p.Name, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("cluster: %s %s: %w", p.Name, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("cluster: %s %s: %s: %s", p.Name, path, resp.Status, strings.TrimSpace(string(body)))
	}
	return body, nil
}

// Log returns the whole log file (every start of the process, appended).
func (p *Proc) Log() string {
	b, _ := os.ReadFile(p.LogPath)
	return string(b)
}

// LogTail returns the last n lines of the log.
func (p *Proc) LogTail(n int) string {
	lines := strings.Split(strings.TrimRight(p.Log(), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// PID is the running process's id, or 0 when it is not running.
func (p *Proc) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// CPUTime is the CPU time (user and system) the running process has used so far: sampled before
// and after a measurement, it tells whether a replica was CPU-bound.
func (p *Proc) CPUTime() (time.Duration, error) {
	pid := p.PID()
	if pid == 0 {
		return 0, fmt.Errorf("%w: %s", ErrNotRunning, p.Name)
	}
	return processCPUTime(pid)
}

// ProcessCPUTime is the CPU time (user and system) process pid has used so far, from /proc: the
// bench runner samples it for the replicas, the generator and etcd around every run.
func ProcessCPUTime(pid int) (time.Duration, error) { return processCPUTime(pid) }
