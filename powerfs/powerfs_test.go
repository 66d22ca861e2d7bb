package powerfs

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// mounted mounts a fresh file system on a temporary directory, or skips the test where FUSE is
// not there to be had.
func mounted(t *testing.T) (*FS, string) {
	t.Helper()
	if err := Available(); err != nil {
		t.Skipf("no FUSE here: %v", err)
	}
	dir := t.TempDir()
	fsys := New()
	if err := fsys.Mount(dir); err != nil {
		t.Skipf("cannot mount FUSE here: %v", err)
	}
	t.Cleanup(func() {
		if err := fsys.Unmount(); err != nil {
			t.Error(err)
		}
	})
	return fsys, dir
}

func syncPath(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		t.Fatalf("fsync %s: %v", path, err)
	}
}

func writeFile(t *testing.T, path, data string, sync bool) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(data); err != nil {
		t.Fatal(err)
	}
	if sync {
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) (string, bool) {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", false
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(b), true
}

// TestPowerLossKeepsOnlyWhatWasSynced: file data survives only up to its last fsync, and names
// (creates, renames, removals, new directories) only once their directory was synced.
func TestPowerLossKeepsOnlyWhatWasSynced(t *testing.T) {
	fsys, dir := mounted(t)
	p := func(name string) string { return filepath.Join(dir, name) }

	writeFile(t, p("kept"), "one", true)
	writeFile(t, p("renamed"), "r", true)
	writeFile(t, p("removed"), "x", true)
	syncPath(t, dir) // the three names are durable now
	writeFile(t, p("kept"), "-two", false)
	writeFile(t, p("synced-name-unsynced"), "b", true) // its data is synced, its name is not
	if err := os.Mkdir(p("sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(p("renamed"), p("renamed2")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(p("removed")); err != nil {
		t.Fatal(err)
	}
	// Before the power goes, the file system shows what was written.
	if got, _ := readFile(t, p("kept")); got != "one-two" {
		t.Fatalf("kept reads %q before the power loss, want %q", got, "one-two")
	}

	fsys.PowerLoss()
	if err := os.WriteFile(p("after"), []byte("z"), 0o644); !errors.Is(err, syscall.EIO) {
		t.Errorf("a create with the power off: %v, want EIO", err)
	}
	if err := fsys.Remount(); err != nil {
		t.Fatal(err)
	}

	for name, want := range map[string]string{"kept": "one", "renamed": "r", "removed": "x"} {
		if got, ok := readFile(t, p(name)); !ok || got != want {
			t.Errorf("%s after the power loss: %q (exists %v), want %q", name, got, ok, want)
		}
	}
	for _, name := range []string{"synced-name-unsynced", "sub", "renamed2", "after"} {
		if _, err := os.Stat(p(name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s after the power loss: %v, want it gone (its directory was not synced)", name, err)
		}
	}
	st := fsys.Stats()
	if st.PowerLosses != 1 || st.DroppedBytes != int64(len("-two")) {
		t.Errorf("stats %+v: want 1 power loss and %d bytes dropped", st, len("-two"))
	}

	// Writable again after the remount, and a synced directory keeps its new names.
	writeFile(t, p("new"), "n", true)
	syncPath(t, dir)
	fsys.PowerLoss()
	if err := fsys.Remount(); err != nil {
		t.Fatal(err)
	}
	if got, ok := readFile(t, p("new")); !ok || got != "n" {
		t.Errorf("new after a second power loss: %q (exists %v), want %q", got, ok, "n")
	}
}

// TestMappedWritesAreDurableOnlyAfterMsync: badger writes its write-ahead log through a shared
// mapping and syncs it with msync; what was msync'ed survives, what was not is lost. The mapping
// is a child process's: a process must not fault on pages of a FUSE file system it serves itself
// (a thread stuck in such a fault cannot stop for the garbage collector, which stops the threads
// that would answer it).
func TestMappedWritesAreDurableOnlyAfterMsync(t *testing.T) {
	fsys, dir := mounted(t)
	path := filepath.Join(dir, "wal")
	cmd := exec.Command(os.Args[0], "-test.run=^TestMappingChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), mappingChildEnv+"="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	if line != "ready\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child: %q\n%s", line, stderr.String())
	}
	fsys.PowerLoss()
	cmd.Process.Kill() // its dirty page reaches the file system after the power is gone: refused
	cmd.Wait()
	if err := fsys.Remount(); err != nil {
		t.Fatal(err)
	}
	got, ok := readFile(t, path)
	if !ok || len(got) != 8192 {
		t.Fatalf("wal after the power loss: %d bytes (exists %v), want 8192", len(got), ok)
	}
	if !strings.HasPrefix(got, "synced") {
		t.Errorf("wal lost its msync'ed bytes: %q", got[:16])
	}
	if strings.Contains(got, "not synced") {
		t.Errorf("wal kept bytes written through the mapping and never synced")
	}
}

const mappingChildEnv = "POWERFS_MAPPING_CHILD"

// TestMappingChild is TestMappedWritesAreDurableOnlyAfterMsync's child: it maps the file, writes
// and msyncs one page, writes another without a sync, says "ready" and waits to be killed.
func TestMappingChild(t *testing.T) {
	path := os.Getenv(mappingChildEnv)
	if path == "" {
		t.Skip("only runs as the child of TestMappedWritesAreDurableOnlyAfterMsync")
	}
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		fail(err)
	}
	if err := f.Truncate(8192); err != nil {
		fail(err)
	}
	m, err := unix.Mmap(int(f.Fd()), 0, 8192, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		fail(err)
	}
	copy(m, "synced")
	if err := unix.Msync(m, unix.MS_SYNC); err != nil {
		fail(err)
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		fail(err)
	}
	if err := d.Sync(); err != nil {
		fail(err)
	}
	copy(m[4096:], "not synced")
	fmt.Println("ready")
	time.Sleep(time.Minute)
}
