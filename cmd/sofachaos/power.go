package main

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/sofadb/sofadb/bench/cluster"
	"github.com/sofadb/sofadb/loadgen/lincheck"
	"github.com/sofadb/sofadb/powerfs"
)

// powerCyclePeriod is the length of one power-loss cycle: the power goes 1-2.5 s into it, stays
// off 0.1-0.6 s, and the replicas restart on what their disks kept.
const powerCyclePeriod = 4 * time.Second

// powerKinds are the power-loss cycles' kinds, in the order the summary lists them.
var powerKinds = []string{"power-all", "power-majority"}

// powerDisks mounts each replica's data directory on a power-loss file system of its own.
type powerDisks struct {
	mu  sync.Mutex
	fss map[int]*powerfs.FS
}

func newPowerDisks() (*powerDisks, error) {
	if err := powerfs.Available(); err != nil {
		return nil, fmt.Errorf("power-loss runs need FUSE: %w", err)
	}
	return &powerDisks{fss: map[int]*powerfs.FS{}}, nil
}

func (d *powerDisks) Mount(id int, dir string) error {
	fsys := powerfs.New()
	if err := fsys.Mount(dir); err != nil {
		return err
	}
	d.mu.Lock()
	d.fss[id] = fsys
	d.mu.Unlock()
	return nil
}

func (d *powerDisks) Unmount(id int, dir string) error { return d.fs(id).Unmount() }

func (d *powerDisks) fs(id int) *powerfs.FS {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.fss[id]
}

// summary says what the file systems saw, all replicas together.
func (d *powerDisks) summary() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var t powerfs.Stats
	for _, fsys := range d.fss {
		st := fsys.Stats()
		t.FileSyncs += st.FileSyncs
		t.DirSyncs += st.DirSyncs
		t.PowerLosses += st.PowerLosses
		t.DroppedBytes += st.DroppedBytes
	}
	return fmt.Sprintf("disks: %d file syncs, %d directory syncs, %d power losses (per replica), %.1f MiB written and never synced dropped",
		t.FileSyncs, t.DirSyncs, t.PowerLosses, float64(t.DroppedBytes)/(1<<20))
}

// powerCycles runs o.power power-loss cycles, one every powerCyclePeriod: the power goes on every
// replica or on a random majority (o.cut) at once, they are killed, their disks keep only what was
// synced, and they restart on that. A replica that cannot restart ends the run with the reason:
// refusing to start is safe, but it is not what a power loss should cause.
func powerCycles(c *cluster.Cluster, disks *powerDisks, o options, logf func(string, ...any)) (map[string]int, error) {
	rng := rand.New(rand.NewPCG(o.seed, 0x90e7))
	events := map[string]int{}
	start := time.Now()
	ms := func(lo, hi int) time.Duration { return time.Duration(lo+rng.IntN(hi-lo+1)) * time.Millisecond }
	for i := range o.power {
		at := start.Add(time.Duration(i)*powerCyclePeriod + ms(1000, 2500))
		off := ms(100, 600)
		victims := c.IDs()
		kind := "power-all"
		if o.cut == "majority" || (o.cut == "mixed" && rng.IntN(2) == 0) {
			rng.Shuffle(len(victims), func(a, b int) { victims[a], victims[b] = victims[b], victims[a] })
			victims = victims[:c.N()/2+1]
			slices.Sort(victims)
			kind = "power-majority"
		}
		if time.Since(start) > o.duration-2*time.Second {
			break // restarts ran late: the workload is ending
		}
		time.Sleep(time.Until(at))
		events[kind]++
		logf("%v: power loss #%d on replicas %v, off for %v", time.Since(start).Round(time.Millisecond), i+1, victims, off)
		for _, id := range victims {
			disks.fs(id).PowerLoss()
		}
		for _, id := range victims {
			if err := c.Kill(id); err != nil {
				logf("kill %d: %v", id, err)
			}
		}
		time.Sleep(off)
		for _, id := range victims {
			if err := disks.fs(id).Remount(); err != nil {
				return events, fmt.Errorf("power loss #%d: remount the disk of replica %d: %w", i+1, id, err)
			}
		}
		for _, id := range victims {
			if err := c.Restart(id); err != nil {
				return events, fmt.Errorf("power loss #%d: replica %d did not restart on what its disk kept: %w", i+1, id, err)
			}
		}
	}
	return events, nil
}

// lostWrites finds acknowledged writes that reads show lost: a read (during the run, or a final
// one) that returns the value of a put w, or no value, when another put w2 on the key was
// acknowledged after w was and before the read was sent, has lost w2 (the workload deletes
// nothing; a put not acknowledged could have taken effect at any time and orders nothing). It
// returns how many puts were acknowledged and the lost ones as "key=value". Porcupine refutes
// such a history too; this names what was lost, and does not give up on long histories.
func lostWrites(recs []lincheck.Record) (acked int, lost []string) {
	type keyRecs struct {
		puts  []lincheck.Record
		reads []lincheck.Record
		del   bool
	}
	byKey := map[string]*keyRecs{}
	at := func(k string) *keyRecs {
		if byKey[k] == nil {
			byKey[k] = &keyRecs{}
		}
		return byKey[k]
	}
	for _, r := range recs {
		switch {
		case r.Op == "put":
			at(r.Key).puts = append(at(r.Key).puts, r)
			if r.Class == "ok" {
				acked++
			}
		case r.Op == "delete":
			at(r.Key).del = true
		case r.Op == "get" && (r.Class == "ok" || r.Class == "not_found"):
			at(r.Key).reads = append(at(r.Key).reads, r)
		}
	}
	keys := slices.Sorted(maps.Keys(byKey))
	for _, k := range keys {
		kr := byKey[k]
		if kr.del {
			continue
		}
		byValue := map[string]*lincheck.Record{}
		for i := range kr.puts {
			byValue[kr.puts[i].Value] = &kr.puts[i]
		}
		seen := map[string]bool{}
		for _, r := range kr.reads {
			var after int64 = -1 // acknowledged puts sent after this and done before r are lost
			if r.Found {
				w := byValue[r.Output]
				if w == nil || w.Class != "ok" {
					continue // a value nobody wrote is porcupine's to refute; one not acknowledged orders nothing
				}
				after = w.ReturnNs
			}
			for _, p := range kr.puts {
				if p.Class == "ok" && p.CallNs > after && p.ReturnNs < r.CallNs && !seen[p.Value] {
					seen[p.Value] = true
					lost = append(lost, k+"="+p.Value)
				}
			}
		}
	}
	return acked, lost
}
