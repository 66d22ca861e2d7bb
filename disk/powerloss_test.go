package disk

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/sofadb/sofadb/powerfs"
)

// TestPowerLossLosesNothingAcknowledged is TestSIGKILLLosesNothingAcknowledged with the power cut
// too: the child writes to a store on a power-loss file system (powerfs, FUSE), which at each cut
// drops everything not fsync'ed (file data since its last fsync or msync, names since their
// directory's last fsync) before the child is killed. Reopened on what is left, the store must
// hold every slot, promise and snapshot the child printed as acknowledged. Snapshots are rare here
// (every 300 ms), so the cut often lands while badger has created a file (a rotated write-ahead
// log) whose name only a later directory sync would make durable.
//
// This process serves the file system, so it never opens the store itself (badger maps its
// files, and a fault on a mapped page of a file system a process serves can deadlock it): a
// second child opens it and reports what it recovered.
func TestPowerLossLosesNothingAcknowledged(t *testing.T) {
	fsys, dir := powerDir(t)
	iterations, budget := 12, 20*time.Second
	if testing.Short() {
		iterations = 4
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	acked := &crashFacts{slots: map[uint64]bool{}}
	env := []string{crashSnapshotEveryEnv + "=300ms", crashMemTableEnv + "=262144"}
	t.Setenv(crashMemTableEnv, "262144") // the checking child opens it alike
	start, i := time.Now(), 0
	for ; i < iterations && time.Since(start) < budget; i++ {
		runAndKill(t, dir, time.Duration(50+rng.IntN(700))*time.Millisecond, acked, fsys.PowerLoss, env)
		if err := fsys.Remount(); err != nil {
			t.Fatal(err)
		}
		recoveredInChild(t, dir).check(t, acked)
	}
	st := fsys.Stats()
	t.Logf("%d power losses in %v; %d slots, %d snapshots acknowledged; the disk saw %d file syncs, %d directory syncs, and dropped %.1f MiB never synced",
		i, time.Since(start).Round(time.Millisecond), len(acked.slots), acked.snapshots, st.FileSyncs, st.DirSyncs, float64(st.DroppedBytes)/(1<<20))
	if len(acked.slots) == 0 || st.DroppedBytes == 0 {
		t.Fatal("nothing acknowledged, or nothing dropped: the test tested nothing")
	}
}

// TestPowerLossControlWithoutSyncIsCaught is the power-loss test's control: the same child, with
// writes acknowledged without an fsync (as a replica run with -fsync=false acknowledges them), must
// be caught losing acknowledged slots, or the power-loss test proves nothing. (SIGKILL alone would
// not catch it: the page cache keeps the writes.)
func TestPowerLossControlWithoutSyncIsCaught(t *testing.T) {
	fsys, dir := powerDir(t)
	acked := &crashFacts{slots: map[uint64]bool{}}
	env := []string{crashSnapshotEveryEnv + "=1h", crashNoSyncEnv + "=1"}
	for i := range 5 {
		runAndKill(t, dir, 200*time.Millisecond, acked, fsys.PowerLoss, env)
		if err := fsys.Remount(); err != nil {
			t.Fatal(err)
		}
		if err := recoveredInChild(t, dir).verify(acked); err != nil {
			t.Logf("caught after %d power losses: %v", i+1, err)
			return
		}
	}
	t.Fatalf("5 power losses with writes acknowledged before any fsync, %d slots acknowledged, and none found lost: the power-loss test cannot see a missing fsync", len(acked.slots))
}

// powerDir mounts a fresh power-loss file system on a temporary directory for the test (unmounted
// at its end), or skips the test where FUSE is not there to be had.
func powerDir(t *testing.T) (*powerfs.FS, string) {
	t.Helper()
	if err := powerfs.Available(); err != nil {
		t.Skipf("needs FUSE: %v", err)
	}
	dir := t.TempDir()
	fsys := powerfs.New()
	if err := fsys.Mount(dir); err != nil {
		t.Skipf("needs FUSE: %v", err)
	}
	t.Cleanup(func() {
		if err := fsys.Unmount(); err != nil {
			t.Error(err)
		}
	})
	return fsys, dir
}

// crashCheckEnv names the directory TestCrashCheckChild opens.
const crashCheckEnv = "SOFADB_DISK_CRASH_CHECK"

// recoveredInChild opens the store in dir in a child process and returns what it recovered.
func recoveredInChild(t *testing.T, dir string) *crashRecovered {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashCheckChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashCheckEnv+"="+dir)
	out, err := cmd.Output()
	var r crashRecovered
	if err != nil || json.Unmarshal(out, &r) != nil {
		stderr := ""
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("Open after the power loss: %v\n%s%s", err, out, stderr)
	}
	return &r
}

// TestCrashCheckChild opens the store for recoveredInChild and prints what it recovered as JSON
// (or why it could not, exiting 2).
func TestCrashCheckChild(t *testing.T) {
	dir := os.Getenv(crashCheckEnv)
	if dir == "" {
		t.Skip("only runs as the child of TestPowerLossLosesNothingAcknowledged")
	}
	r, err := openRecovered(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	b, _ := json.Marshal(r)
	os.Stdout.Write(b)
	os.Exit(0) // nothing of the test framework's own output
}
