package peerwire_test

import (
	"bytes"
	"fmt"

	"github.com/sofadb/sofadb/paxos"
	"github.com/sofadb/sofadb/wire"
	"github.com/sofadb/sofadb/wire/peerwire"
)

// A peer connection decodes into one reused Message and clones what it hands to the core, which
// keeps the messages it is given.
func Example_peerPort() {
	var conn bytes.Buffer
	accept := paxos.Message{Type: paxos.MsgAccept, From: 1, To: 2, Ballot: paxos.MakeBallot(3, 1),
		Entries: []paxos.Entry{{Slot: 10, Ballot: paxos.MakeBallot(3, 1), Cmds: []paxos.Command{
			{ClientID: 7, Seq: 1, Data: []byte("a command")}}}}}
	conn.Write(peerwire.AppendMessageFrame(nil, &accept))

	r := wire.NewReader(&conn, 0, peerwire.Types)
	var m paxos.Message
	_, payload, _ := r.Next()
	if _, err := peerwire.DecodeMessage(payload, &m); err != nil {
		panic(err)
	}
	step := peerwire.CloneMessage(&m) // replica.Step(step) may keep it
	fmt.Println(step.Type, step.From, step.Entries[0].Slot, string(step.Entries[0].Cmds[0].Data))
	// Output:
	// accept 1 10 a command
}
