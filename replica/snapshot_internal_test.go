package replica

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/sofadb/sofadb/paxos"
)

func testServer(t *testing.T, tweak func(*Config)) (*Server, error) {
	t.Helper()
	addrs := map[paxos.ReplicaID]string{1: "127.0.0.1:0", 2: "127.0.0.1:2", 3: "127.0.0.1:3"} // 1 binds any free port
	cfg := DefaultConfig(1, addrs, addrs, addrs)
	cfg.DataDir, cfg.ClusterKey = t.TempDir(), []byte("0123456789abcdef0123456789abcdef")
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if tweak != nil {
		tweak(&cfg)
	}
	s, err := New(cfg)
	if err == nil {
		t.Cleanup(func() { s.Close() })
	}
	return s, err
}

// TestLimitsThatDoNotFitADiskRecordAreRefused: one command gets a slot, and a slot is one disk
// record, so a value limit above the record limit would let a single PUT fail the disk.
func TestLimitsThatDoNotFitADiskRecordAreRefused(t *testing.T) {
	_, err := testServer(t, func(c *Config) {
		c.ValueBytesMax, c.ClientFrameBytesMax = 2<<20, 3<<20
	})
	if !errors.Is(err, ErrConfig) {
		t.Fatalf("a 2 MiB value limit: err = %v, want ErrConfig", err)
	}
	if _, err := testServer(t, nil); err != nil {
		t.Fatalf("defaults refused: %v", err)
	}
}

// TestStatusKeysAreSnakeCase (issue 11, frictions): /status speaks one key style, the core's
// counters included.
func TestStatusKeysAreSnakeCase(t *testing.T) {
	b, err := json.Marshal(Status{Peers: []PeerStatus{{}}})
	if err != nil {
		t.Fatal(err)
	}
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, sub := range x {
				if k != strings.ToLower(k) {
					t.Errorf("/status key %q is not snake_case", k)
				}
				walk(sub)
			}
		case []any:
			for _, sub := range x {
				walk(sub)
			}
		}
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	walk(v)
}
