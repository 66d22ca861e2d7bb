package replica_test

import (
	"fmt"
	"math"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/sofadb/sofadb/paxos"
)

// kvInput is one client operation of a checked history. Values are unique per write, so a read
// names the one write it saw.
type kvInput struct {
	Op         paxos.Op
	Key, Value string
}

// kvOutput is what a get returned; puts and deletes return nothing the model checks.
type kvOutput struct {
	Found bool
	Value string
}

// kvModel is a key-value register per key for porcupine: put sets it, delete clears it, get must
// return it. A key's state is its value, "" when absent (no write writes ""). Partitioning by key
// keeps the check's cost in the concurrency per key, not the length of the history.
var kvModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range history {
			k := op.Input.(kvInput).Key
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		sort.Strings(keys)
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		in, st := input.(kvInput), state.(string)
		switch in.Op {
		case paxos.OpPut:
			return true, in.Value
		case paxos.OpDelete:
			return true, ""
		}
		out := output.(kvOutput)
		return out.Found == (st != "") && (!out.Found || out.Value == st), st
	},
	DescribeOperation: func(input, output any) string {
		in := input.(kvInput)
		switch in.Op {
		case paxos.OpPut:
			return fmt.Sprintf("put(%s, %s)", in.Key, in.Value)
		case paxos.OpDelete:
			return fmt.Sprintf("delete(%s)", in.Key)
		}
		out, _ := output.(kvOutput)
		if !out.Found {
			return fmt.Sprintf("get(%s) -> absent", in.Key)
		}
		return fmt.Sprintf("get(%s) -> %s", in.Key, out.Value)
	},
	DescribeState: func(state any) string {
		if state.(string) == "" {
			return "absent"
		}
		return state.(string)
	},
}

// never is the return time of a write whose outcome the client could not learn (timeout, lost
// connection, Unavailable): it may take effect at any point after its call, or not at all.
const never = math.MaxInt64

// history records operations from many client goroutines against one clock.
type history struct {
	t0 time.Time

	mu      sync.Mutex
	ops     []porcupine.Operation
	unknown int // writes recorded with return time never
	dropped int // failed reads and writes known not to have been applied
}

func newHistory() *history { return &history{t0: time.Now()} }

// now is the time since the history began, in nanoseconds (monotonic).
func (h *history) now() int64 { return int64(time.Since(h.t0)) }

// done records an operation that completed with a definite outcome.
func (h *history) done(client int, in kvInput, call, ret int64, out kvOutput) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ops = append(h.ops, porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret})
}

// maybe records a write whose outcome is unknown; a read whose outcome is unknown is dropped, since
// it changed nothing.
func (h *history) maybe(client int, in kvInput, call int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if in.Op == paxos.OpGet {
		h.dropped++
		return
	}
	h.unknown++
	h.ops = append(h.ops, porcupine.Operation{ClientId: client, Input: in, Call: call, Output: kvOutput{}, Return: never})
}

// notApplied drops an operation the server said it did not do (Busy).
func (h *history) notApplied() {
	h.mu.Lock()
	h.dropped++
	h.mu.Unlock()
}

// firstWriteAfter is the return time of the first acknowledged write called after t (never if
// none): how long a leader failure kept writes from being acknowledged.
func (h *history) firstWriteAfter(t int64) int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	first := int64(never)
	for _, op := range h.ops {
		if op.Input.(kvInput).Op != paxos.OpGet && op.Call > t && op.Return < first {
			first = op.Return
		}
	}
	return first
}

// check runs porcupine with a time budget and fails the test on Illegal and on Unknown (a check
// that ran out of time proved nothing). On Illegal it writes porcupine's visualization to vizPath.
func (h *history) check(t *testing.T, timeout time.Duration, vizPath string) {
	t.Helper()
	h.mu.Lock()
	ops := append([]porcupine.Operation(nil), h.ops...)
	h.mu.Unlock()
	start := time.Now()
	res, info := porcupine.CheckOperationsVerbose(kvModel, ops, timeout)
	t.Logf("porcupine: %d operations (%d with unknown outcome, %d dropped): %v in %v",
		len(ops), h.unknown, h.dropped, res, time.Since(start).Round(time.Millisecond))
	switch res {
	case porcupine.Ok:
	case porcupine.Illegal:
		if vizPath != "" {
			if err := porcupine.VisualizePath(kvModel, info, vizPath); err == nil {
				t.Logf("porcupine visualization: %s", vizPath)
			}
		}
		t.Fatalf("history is not linearizable")
	default:
		t.Fatalf("linearizability check inconclusive (%v) after %v: treat as a failure", res, timeout)
	}
}

// TestKVModelCatchesViolations proves the checker bites: histories with a stale read, a lost
// acknowledged write and a read of a value nobody wrote are Illegal, while an unknown write that
// took effect late and one that never took effect are both fine.
func TestKVModelCatchesViolations(t *testing.T) {
	put := func(k, v string) kvInput { return kvInput{Op: paxos.OpPut, Key: k, Value: v} }
	get := kvInput{Op: paxos.OpGet, Key: "k"}
	op := func(in kvInput, call, ret int64, out kvOutput) porcupine.Operation {
		return porcupine.Operation{Input: in, Call: call, Output: out, Return: ret}
	}
	cases := []struct {
		name string
		ops  []porcupine.Operation
		want porcupine.CheckResult
	}{
		{"stale read", []porcupine.Operation{
			op(put("k", "a"), 0, 1, kvOutput{}), op(put("k", "b"), 2, 3, kvOutput{}), op(get, 4, 5, kvOutput{true, "a"})}, porcupine.Illegal},
		{"lost write", []porcupine.Operation{
			op(put("k", "a"), 0, 1, kvOutput{}), op(get, 2, 3, kvOutput{false, ""})}, porcupine.Illegal},
		{"phantom value", []porcupine.Operation{
			op(put("k", "a"), 0, 1, kvOutput{}), op(get, 2, 3, kvOutput{true, "z"})}, porcupine.Illegal},
		{"deleted then read", []porcupine.Operation{
			op(put("k", "a"), 0, 1, kvOutput{}), op(kvInput{Op: paxos.OpDelete, Key: "k"}, 2, 3, kvOutput{}),
			op(get, 4, 5, kvOutput{true, "a"})}, porcupine.Illegal},
		{"unknown write seen late", []porcupine.Operation{
			op(put("k", "a"), 0, never, kvOutput{}), op(get, 2, 3, kvOutput{false, ""}), op(get, 4, 5, kvOutput{true, "a"})}, porcupine.Ok},
		{"unknown write never seen", []porcupine.Operation{
			op(put("k", "a"), 0, 1, kvOutput{}), op(put("k", "b"), 0, never, kvOutput{}), op(get, 4, 5, kvOutput{true, "a"})}, porcupine.Ok},
		{"other key unaffected", []porcupine.Operation{
			op(put("x", "a"), 0, 1, kvOutput{}), op(get, 2, 3, kvOutput{false, ""})}, porcupine.Ok},
	}
	for _, tc := range cases {
		if got := porcupine.CheckOperationsTimeout(kvModel, tc.ops, 5*time.Second); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
