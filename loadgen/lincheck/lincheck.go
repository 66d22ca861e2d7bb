// Package lincheck checks a load generator's history.jsonl for linearizability with porcupine: each
// key is a register, and the history is linearizable if some order of its operations, each taking
// effect between its call and its return, explains every read. It is what turns a load run into a
// correctness check, and what the replica server's failover tests can run on their own histories.
package lincheck

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/anishathalye/porcupine"
)

// Record is one line of history.jsonl (see loadgen's appendHistory for the format).
type Record struct {
	ID       uint64 `json:"id"`
	Worker   int    `json:"worker"`
	Op       string `json:"op"` // put, get or delete
	Key      string `json:"key"`
	Value    string `json:"value"`     // id of the value a put wrote
	CallNs   int64  `json:"call_ns"`   // actual send time
	ReturnNs int64  `json:"return_ns"` // completion time
	Class    string `json:"class"`     // ok, not_found, timeout, ...
	Found    bool   `json:"found"`     // a get found a value
	Output   string `json:"output"`    // id of the value a get read
	Unknown  bool   `json:"unknown"`   // a mutation that may or may not have taken effect
}

// Read parses a history, one JSON object per line.
func Read(r io.Reader) ([]Record, error) {
	var recs []Record
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for line := 1; sc.Scan(); line++ {
		var rec Record
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			return nil, fmt.Errorf("lincheck: line %d: %w", line, err)
		}
		recs = append(recs, rec)
	}
	return recs, sc.Err()
}

// input and output are what porcupine's model sees of an operation.
type input struct {
	key, op, value string
}

type output struct {
	found bool
	value string
}

// register is one key's state. Its value before the history is unknown (a preload, an earlier run),
// so the first read of a key that the history has not written fixes it: known turns true.
type register struct {
	known, present bool
	value          string
}

// Operations turns records into porcupine operations: successes as they are; mutations with an
// unknown outcome with a return time of never (they may take effect at any later point); refused
// mutations and failed reads are dropped, since they did nothing and returned nothing.
func Operations(recs []Record) []porcupine.Operation {
	ops := make([]porcupine.Operation, 0, len(recs))
	for _, r := range recs {
		success := r.Class == "ok" || r.Class == "not_found"
		if !success && !(r.Unknown && r.Op != "get") {
			continue
		}
		op := porcupine.Operation{ClientId: r.Worker, Input: input{key: r.Key, op: r.Op, value: r.Value},
			Call: r.CallNs, Return: r.ReturnNs, Output: output{found: r.Found, value: r.Output}}
		if !success {
			op.Return = math.MaxInt64
		}
		ops = append(ops, op)
	}
	return ops
}

// Model is a key-value store of registers, partitioned by key (each key is checked alone, which is
// what keeps checking tractable). A key's value before the history is unknown (a preload, an earlier
// run): the first read of a key the history has not written fixes it.
var Model = newModel(false)

// EmptyModel is Model for a history that starts from an empty store (a fresh cluster): every key is
// absent until written, so a read that misses an acknowledged write is caught even as a key's first read.
var EmptyModel = newModel(true)

func newModel(startsEmpty bool) porcupine.Model {
	return porcupine.Model{
		Partition: partitionByKey,
		Init:      func() any { return register{known: startsEmpty} },
		Step: func(state, in, out any) (bool, any) {
			s, i := state.(register), in.(input)
			switch i.op {
			case "put":
				return true, register{known: true, present: true, value: i.value}
			case "delete":
				return true, register{known: true}
			}
			o := out.(output)
			if !s.known {
				return true, register{known: true, present: o.found, value: o.value}
			}
			return o.found == s.present && (!o.found || o.value == s.value), s
		},
		DescribeOperation: func(in, out any) string {
			i, o := in.(input), out.(output)
			if i.op == "get" {
				return fmt.Sprintf("get(%s) -> %v %q", i.key, o.found, o.value)
			}
			return fmt.Sprintf("%s(%s, %q)", i.op, i.key, i.value)
		},
		DescribeState: func(state any) string {
			switch s := state.(register); {
			case !s.known:
				return "unknown"
			case !s.present:
				return "absent"
			default:
				return s.value
			}
		},
	}
}

func partitionByKey(history []porcupine.Operation) [][]porcupine.Operation {
	byKey := map[string][]porcupine.Operation{}
	var keys []string
	for _, op := range history {
		k := op.Input.(input).key
		if _, ok := byKey[k]; !ok {
			keys = append(keys, k)
		}
		byKey[k] = append(byKey[k], op)
	}
	out := make([][]porcupine.Operation, 0, len(keys))
	for _, k := range keys {
		out = append(out, byKey[k])
	}
	return out
}

// Check reports whether recs are linearizable: porcupine.Ok, Illegal, or Unknown when timeout ran
// out first (treat Unknown as a failure: nothing was proven).
func Check(recs []Record, timeout time.Duration) porcupine.CheckResult {
	return porcupine.CheckOperationsTimeout(Model, Operations(recs), timeout)
}

// CheckVerbose checks recs against model (Model or EmptyModel) and also returns what porcupine
// needs to draw the history (porcupine.VisualizePath) when it is not linearizable.
func CheckVerbose(model porcupine.Model, recs []Record, timeout time.Duration) (porcupine.CheckResult, porcupine.LinearizationInfo) {
	return porcupine.CheckOperationsVerbose(model, Operations(recs), timeout)
}
