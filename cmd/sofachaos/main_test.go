package main

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sofadb/sofadb/loadgen/lincheck"
)

// A short chaos run: every kind of fault has a chance in 12 s (the long one is make chaos).
func TestShortChaosRunIsLinearizableAndConverges(t *testing.T) {
	if testing.Short() {
		t.Skip("starts replica processes")
	}
	res, err := Chaos(options{duration: 12 * time.Second, seed: 3, replicas: 3, rate: 200, keys: 8, out: t.TempDir()}, os.Stderr)
	t.Log(res)
	if err != nil {
		t.Fatal(err)
	}
}

// The canary: a run with one final read changed to a value nobody wrote must be found Illegal, or
// the check proves nothing. (Many keys, so each key's history is short enough for porcupine to
// refute quickly: with 4 keys it searched for 5 minutes and gave up, Unknown.)
func TestChaosCheckCatchesAReadOfAValueNeverWritten(t *testing.T) {
	if testing.Short() {
		t.Skip("starts replica processes")
	}
	tamper := func(recs []lincheck.Record) {
		for i := len(recs) - 1; i >= 0; i-- {
			if recs[i].Op == "get" && recs[i].Class == "ok" {
				recs[i].Output = "never-written-00"
				return
			}
		}
	}
	res, err := Chaos(options{duration: 5 * time.Second, seed: 4, replicas: 3, rate: 200, keys: 64, out: t.TempDir(),
		tamper: tamper, checkTimeout: time.Minute}, os.Stderr)
	t.Log(res)
	if err == nil || !strings.Contains(err.Error(), "(Illegal)") {
		t.Fatalf("a tampered history was not found Illegal: %v", err)
	}
}
