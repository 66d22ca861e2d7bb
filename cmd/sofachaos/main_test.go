package main

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sofadb/sofadb/loadgen/lincheck"
	"github.com/sofadb/sofadb/powerfs"
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

// The same on 5 replicas: a majority of 3, and the shapes that only 5 replicas have room for.
func TestShortChaosRunOnFiveReplicasIsLinearizableAndConverges(t *testing.T) {
	if testing.Short() {
		t.Skip("starts replica processes")
	}
	res, err := Chaos(options{duration: 12 * time.Second, seed: 5, replicas: 5, rate: 200, keys: 8, out: t.TempDir()}, os.Stderr)
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

// A short power-loss run (make powerloss is the long one): three cycles of power cut on every
// replica or a majority, each data directory on powerfs; nothing acknowledged may be lost.
func TestShortPowerLossRunLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("starts replica processes")
	}
	if err := powerfs.Available(); err != nil {
		t.Skipf("needs FUSE: %v", err)
	}
	o := options{power: 3, cut: "mixed", seed: 1, replicas: 3, rate: 200, keys: 16, out: t.TempDir()}
	o.duration = time.Duration(o.power)*powerCyclePeriod + 2*time.Second
	res, err := Chaos(o, os.Stderr)
	t.Log(res)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(res, "power losses") || strings.Contains(res, "acknowledged writes 0,") {
		t.Fatalf("the run cut no power or acknowledged nothing: %s", res)
	}
}

// The power-loss run's control: replicas that acknowledge before fsync (-fsync=false) must be
// caught losing acknowledged writes when the power goes on all of them, or the run proves nothing.
func TestPowerLossControlIsCaught(t *testing.T) {
	if testing.Short() {
		t.Skip("starts replica processes")
	}
	if err := powerfs.Available(); err != nil {
		t.Skipf("needs FUSE: %v", err)
	}
	o := options{power: 2, cut: "all", control: true, seed: 2, replicas: 3, rate: 200, keys: 16, out: t.TempDir(), checkTimeout: time.Minute}
	o.duration = time.Duration(o.power)*powerCyclePeriod + 2*time.Second
	res, err := Chaos(o, os.Stderr)
	t.Log(res)
	if err == nil || !strings.Contains(err.Error(), "acknowledged writes lost") {
		t.Fatalf("replicas without fsync lost nothing the check could see through 2 power losses: %v", err)
	}
}

// lostWrites names an acknowledged put that a later read missed, and blames nothing a put not
// acknowledged could explain.
func TestLostWritesFindsAcknowledgedPutsReadsMissed(t *testing.T) {
	put := func(v string, call, ret int64, class string) lincheck.Record {
		return lincheck.Record{Op: "put", Key: "k", Value: v, CallNs: call, ReturnNs: ret, Class: class}
	}
	get := func(out string, call, ret int64) lincheck.Record {
		r := lincheck.Record{Op: "get", Key: "k", Output: out, CallNs: call, ReturnNs: ret, Class: "ok", Found: out != ""}
		if out == "" {
			r.Class = "not_found"
		}
		return r
	}
	for _, tc := range []struct {
		name string
		recs []lincheck.Record
		lost int
	}{
		{"read sees the latest", []lincheck.Record{put("a", 1, 2, "ok"), put("b", 3, 4, "ok"), get("b", 5, 6)}, 0},
		{"read sees an older value", []lincheck.Record{put("a", 1, 2, "ok"), put("b", 3, 4, "ok"), get("a", 5, 6)}, 1},
		{"read sees nothing", []lincheck.Record{put("a", 1, 2, "ok"), put("b", 3, 4, "ok"), get("", 5, 6)}, 2},
		{"overlapping puts order nothing", []lincheck.Record{put("a", 1, 4, "ok"), put("b", 3, 5, "ok"), get("a", 6, 7)}, 0},
		{"the read began before the put ended", []lincheck.Record{put("a", 1, 2, "ok"), put("b", 3, 6, "ok"), get("a", 5, 7)}, 0},
		{"an unacknowledged put may land late", []lincheck.Record{put("a", 1, 2, "timeout"), put("b", 3, 4, "ok"), get("a", 5, 6)}, 0},
	} {
		acked, lost := lostWrites(tc.recs)
		if len(lost) != tc.lost {
			t.Errorf("%s: lost %v (of %d acknowledged), want %d", tc.name, lost, acked, tc.lost)
		}
	}
}
