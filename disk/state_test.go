package disk

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/sofadb/sofadb/paxos"
)

func put(client, seq uint64, k, v string) paxos.Command {
	return paxos.Command{ClientID: client, Seq: seq, Op: paxos.OpPut, Key: []byte(k), Value: []byte(v)}
}

func TestRetriedCommandChosenTwiceIsAppliedOnce(t *testing.T) {
	s := NewState()
	res, err := s.Apply(1, []paxos.Command{put(7, 1, "k", "a")}, nil)
	if err != nil || res[0].Dup {
		t.Fatalf("first apply: %v %+v", err, res)
	}
	// Another client overwrites; then the retry of (7,1) is chosen again in a later slot.
	s.Apply(2, []paxos.Command{put(8, 1, "k", "b")}, nil)
	res, _ = s.Apply(3, []paxos.Command{put(7, 1, "k", "a")}, nil)
	if !res[0].Dup {
		t.Fatalf("retry not detected as duplicate: %+v", res)
	}
	if v, _ := s.Get([]byte("k")); string(v) != "b" {
		t.Fatalf("duplicate changed state: k=%q", v)
	}
}

func TestOutOfOrderSequencesInsideWindowApplyOnce(t *testing.T) {
	// seqs seen in order: 5,3,200,4,3(dup),5(dup),1000,200(dup)
	got := []bool{}
	s2 := NewState()
	for i, seq := range []uint64{5, 3, 200, 4, 3, 5, 1000, 200} {
		res, _ := s2.Apply(uint64(i+1), []paxos.Command{put(1, seq, "k", "v")}, nil)
		got = append(got, res[0].Dup)
	}
	want := []bool{false, false, false, false, true, true, false, true}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("dups = %v, want %v", got, want)
	}
}

func TestSequenceBelowWindowIsRefusedNotApplied(t *testing.T) {
	s := NewState()
	s.Apply(1, []paxos.Command{put(1, SessionWindow+10, "k", "new")}, nil)
	res, _ := s.Apply(2, []paxos.Command{put(1, 5, "k", "old")}, nil)
	if !res[0].Stale {
		t.Fatalf("old sequence not refused: %+v", res[0])
	}
	if v, _ := s.Get([]byte("k")); string(v) != "new" {
		t.Fatalf("stale command applied: %q", v)
	}
}

func TestApplyRejectsGapsInTheLog(t *testing.T) {
	s := NewState()
	if _, err := s.Apply(2, nil, nil); !errors.Is(err, ErrSlotOrder) {
		t.Fatalf("err = %v, want ErrSlotOrder", err)
	}
}

func buildState(n int) *State {
	s := NewState()
	for i := 1; i <= n; i++ {
		cmds := []paxos.Command{put(uint64(i%7), uint64(i), fmt.Sprint("k", i%13), fmt.Sprint("v", i))}
		if i%5 == 0 {
			cmds = append(cmds, paxos.Command{ClientID: 99, Seq: uint64(i), Op: paxos.OpDelete, Key: []byte(fmt.Sprint("k", i%13))})
		}
		s.Apply(uint64(i), cmds, nil)
	}
	return s
}

func TestSnapshotRoundTripIsByteIdenticalAndResumes(t *testing.T) {
	a := buildState(500)
	snap := a.AppendSnapshot(nil)
	b := NewState()
	if err := b.Restore(snap); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(snap, b.AppendSnapshot(nil)) {
		t.Fatal("snapshot of restored state differs")
	}
	// Both continue identically, including duplicate detection restored from the sessions.
	next := []paxos.Command{put(3, 3, "k3", "again"), put(3, 10_000, "x", "y")}
	ra, _ := a.Apply(501, next, nil)
	rb, _ := b.Apply(501, next, nil)
	if fmt.Sprint(ra) != fmt.Sprint(rb) || a.Digest() != b.Digest() || !ra[0].Dup {
		t.Fatalf("diverged after restore: %+v vs %+v", ra, rb)
	}
}

func TestRestoreRejectsCorruptSnapshotAndKeepsState(t *testing.T) {
	s := buildState(50)
	before := s.AppendSnapshot(nil)
	for _, bad := range [][]byte{nil, {9}, before[:len(before)-1], append(append([]byte{}, before...), 0)} {
		if err := s.Restore(bad); !errors.Is(err, ErrBadSnapshot) {
			t.Fatalf("Restore(%d bytes) err = %v", len(bad), err)
		}
	}
	if !bytes.Equal(before, s.AppendSnapshot(nil)) {
		t.Fatal("failed restore changed the state")
	}
}

