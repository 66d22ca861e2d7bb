package cluster

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// The replica binary is built once per process and shared by every cluster it starts: building
// takes seconds, starting a cluster well under one.
var (
	buildOnce sync.Once
	binPath   string
	binDir    string
	buildErr  error
)

// raceFlags are the replica flags a race-detecting build runs with, before the caller's (the last of
// a repeated flag wins): such a replica runs several times slower, and on a busy 2-core machine its
// loop stalls for longer than the default election timeout (150 ms), so tests would see elections
// the race detector caused and time out on them (the failures CI can show on a slow day). A 500 ms
// timeout keeps what the tests check, and a test that sets its own still gets it.
func raceFlags() []string {
	if strings.Contains(os.Getenv("SOFADB_BUILD_FLAGS"), "-race") && os.Getenv("SOFADB_BIN") == "" {
		return []string{"-election-ticks", "50"}
	}
	return nil
}

// Binary returns the path of the sofadb replica binary, building cmd/sofadb the first time (into a
// temporary directory; RemoveBinary deletes it). The environment can change how:
//
//   - SOFADB_BIN=/path/to/sofadb uses that binary and builds nothing;
//   - SOFADB_BUILD_FLAGS="-race" passes extra flags to go build (space separated), for running the
//     end-to-end tests against a race-detecting replica.
//
// The build runs in the current directory, which must be inside the sofadb module (a test's
// package directory, or the repository root for the bench runner).
func Binary() (string, error) {
	buildOnce.Do(func() {
		if p := os.Getenv("SOFADB_BIN"); p != "" {
			binPath = p
			return
		}
		binDir, buildErr = os.MkdirTemp("", "sofadb-bin-")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "sofadb")
		args := append([]string{"build", "-o", binPath}, strings.Fields(os.Getenv("SOFADB_BUILD_FLAGS"))...)
		args = append(args, "github.com/sofadb/sofadb/cmd/sofadb")
		cmd := exec.Command(goCommand(), args...)
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("cluster: go %s: %w\n%s", strings.Join(args, " "), err, out)
		}
	})
	return binPath, buildErr
}

// RemoveBinary deletes the binary Binary built, if it built one; a TestMain calls it after the
// tests ran. Clusters started afterwards fail.
func RemoveBinary() {
	if binDir != "" {
		os.RemoveAll(binDir)
	}
}

// goCommand finds the go tool: on PATH, or under GOROOT when the caller runs with a bare PATH.
func goCommand() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	if root := os.Getenv("GOROOT"); root != "" {
		return filepath.Join(root, "bin", "go")
	}
	return "go"
}
