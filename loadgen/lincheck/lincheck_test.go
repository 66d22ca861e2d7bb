package lincheck

import (
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

func rec(op, key, value string, call, ret int64, class string, found bool, out string) Record {
	return Record{Op: op, Key: key, Value: value, CallNs: call, ReturnNs: ret, Class: class, Found: found, Output: out,
		Unknown: class == "timeout" && op != "get"}
}

func TestRegisterSemantics(t *testing.T) {
	cases := []struct {
		name string
		recs []Record
		want porcupine.CheckResult
	}{
		{"read after write", []Record{rec("put", "a", "1", 0, 10, "ok", false, ""), rec("get", "a", "", 20, 30, "ok", true, "1")}, porcupine.Ok},
		{"stale read", []Record{rec("put", "a", "1", 0, 10, "ok", false, ""), rec("put", "a", "2", 20, 30, "ok", false, ""),
			rec("get", "a", "", 40, 50, "ok", true, "1")}, porcupine.Illegal},
		{"concurrent read may see either", []Record{rec("put", "a", "1", 0, 10, "ok", false, ""), rec("put", "a", "2", 20, 60, "ok", false, ""),
			rec("get", "a", "", 30, 40, "ok", true, "1")}, porcupine.Ok},
		{"timed-out write may land later", []Record{rec("put", "a", "1", 0, 10, "timeout", false, ""), rec("get", "a", "", 100, 110, "not_found", false, ""),
			rec("get", "a", "", 200, 210, "ok", true, "1")}, porcupine.Ok},
		{"refused write never lands", []Record{rec("put", "a", "1", 0, 10, "not_leader", false, ""), rec("get", "a", "", 100, 110, "not_found", false, ""),
			rec("get", "a", "", 200, 210, "ok", true, "1")}, porcupine.Illegal},
		{"unknown initial value is one value", []Record{rec("get", "b", "", 0, 10, "ok", true, "x"), rec("get", "b", "", 20, 30, "ok", true, "y")}, porcupine.Illegal},
		{"delete then miss", []Record{rec("get", "b", "", 0, 10, "ok", true, "x"), rec("delete", "b", "", 20, 30, "ok", false, ""),
			rec("get", "b", "", 40, 50, "not_found", false, "")}, porcupine.Ok},
	}
	for _, c := range cases {
		if got := Check(c.recs, 5*time.Second); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

// TestEmptyModelCatchesWhatAFreshStoreForbids: starting from an empty store, a read that misses an
// acknowledged write, a value nobody wrote, or a read after delete is illegal even as a key's first
// read, while a write whose outcome is unknown may land late or never.
func TestEmptyModelCatchesWhatAFreshStoreForbids(t *testing.T) {
	cases := []struct {
		name string
		recs []Record
		want porcupine.CheckResult
	}{
		{"stale read", []Record{rec("put", "k", "a", 0, 1, "ok", false, ""), rec("put", "k", "b", 2, 3, "ok", false, ""),
			rec("get", "k", "", 4, 5, "ok", true, "a")}, porcupine.Illegal},
		{"lost write", []Record{rec("put", "k", "a", 0, 1, "ok", false, ""), rec("get", "k", "", 2, 3, "not_found", false, "")}, porcupine.Illegal},
		{"phantom value", []Record{rec("put", "k", "a", 0, 1, "ok", false, ""), rec("get", "k", "", 2, 3, "ok", true, "z")}, porcupine.Illegal},
		{"value before any write", []Record{rec("get", "k", "", 0, 1, "ok", true, "z")}, porcupine.Illegal},
		{"deleted then read", []Record{rec("put", "k", "a", 0, 1, "ok", false, ""), rec("delete", "k", "", 2, 3, "ok", false, ""),
			rec("get", "k", "", 4, 5, "ok", true, "a")}, porcupine.Illegal},
		{"unknown write seen late", []Record{rec("put", "k", "a", 0, 1, "timeout", false, ""), rec("get", "k", "", 2, 3, "not_found", false, ""),
			rec("get", "k", "", 4, 5, "ok", true, "a")}, porcupine.Ok},
		{"unknown write never seen", []Record{rec("put", "k", "a", 0, 1, "ok", false, ""), rec("put", "k", "b", 0, 1, "timeout", false, ""),
			rec("get", "k", "", 4, 5, "ok", true, "a")}, porcupine.Ok},
		{"other key unaffected", []Record{rec("put", "x", "a", 0, 1, "ok", false, ""), rec("get", "k", "", 2, 3, "not_found", false, "")}, porcupine.Ok},
	}
	for _, c := range cases {
		if got, _ := CheckVerbose(EmptyModel, c.recs, 5*time.Second); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}
