package replica

import (
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/sofadb/sofadb/disk"
	"github.com/sofadb/sofadb/paxos"
)

func testServer(t *testing.T, tweak func(*Config)) (*Server, error) {
	t.Helper()
	addrs := map[paxos.ReplicaID]string{1: "127.0.0.1:1", 2: "127.0.0.1:2", 3: "127.0.0.1:3"}
	cfg := DefaultConfig(1, addrs, addrs, addrs)
	cfg.DataDir, cfg.ClusterKey = t.TempDir(), []byte("0123456789abcdef0123456789abcdef")
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if tweak != nil {
		tweak(&cfg)
	}
	s, err := New(cfg)
	if err == nil {
		t.Cleanup(func() { s.store.Close() })
	}
	return s, err
}

// TestPeerSnapshotIsValidatedBeforeTheCoreTakesIt: a snapshot the state machine cannot restore, or
// whose contents disagree with the slot it claims, is refused before the core moves its log past
// that slot (which made the next applied slot out of order and panicked the replica); a good one
// is installed.
func TestPeerSnapshotIsValidatedBeforeTheCoreTakesIt(t *testing.T) {
	s, err := testServer(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	good := disk.NewState()
	for slot := uint64(1); slot <= 11; slot++ {
		good.Apply(slot, []paxos.Command{{ClientID: 9, Seq: slot, Op: paxos.OpPut, Key: []byte("k"), Value: []byte("v")}}, nil)
	}
	data := good.AppendSnapshot(nil)
	for name, m := range map[string]paxos.Message{
		"garbage":         {Type: paxos.MsgSnapshot, From: 2, To: 1, Slot: 11, Data: []byte{1, 2, 3}},
		"slot disagrees":  {Type: paxos.MsgSnapshot, From: 2, To: 1, Slot: 50, Data: data},
		"newer version":   {Type: paxos.MsgSnapshot, From: 2, To: 1, Slot: 11, Data: append([]byte{7}, data[1:]...)},
		"truncated bytes": {Type: paxos.MsgSnapshot, From: 2, To: 1, Slot: 11, Data: data[:len(data)/2]},
	} {
		s.stepPeer(&m)
		if st := s.core.Status(); st.Commit != 0 {
			t.Fatalf("%s: the core took a bad snapshot (commit %d)", name, st.Commit)
		}
	}
	m := paxos.Message{Type: paxos.MsgSnapshot, From: 2, To: 1, Slot: 11, Data: data}
	s.stepPeer(&m)
	rd := s.core.Ready()
	if rd.Snapshot == nil {
		t.Fatal("a good snapshot was not passed to the application")
	}
	s.installSnapshot(rd.Snapshot)
	if s.failed != nil || s.state.Applied() != 11 || s.state.Digest() != good.Digest() {
		t.Fatalf("installed: failed=%v applied=%d", s.failed, s.state.Applied())
	}
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

// TestTwoPeerSnapshotsInOneBatchInstallTheNewer: an older snapshot stepped after a newer one in the
// same loop iteration (two peers answering one catch-up) overwrote the validated snapshot the core
// was about to install, and the replica fenced itself for good (issue 8, bug 7).
func TestTwoPeerSnapshotsInOneBatchInstallTheNewer(t *testing.T) {
	s, err := testServer(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	snap := func(slots uint64) []byte {
		st := disk.NewState()
		for slot := uint64(1); slot <= slots; slot++ {
			st.Apply(slot, []paxos.Command{{ClientID: 9, Seq: slot, Op: paxos.OpPut, Key: []byte("k"), Value: []byte("v")}}, nil)
		}
		return st.AppendSnapshot(nil)
	}
	newer := paxos.Message{Type: paxos.MsgSnapshot, From: 2, To: 1, Slot: 20, Data: snap(20)}
	older := paxos.Message{Type: paxos.MsgSnapshot, From: 3, To: 1, Slot: 11, Data: snap(11)}
	s.stepPeer(&newer)
	s.stepPeer(&older)
	rd := s.core.Ready()
	if rd.Snapshot == nil || rd.Snapshot.Slot != 20 {
		t.Fatalf("core installs %+v, want the snapshot through 20", rd.Snapshot)
	}
	s.installSnapshot(rd.Snapshot)
	if s.failed != nil || s.state.Applied() != 20 {
		t.Fatalf("after installing: failed=%v applied=%d", s.failed, s.state.Applied())
	}
}
