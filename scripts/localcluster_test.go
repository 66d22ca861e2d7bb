// Package scripts holds the tests of the shell scripts in this directory.
package scripts

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestLocalClusterRestartsOnlyWhatIsDown (issue 11, bug 1): after one replica is killed, `start`
// starts only that one: the two still running keep their processes and pid files, `status` shows
// all three, `leader` names a live one, and `stop` stops every replica it started.
func TestLocalClusterRestartsOnlyWhatIsDown(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	dir := t.TempDir()
	base := 20000 + os.Getpid()%20000 // peers base+i, binary base+1000+i, HTTP base+2000+i
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("./local-cluster.sh", append([]string{"--dir", dir, "--base", strconv.Itoa(base)}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("local-cluster.sh %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	defer exec.Command("./local-cluster.sh", "--dir", dir, "--base", strconv.Itoa(base), "stop").Run()
	run("start")
	pids := map[int]int{}
	for i := 1; i <= 3; i++ {
		pids[i] = pidOf(t, dir, i)
	}
	leader := strings.Fields(run("leader"))
	if len(leader) != 2 {
		t.Fatalf("leader printed %q, want id and pid", leader)
	}
	killed, _ := strconv.Atoi(leader[0])
	if err := syscall.Kill(pids[killed], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, pids[killed])
	if st := run("status"); !strings.Contains(st, fmt.Sprintf("replica %d: down", killed)) {
		t.Errorf("status after the kill does not show replica %d down:\n%s", killed, st)
	}
	out := run("start")
	for i := 1; i <= 3; i++ {
		if i == killed {
			if pidOf(t, dir, i) == pids[i] {
				t.Errorf("replica %d was not restarted", i)
			}
			continue
		}
		if !strings.Contains(out, fmt.Sprintf("replica %d already running", i)) || pidOf(t, dir, i) != pids[i] {
			t.Errorf("replica %d was started again or lost its pid file:\n%s", i, out)
		}
	}
	st := run("status")
	if strings.Count(st, ": pid ") != 3 {
		t.Errorf("status does not show three running replicas:\n%s", st)
	}
	// One line per replica: pid, role, leader, commit, applied (it once printed raw JSON when
	// /status grew keys before "role").
	line := regexp.MustCompile(`(?m)^replica [123]: pid [0-9]+, (leader|follower|candidate), leader [0-3], commit [0-9]+, applied [0-9]+$`)
	if n := len(line.FindAllString(st, -1)); n != 3 {
		t.Errorf("status lines in the documented form: %d of 3:\n%s", n, st)
	}
	final := map[int]int{}
	for i := 1; i <= 3; i++ {
		final[i] = pidOf(t, dir, i)
	}
	run("stop")
	for i, pid := range final {
		if syscall.Kill(pid, 0) == nil {
			t.Errorf("replica %d (pid %d) still running after stop", i, pid)
		}
	}
}

func pidOf(t *testing.T, dir string, i int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("%s/replica%d.pid", dir, i))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

func waitGone(t *testing.T, pid int) {
	for range 100 {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("pid %d still there after SIGKILL", pid)
}

// TestLocalClusterWithFaults: --faults starts the peer links through cmd/faultproxy; its CLI cuts
// the leader off, the two others elect one of themselves, heal brings the old one back as a
// follower, and stop stops the proxy too.
func TestLocalClusterWithFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	dir := t.TempDir()
	base := 20000 + (os.Getpid()+500)%20000
	control := fmt.Sprintf("127.0.0.1:%d", base+3990)
	run := func(name string, args ...string) string {
		t.Helper()
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
		return string(out)
	}
	lc := func(args ...string) string {
		return run("./local-cluster.sh", append([]string{"--dir", dir, "--base", strconv.Itoa(base)}, args...)...)
	}
	defer exec.Command("./local-cluster.sh", "--dir", dir, "--base", strconv.Itoa(base), "stop").Run()
	lc("--faults", "start")
	old := strings.Fields(lc("leader"))[0]
	for _, id := range []string{"1", "2", "3"} {
		if id != old {
			run(dir+"/faultproxy", "set", "-control", control, "-from", old, "-to", id, "-both", "-refuse")
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := exec.Command("./local-cluster.sh", "--dir", dir, "--base", strconv.Itoa(base), "leader").CombinedOutput()
		if f := strings.Fields(string(out)); err == nil && len(f) == 2 && f[0] != old {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new leader 10 s after cutting %s off: %s", old, lc("status"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	run(dir+"/faultproxy", "heal", "-control", control)
	if out := lc("stop"); !strings.Contains(out, "fault proxy stopped") {
		t.Fatalf("stop did not stop the proxy:\n%s", out)
	}
}
