package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sofadb/sofadb/bench/cluster"
)

// TestCommandLineRefusals (issue 11, frictions): each bad command line is refused before anything
// is opened, with exit status 2 and a message naming every flag at fault.
func TestCommandLineRefusals(t *testing.T) {
	file := filepath.Join(t.TempDir(), "not-a-dir")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	base := []string{"-id", "1", "-peers", "1=127.0.0.1:1", "-clients", "1=127.0.0.1:2", "-http", "1=127.0.0.1:3",
		"-data", t.TempDir(), "-cluster-key", "/nonexistent"}
	with := func(more ...string) []string { return slices.Concat(base, more) }
	full := with()
	for _, c := range []struct {
		args []string
		want []string
	}{
		{nil, []string{"missing -id, -peers, -clients, -http, -data, -cluster-key"}},
		{[]string{"-id", "1"}, []string{"missing -peers, -clients, -http, -data, -cluster-key"}},
		{with("stray"), []string{`unexpected arguments ["stray"]`}},
		{with("-batch-bytes", "-1"), []string{"-batch-bytes -1: must not be negative"}},
		{with("-inflight-slots", "0", "-election-ticks", "0"), []string{"-inflight-slots 0", "-election-ticks 0"}},
		{with("-data", file), []string{"is a file, not a directory"}},
		{with("-id", "7"), []string{"-id 7 is not one of the -peers ids"}},
		{[]string{"-id", "x"}, []string{"bad flags"}},
	} {
		err := run(c.args)
		var ue usageError
		if !errors.As(err, &ue) {
			t.Errorf("sofadb %q: %v, want a usage error (exit 2)", c.args, err)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("sofadb %q: %q, want it to say %q", c.args, err, w)
			}
		}
	}
	// A complete command line gets past the flags and fails on the key file, naming the flag.
	if err := run(full); err == nil || !strings.Contains(err.Error(), "-cluster-key") {
		t.Errorf("sofadb with a missing key file: %v", err)
	}
}

// TestTakenPortFailsBeforeTheDataDirectory (issue 11, frictions): a port already in use is
// reported, naming the listener and the address, before the data directory is created or locked
// (so a second copy of a replica does not fail on badger's lock, or after a long recovery).
func TestTakenPortFailsBeforeTheDataDirectory(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, []byte("0123456789abcdef0123456789abcdef"), 0o600); err != nil {
		t.Fatal(err)
	}
	ports, err := cluster.FreePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(t.TempDir(), "data")
	err = run([]string{"-id", "1", "-peers", fmt.Sprintf("1=127.0.0.1:%d", ports[0]), "-clients", "1=" + taken.Addr().String(),
		"-http", fmt.Sprintf("1=127.0.0.1:%d", ports[1]),
		"-data", dataDir, "-cluster-key", keyFile})
	if err == nil || !strings.Contains(err.Error(), "client listener") || !strings.Contains(err.Error(), taken.Addr().String()) {
		t.Fatalf("a taken client port: err = %v, want the client listener and its address named", err)
	}
	if _, err := os.Stat(dataDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the data directory was created before the ports were bound (stat: %v)", err)
	}
}
