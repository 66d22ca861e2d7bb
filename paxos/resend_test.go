package paxos

import "testing"

// TestSlowAcceptorsAreNotSentEveryProposalAgain: both followers answer accepts only after 20 ticks
// (their disks are behind), losing nothing. A fixed 4-tick resend timeout sent each proposal about
// five more times to each of them, on links and disks already behind (the congestion collapse of
// issue 12's large-value burst: 48,000-59,000 accepts resent for 9,100-9,500 proposed). Each
// resend of a proposal now doubles its wait (4, then 8 ticks: two resends to each acceptor, not
// five), and where round trips can be measured the timeout follows them. A lost accept is still
// resent: the last part drops one and checks it is chosen.
func TestSlowAcceptorsAreNotSentEveryProposalAgain(t *testing.T) {
	c := newTestNet(t, 3, nil)
	l := c.leader()
	slow := func(m *Message) bool { return m.Type == MsgAccepted }
	round := func(seq uint64) {
		c.hold, c.held = slow, nil
		l.Propose([]Command{cmd(7, seq, 16)})
		c.pump()
		c.tickOnly(20, c.reps...)
		c.hold = nil
		c.inbox, c.held = append(c.inbox, c.held...), nil
		c.pump()
	}
	for seq := uint64(1); seq <= 5; seq++ { // the leader learns the round trip
		round(seq)
	}
	before, commit := l.metrics.ResentAccepts, l.commit
	for seq := uint64(6); seq <= 25; seq++ {
		round(seq)
	}
	if l.commit < commit+20 {
		t.Fatalf("commit %d: the slow rounds did not all complete (from %d)", l.commit, commit)
	}
	if resent := l.metrics.ResentAccepts - before; resent > 2*2*20 {
		t.Fatalf("%d accepts resent for 20 proposals that slow acceptors all answered (srtt %d ticks)", resent, l.srttTicks())
	}
	// A lost accept: both followers' copies of the next proposal vanish; it must still be chosen.
	lost := false
	c.hold = func(m *Message) bool {
		if m.Type == MsgAccept && !lost && m.To != l.id {
			return true
		}
		return false
	}
	l.Propose([]Command{cmd(7, 26, 16)})
	c.pump()
	lost = true
	c.held = nil
	target := l.commit + 1
	for i := 0; i < 2000 && l.commit < target; i++ {
		c.tickOnly(1, c.reps...)
	}
	if l.commit < target {
		t.Fatalf("a proposal whose accepts were lost was never chosen (commit %d)", l.commit)
	}
}
