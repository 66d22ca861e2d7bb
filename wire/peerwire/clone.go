package peerwire

import "github.com/sofadb/sofadb/paxos"

// CloneMessage returns a deep copy of m that shares no memory with m or with the buffer m was
// decoded from. The core keeps the Entries, Cmds and bytes of every message Step is given, while a
// connection wants to reuse its frame buffer and its decode target for the next frame: this is the
// hand-over between the two. It makes at most three allocations whatever the message holds (the
// entries, every command, every byte), so the copy costs one pass over the message.
func CloneMessage(m *paxos.Message) paxos.Message {
	c := *m
	nCmds, nBytes := countMessage(m)
	a := arena{
		cmds:  make([]paxos.Command, 0, nCmds),
		bytes: make([]byte, 0, nBytes),
	}
	c.Data = a.copyBytes(m.Data)
	c.Cmds = a.copyCommands(m.Cmds)
	c.Entries = nil
	if len(m.Entries) > 0 {
		c.Entries = make([]paxos.Entry, len(m.Entries))
		for i := range m.Entries {
			c.Entries[i] = m.Entries[i]
			c.Entries[i].Cmds = a.copyCommands(m.Entries[i].Cmds)
		}
	}
	return c
}

// countMessage counts the commands and the bytes of command data and message data that m holds.
func countMessage(m *paxos.Message) (nCmds, nBytes int) {
	nCmds, nBytes = len(m.Cmds), len(m.Data)+commandBytes(m.Cmds)
	for i := range m.Entries {
		nCmds += len(m.Entries[i].Cmds)
		nBytes += commandBytes(m.Entries[i].Cmds)
	}
	return nCmds, nBytes
}

// commandBytes is the total length of the data of cmds.
func commandBytes(cmds []paxos.Command) int {
	n := 0
	for i := range cmds {
		n += len(cmds[i].Data)
	}
	return n
}

// arena hands out pieces of two preallocated slices; each piece is capped so that appending to one
// reallocates instead of running into its neighbour.
type arena struct {
	cmds  []paxos.Command
	bytes []byte
}

// copyBytes copies b into the arena; nil and empty stay nil.
func (a *arena) copyBytes(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	start := len(a.bytes)
	a.bytes = append(a.bytes, b...)
	return a.bytes[start:len(a.bytes):len(a.bytes)]
}

// copyCommands copies cmds and their data into the arena.
func (a *arena) copyCommands(cmds []paxos.Command) []paxos.Command {
	if len(cmds) == 0 {
		return nil
	}
	start := len(a.cmds)
	for i := range cmds {
		c := cmds[i]
		c.Data = a.copyBytes(c.Data)
		a.cmds = append(a.cmds, c)
	}
	return a.cmds[start:len(a.cmds):len(a.cmds)]
}
