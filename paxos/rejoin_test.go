package paxos

import (
	"bytes"
	"testing"
)

// chosenAt returns the commands replica i applied in slot s (nil if it applied none there).
func (c *testNet) chosenAt(i int, s uint64) []Command {
	for _, e := range c.applied[i] {
		if e.Slot == s {
			return e.Cmds
		}
	}
	return nil
}

// sameCmd says cmds is exactly the one command want.
func sameCmd(cmds []Command, want Command) bool {
	return len(cmds) == 1 && cmds[0].ClientID == want.ClientID && cmds[0].Seq == want.Seq && bytes.Equal(cmds[0].Data, want.Data)
}

// rejoinScenario: the leader (L) and replica W choose command A in its slot while the third, S,
// hears nothing; then W loses its data directory and comes back (rejoin builds it, given W's index),
// and L is cut off. W and S are a majority without any copy of A. It returns the net, the indices
// of L, W and S, A's slot, and whether a different value was chosen in A's slot among W and S.
func rejoinScenario(t *testing.T, rejoin func(c *testNet, w int) *Replica) (c *testNet, lw, w, s int, slot uint64, conflict bool) {
	c = newTestNet(t, 3, nil)
	l := c.leader()
	lw = int(l.id) - 1
	w, s = (lw+1)%3, (lw+2)%3
	sID, lID := ReplicaID(s+1), l.id
	c.hold = func(m *Message) bool { return m.To == sID || m.From == sID }
	a := cmd(1, 1, 8)
	if err := l.Propose([]Command{a}); err != nil {
		t.Fatal(err)
	}
	c.pump()
	slot = l.commit
	if got := c.chosenAt(lw, slot); !sameCmd(got, a) {
		t.Fatalf("A not chosen in slot %d at the leader: %v", slot, got)
	}
	c.held = nil
	c.reps[w] = rejoin(c, w)
	c.applied[w] = nil
	c.hold = func(m *Message) bool { return m.To == lID || m.From == lID } // the leader cut off
	live := []*Replica{c.reps[w], c.reps[s]}
	c.tickOnly(300, live...)
	for _, r := range live {
		if r.role == leader {
			if err := r.Propose([]Command{cmd(2, 7, 8)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	c.tickOnly(50, live...)
	for _, i := range []int{w, s} {
		if got := c.chosenAt(i, slot); got != nil && !sameCmd(got, a) {
			conflict = true
		}
	}
	return c, lw, w, s, slot, conflict
}

// The hazard, shown: a replica that lost its acceptor state and votes at once lets a majority
// without any copy of a chosen value choose another one in its slot. (The canary of the test
// below: without VoteFromCommit the same scenario breaks agreement.)
func TestAWipedReplicaVotingAtOnceBreaksAgreement(t *testing.T) {
	_, _, _, _, slot, conflict := rejoinScenario(t, func(c *testNet, w int) *Replica {
		r, err := New(c.reps[w].cfg, nil) // an empty data directory
		if err != nil {
			t.Fatal(err)
		}
		return r
	})
	if !conflict {
		t.Fatalf("a wiped replica voting at once did not let another value be chosen in slot %d: the scenario shows nothing", slot)
	}
}

// A rejoining replica (its promise raised above every ballot the others promised, a learner until
// its chosen prefix reaches the highest slot they held a vote for) gives the cut-off majority
// nothing to choose with; once the cluster is whole again it learns A, and then votes.
func TestARejoiningReplicaVotesOnlyOnceItHasCaughtUp(t *testing.T) {
	c, lw, w, s, slot, conflict := rejoinScenario(t, func(c *testNet, w int) *Replica {
		var promised Ballot
		var last uint64
		for i := range c.reps {
			if i != w {
				st := c.reps[i].Status()
				promised, last = max(promised, st.Promised), max(last, st.LogLast)
			}
		}
		cfg := c.reps[w].cfg
		cfg.VoteFromCommit = last
		r, err := New(cfg, &Durable{Promised: MakeBallot(promised.Round()+1, 0)})
		if err != nil {
			t.Fatal(err)
		}
		return r
	})
	if conflict {
		t.Fatalf("a rejoining replica let another value be chosen in slot %d", slot)
	}
	r2 := c.reps[w]
	if st := r2.Status(); st.Voting || st.Metrics.RejoinIgnored == 0 {
		t.Fatalf("rejoining replica: voting %v, %d prepares and accepts ignored; want a learner that ignored the candidate's", st.Voting, st.Metrics.RejoinIgnored)
	}
	c.hold = nil // replica 1 is back
	c.tick(300)
	for i := range c.reps {
		if got := c.chosenAt(i, slot); i != w && !sameCmd(got, cmd(1, 1, 8)) {
			t.Errorf("replica %d applied %v in slot %d, want A", i+1, got, slot)
		}
	}
	if r2.commit < slot || !r2.Status().Voting {
		t.Fatalf("rejoined replica: commit %d (A in slot %d), voting %v: want it caught up and voting", r2.commit, slot, r2.Status().Voting)
	}
	// It votes now: with S cut off, L and the rejoined W choose new commands.
	sID := ReplicaID(s + 1)
	c.hold = func(m *Message) bool { return m.To == sID || m.From == sID }
	l := c.newLeaderAfter(c.reps[lw], c.reps[w])
	before := l.commit
	if err := l.Propose([]Command{cmd(3, 9, 8)}); err != nil {
		t.Fatal(err)
	}
	c.tickOnly(20, c.reps[lw], c.reps[w])
	if l.commit <= before {
		t.Fatalf("the old leader and the rejoined replica chose nothing after it caught up (commit %d)", l.commit)
	}
}