func TestSessionTableIsBoundedAndEvictsLeastRecentlyUsed(t *testing.T) {
	s := NewState()
	slot := uint64(0)
	for c := uint64(1); c <= SessionsMax+1; c++ {
		slot++
		s.Apply(slot, []paxos.Command{put(c, 1, "k", "v")}, nil)
	}
	if len(s.sessions) != SessionsMax {
		t.Fatalf("sessions = %d", len(s.sessions))
	}
	if _, ok := s.sessions[1]; ok {
		t.Fatal("least recently used client 1 not evicted")
	}
}

func BenchmarkStateApply(b *testing.B) {
	s := NewState()
	cmds := make([]paxos.Command, 64)
	val := bytes.Repeat([]byte("v"), 128)
	keys := make([][]byte, 1024)
	for i := range keys {
		keys[i] = []byte(fmt.Sprintf("key-%012d", i))
	}
	var out []Result
	b.ReportAllocs()
	b.SetBytes(int64(64 * (16 + 128)))
	seq := uint64(0)
	for i := 0; i < b.N; i++ {
		for j := range cmds {
			seq++
			cmds[j] = paxos.Command{ClientID: 1, Seq: seq, Op: paxos.OpPut, Key: keys[seq%1024], Value: val}
		}
		out, _ = s.Apply(uint64(i+1), cmds, out[:0])
	}
}

func TestCloneIsIndependentAndSnapshotsIdentically(t *testing.T) {
	s := buildState(300)
	c := s.Clone()
	if !bytes.Equal(s.AppendSnapshot(nil), c.AppendSnapshot(nil)) {
		t.Fatal("clone snapshots differently")
	}
	before := c.AppendSnapshot(nil)
	s.Apply(301, []paxos.Command{put(1, 10_000, "k1", "changed"), put(77, 1, "new", "v")}, nil)
	if !bytes.Equal(before, c.AppendSnapshot(nil)) {
		t.Fatal("applying to the original changed the clone")
	}
	c.Apply(301, []paxos.Command{put(1, 10_000, "k1", "changed"), put(77, 1, "new", "v")}, nil)
	if !bytes.Equal(s.AppendSnapshot(nil), c.AppendSnapshot(nil)) || s.Digest() != c.Digest() {
		t.Fatal("clone and original diverged on the same log")
	}
}

func BenchmarkStateCloneVersusSnapshot(b *testing.B) {
	s := NewState()
	val := bytes.Repeat([]byte("v"), 128)
	cmds := make([]paxos.Command, 1000)
	for i := 0; i < 100; i++ {
		for j := range cmds {
			n := i*1000 + j
			cmds[j] = paxos.Command{ClientID: 1, Seq: uint64(n + 1), Op: paxos.OpPut, Key: []byte(fmt.Sprintf("key-%012d", n)), Value: val}
		}
		s.Apply(uint64(i+1), cmds, nil)
	}
	b.Run("clone-100k-keys", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			s.Clone()
		}
	})
	b.Run("snapshot-100k-keys", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			s.AppendSnapshot(nil)
		}
	})
}

// FuzzStateRestore feeds Restore arbitrary bytes: a snapshot arrives from a peer over the network,
// so it must fail cleanly (ErrBadSnapshot, state unchanged) on anything it did not write, and
// round-trip what it did.
func FuzzStateRestore(f *testing.F) {
	f.Add(buildState(20).AppendSnapshot(nil))
	f.Add(NewState().AppendSnapshot(nil))
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f})
	f.Fuzz(func(t *testing.T, data []byte) {
		s := buildState(5)
		before := s.AppendSnapshot(nil)
		if err := s.Restore(data); err != nil {
			if !errors.Is(err, ErrBadSnapshot) {
				t.Fatalf("error %v is not ErrBadSnapshot", err)
			}
			if !bytes.Equal(before, s.AppendSnapshot(nil)) {
				t.Fatal("a failed Restore changed the state")
			}
			return
		}
		again := NewState()
		if err := again.Restore(s.AppendSnapshot(nil)); err != nil || again.Digest() != s.Digest() || again.Applied() != s.Applied() {
			t.Fatalf("restored state does not round-trip: %v", err)
		}
	})
}
