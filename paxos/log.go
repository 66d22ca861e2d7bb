package paxos

import "math/bits"

// slot is one Paxos instance as this replica sees it: what its acceptor voted for (or the value it
// learned was chosen) and, while it leads, its own proposal and which acceptors accepted it.
type slot struct {
	// Acceptor and learner state. Invariant: chosen implies has, and then cmds is the chosen value
	// and ballot a ballot it was chosen at; a chosen slot never changes again.
	ballot Ballot
	cmds   []Command
	has    bool
	chosen bool
	// persisted says the acceptor's vote in this slot is in a Ready already handed out (used to skip
	// re-writing a duplicate accept).
	persisted bool

	// Proposer state, meaningful while propBallot is the replica's current ballot. acks is a bitmask
	// by peer index of acceptors whose Accepted for propBallot arrived.
	propBallot Ballot
	prop       []Command
	// own says prop came from this replica's queue (not a phase-1 re-proposal of someone else's
	// vote): only own proposals are requeued when abandoned, or every leader change would copy
	// every in-flight command once more.
	own       bool
	propBytes int
	acks      uint64
	sentTick  uint64
	resent    bool // accepts were resent: a reply may answer either send, so it gives no round trip
}

func (s *slot) ackCount() int { return bits.OnesCount64(s.acks) }

// slotLog is the window of slots above base. Slots at or below base were compacted: they are
// chosen and covered by the application's snapshot, and their values are gone.
type slotLog struct {
	base  uint64
	slots []slot // slots[i] is slot base+1+i
}

// last is the highest slot the window holds (base when empty).
func (l *slotLog) last() uint64 { return l.base + uint64(len(l.slots)) }

// get returns the slot, or nil when it is compacted or beyond the window.
func (l *slotLog) get(s uint64) *slot {
	if s <= l.base || s > l.last() {
		return nil
	}
	return &l.slots[s-l.base-1]
}

// ensure returns the slot, growing the window to hold it. The caller has checked s > base and
// that s is within the configured window limit.
func (l *slotLog) ensure(s uint64) *slot {
	for s > l.last() {
		l.slots = append(l.slots, slot{})
	}
	return &l.slots[s-l.base-1]
}

// compact drops every slot at or below upTo.
func (l *slotLog) compact(upTo uint64) {
	if upTo <= l.base {
		return
	}
	n := upTo - l.base
	if n >= uint64(len(l.slots)) {
		l.slots = l.slots[:0]
	} else {
		// Copy down so the dropped prefix's commands can be garbage collected.
		rest := copy(l.slots, l.slots[n:])
		clear(l.slots[rest:])
		l.slots = l.slots[:rest]
	}
	l.base = upTo
}
