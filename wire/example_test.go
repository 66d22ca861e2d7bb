package wire_test

import (
	"bytes"
	"fmt"

	"github.com/sofadb/sofadb/paxos"
	"github.com/sofadb/sofadb/wire"
)

// A client pipelines requests on one connection; the server reads them frame by frame, decoding
// into one reused Request, and answers each by Seq into one reused output buffer.
func Example_clientPort() {
	var conn bytes.Buffer // stands in for a TCP connection
	for seq := uint64(1); seq <= 3; seq++ {
		req := wire.Request{ClientID: 7, Seq: seq, Op: paxos.OpPut, Key: []byte("k"), Value: []byte("v")}
		conn.Write(wire.AppendRequestFrame(nil, &req))
	}

	r := wire.NewReader(&conn, 1<<20, wire.ClientRequestTypes)
	var req wire.Request
	var out []byte
	for {
		_, payload, err := r.Next()
		if err != nil {
			break // io.EOF here; anything else: log it and close the connection
		}
		if _, err := wire.DecodeRequest(payload, &req); err != nil {
			break
		}
		out = wire.AppendResponseFrame(out, &wire.Response{Seq: req.Seq, Status: wire.StatusOK})
		if r.Buffered() == 0 {
			fmt.Printf("flush %d bytes after seq %d\n", len(out), req.Seq)
			out = out[:0]
		}
	}
	// Output:
	// flush 45 bytes after seq 3
}

// A peer connection decodes into one reused Message and clones what it hands to the core, which
// keeps the messages it is given.
func Example_peerPort() {
	var conn bytes.Buffer
	accept := paxos.Message{Type: paxos.MsgAccept, From: 1, To: 2, Ballot: paxos.MakeBallot(3, 1),
		Entries: []paxos.Entry{{Slot: 10, Ballot: paxos.MakeBallot(3, 1), Cmds: []paxos.Command{
			{ClientID: 7, Seq: 1, Op: paxos.OpPut, Key: []byte("k"), Value: []byte("v")}}}}}
	conn.Write(wire.AppendMessageFrame(nil, &accept))

	r := wire.NewReader(&conn, 0, wire.PeerTypes)
	var m paxos.Message
	_, payload, _ := r.Next()
	if _, err := wire.DecodeMessage(payload, &m); err != nil {
		panic(err)
	}
	step := wire.CloneMessage(&m) // replica.Step(step) may keep it
	fmt.Println(step.Type, step.From, step.Entries[0].Slot, string(step.Entries[0].Cmds[0].Key))
	// Output:
	// accept 1 10 k
}
