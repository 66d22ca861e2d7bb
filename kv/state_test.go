package kv

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
)

func put(client, seq uint64, k, v string) Command {
	return Command{ClientID: client, Seq: seq, Op: OpPut, Key: []byte(k), Value: []byte(v)}
}

// open applies an OpOpen in the next slot and returns the session id it gave out.
func open(t testing.TB, s *State) uint64 {
	t.Helper()
	res, err := s.Apply(s.Applied()+1, []Command{{ClientID: 99, Op: OpOpen}}, nil)
	if err != nil || res[0].Session == 0 {
		t.Fatalf("open: %v %+v", err, res)
	}
	return res[0].Session
}

func TestRetriedCommandChosenTwiceIsAppliedOnce(t *testing.T) {
	s := NewState()
	c7, c8 := open(t, s), open(t, s)
	res, err := s.Apply(3, []Command{put(c7, 1, "k", "a")}, nil)
	if err != nil || res[0].Dup {
		t.Fatalf("first apply: %v %+v", err, res)
	}
	// Another client overwrites; then the retry of (c7,1) is chosen again in a later slot.
	s.Apply(4, []Command{put(c8, 1, "k", "b")}, nil)
	res, _ = s.Apply(5, []Command{put(c7, 1, "k", "a")}, nil)
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
	c := open(t, s2)
	for _, seq := range []uint64{5, 3, 200, 4, 3, 5, 1000, 200} {
		res, _ := s2.Apply(s2.Applied()+1, []Command{put(c, seq, "k", "v")}, nil)
		got = append(got, res[0].Dup)
	}
	want := []bool{false, false, false, false, true, true, false, true}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("dups = %v, want %v", got, want)
	}
}

func TestSequenceBelowWindowIsRefusedNotApplied(t *testing.T) {
	s := NewState()
	c := open(t, s)
	s.Apply(2, []Command{put(c, SessionWindow+10, "k", "new")}, nil)
	res, _ := s.Apply(3, []Command{put(c, 5, "k", "old")}, nil)
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

// buildState opens sessions 1-8 in slot 1, then fills slots 2-n with puts and deletes under them.
func buildState(n int) *State {
	s := NewState()
	opens := make([]Command, 8)
	for i := range opens {
		opens[i].Op = OpOpen
	}
	s.Apply(1, opens, nil)
	for i := 2; i <= n; i++ {
		cmds := []Command{put(uint64(i%7)+1, uint64(i), fmt.Sprint("k", i%13), fmt.Sprint("v", i))}
		if i%5 == 0 {
			cmds = append(cmds, Command{ClientID: 8, Seq: uint64(i), Op: OpDelete, Key: []byte(fmt.Sprint("k", i%13))})
		}
		s.Apply(s.Applied()+1, cmds, nil)
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
	next := []Command{put(3, 2, "k2", "again"), put(3, 10_000, "x", "y"), {Op: OpOpen}}
	ra, _ := a.Apply(a.Applied()+1, next, nil)
	rb, _ := b.Apply(b.Applied()+1, next, nil)
	if fmt.Sprint(ra) != fmt.Sprint(rb) || a.Digest() != b.Digest() || !ra[0].Dup || ra[2].Session != 9 {
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
	first := open(t, s)
	second := open(t, s)
	s.Apply(s.Applied()+1, []Command{put(first, 1, "k", "v")}, nil) // first is now the most recent
	for range SessionsMax - 1 {
		open(t, s)
	}
	if len(s.sessions) != SessionsMax {
		t.Fatalf("sessions = %d", len(s.sessions))
	}
	if _, ok := s.sessions[second]; ok {
		t.Fatal("least recently used session not evicted")
	}
	if _, ok := s.sessions[first]; !ok {
		t.Fatal("a recently used session was evicted")
	}
}

// TestRetryFromAnEvictedSessionIsRefusedNotAppliedTwice: past SessionsMax clients the least recently
// used session is evicted; a retry of a command it had applied must not apply again (issue 8, bug 8:
// it used to recreate the session and apply the retry a second time).
func TestRetryFromAnEvictedSessionIsRefusedNotAppliedTwice(t *testing.T) {
	s := NewState()
	s.sessionsMax = 64 // the rule is the same at 65,536; a small table keeps the test fast
	c := open(t, s)
	s.Apply(s.Applied()+1, []Command{put(c, 1, "counter", "applied once")}, nil)
	for range 64 {
		other := open(t, s)
		s.Apply(s.Applied()+1, []Command{put(other, 1, "counter", "someone else")}, nil)
	}
	res, _ := s.Apply(s.Applied()+1, []Command{put(c, 1, "counter", "applied once")}, nil)
	if !res[0].Expired || res[0].Dup {
		t.Fatalf("retry from an evicted session: %+v, want Expired", res[0])
	}
	if v, _ := s.Get([]byte("counter")); string(v) != "someone else" {
		t.Fatalf("the retry was applied again: counter=%q", v)
	}
	// A put under an id never given out is refused the same way.
	if res, _ := s.Apply(s.Applied()+1, []Command{put(1<<60, 1, "k", "v")}, nil); !res[0].Expired {
		t.Fatalf("put under an unknown id: %+v", res[0])
	}
}

func BenchmarkStateApply(b *testing.B) {
	s := NewState()
	client := open(b, s)
	cmds := make([]Command, 64)
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
			cmds[j] = Command{ClientID: client, Seq: seq, Op: OpPut, Key: keys[seq%1024], Value: val}
		}
		out, _ = s.Apply(s.Applied()+1, cmds, out[:0])
	}
}

func TestCloneIsIndependentAndSnapshotsIdentically(t *testing.T) {
	s := buildState(300)
	c := s.Clone()
	if !bytes.Equal(s.AppendSnapshot(nil), c.AppendSnapshot(nil)) {
		t.Fatal("clone snapshots differently")
	}
	before := c.AppendSnapshot(nil)
	next := []Command{put(1, 10_000, "k1", "changed"), {Op: OpOpen}}
	s.Apply(s.Applied()+1, next, nil)
	if !bytes.Equal(before, c.AppendSnapshot(nil)) {
		t.Fatal("applying to the original changed the clone")
	}
	c.Apply(c.Applied()+1, next, nil)
	if !bytes.Equal(s.AppendSnapshot(nil), c.AppendSnapshot(nil)) || s.Digest() != c.Digest() {
		t.Fatal("clone and original diverged on the same log")
	}
}

func BenchmarkStateCloneVersusSnapshot(b *testing.B) {
	s := NewState()
	client := open(b, s)
	val := bytes.Repeat([]byte("v"), 128)
	cmds := make([]Command, 1000)
	for i := 0; i < 100; i++ {
		for j := range cmds {
			n := i*1000 + j
			cmds[j] = Command{ClientID: client, Seq: uint64(n + 1), Op: OpPut, Key: []byte(fmt.Sprintf("key-%012d", n)), Value: val}
		}
		s.Apply(s.Applied()+1, cmds, nil)
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
