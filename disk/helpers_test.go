package disk

import (
	"fmt"

	"github.com/sofadb/sofadb/kv"
	"github.com/sofadb/sofadb/paxos"
)

// put is a put as the log carries it: the state machine's payload, opaque to the store.
func put(client, seq uint64, key, value string) paxos.Command {
	return paxos.Command{ClientID: client, Seq: seq, Data: kv.AppendPayload(nil, kv.OpPut, []byte(key), []byte(value))}
}

// valueOf is the value a logged put carries.
func valueOf(c *paxos.Command) string {
	_, _, v, _ := kv.DecodePayload(c.Data)
	return string(v)
}

// applyEntry applies a logged slot to st, decoding its commands as the runtime does.
func applyEntry(st *kv.State, e *paxos.Entry) {
	cmds := make([]kv.Command, len(e.Cmds))
	for i := range e.Cmds {
		cmds[i].Decode(e.Cmds[i].ClientID, e.Cmds[i].Seq, e.Cmds[i].Data)
	}
	st.Apply(e.Slot, cmds, nil)
}

// buildState opens session 1 in slot 1, then fills slots 2-n with puts and deletes under it, so
// the state has the size a real one would.
func buildState(n int) *kv.State {
	s := kv.NewState()
	s.Apply(1, []kv.Command{{Op: kv.OpOpen}}, nil)
	for i := 2; i <= n; i++ {
		cmds := []kv.Command{{ClientID: 1, Seq: uint64(i), Op: kv.OpPut, Key: []byte(fmt.Sprint("k", i%13)), Value: []byte(fmt.Sprint("v", i))}}
		if i%5 == 0 {
			cmds = append(cmds, kv.Command{ClientID: 1, Seq: uint64(i) + 1<<32, Op: kv.OpDelete, Key: []byte(fmt.Sprint("k", i%13))})
		}
		s.Apply(uint64(i), cmds, nil)
	}
	return s
}
