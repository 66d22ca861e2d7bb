package wire_test

import (
	"bytes"
	"fmt"

	"github.com/sofadb/sofadb/kv"
	"github.com/sofadb/sofadb/wire"
)

// A client pipelines requests on one connection; the server reads them frame by frame, decoding
// into one reused Request, and answers each by Seq into one reused output buffer.
func Example_clientPort() {
	var conn bytes.Buffer // stands in for a TCP connection
	for seq := uint64(1); seq <= 3; seq++ {
		req := wire.Request{ClientID: 7, Seq: seq, Op: kv.OpPut, Key: []byte("k"), Value: []byte("v")}
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
