package sim

import (
	"bytes"
	"fmt"

	"github.com/sofadb/sofadb/paxos"
	"github.com/sofadb/sofadb/wire/peerwire"
)

// throughWire sends a message through the real peer codec, as the runtime does, and returns what the
// receiver decodes. A field the core sets but the codec drops (or garbles) is a violation: the
// simulated cluster must run on exactly the bytes a real one would.
func (w *world) throughWire(m *paxos.Message) (paxos.Message, bool) {
	buf := peerwire.AppendMessage(nil, m)
	var out paxos.Message
	if _, err := peerwire.DecodeMessage(buf, &out); err != nil {
		w.chk.violate("wire", "wire cannot decode its own %v: %v", m.Type, err)
		return out, false
	}
	if diff := messageDiff(m, &out); diff != "" {
		w.chk.violate("wire", "wire changes a %v message: %s", m.Type, diff)
		return out, false
	}
	return out, true
}

func messageDiff(a, b *paxos.Message) string {
	switch {
	case a.Type != b.Type || a.From != b.From || a.To != b.To:
		return fmt.Sprintf("header %v/%d/%d became %v/%d/%d", a.Type, a.From, a.To, b.Type, b.From, b.To)
	case a.Ballot != b.Ballot, a.Slot != b.Slot, a.Commit != b.Commit, a.Stamp != b.Stamp:
		return fmt.Sprintf("ballot/slot/commit/stamp %v/%d/%d/%d became %v/%d/%d/%d",
			a.Ballot, a.Slot, a.Commit, a.Stamp, b.Ballot, b.Slot, b.Commit, b.Stamp)
	case !bytes.Equal(a.Data, b.Data):
		return "data differs"
	case len(a.Entries) != len(b.Entries):
		return fmt.Sprintf("%d entries became %d", len(a.Entries), len(b.Entries))
	case !commandsEqual(a.Cmds, b.Cmds):
		return "forwarded commands differ"
	}
	for i := range a.Entries {
		x, y := &a.Entries[i], &b.Entries[i]
		if x.Slot != y.Slot || x.Ballot != y.Ballot || x.Chosen != y.Chosen || !commandsEqual(x.Cmds, y.Cmds) {
			return fmt.Sprintf("entry %d (slot %d) differs", i, x.Slot)
		}
	}
	return ""
}

func commandsEqual(a, b []paxos.Command) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := &a[i], &b[i]
		if x.ClientID != y.ClientID || x.Seq != y.Seq || !bytes.Equal(x.Data, y.Data) {
			return false
		}
	}
	return true
}
