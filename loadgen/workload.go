package loadgen

import (
	"fmt"
	"math/rand/v2"
	"strconv"

	"github.com/sofadb/sofadb/kv"
)

// Mix is the share of reads in a workload; the rest are writes (puts). The named mixes are the ones
// a consensus benchmark reports: write-only is the consensus path, read-only shows how reads are
// served (through the log or from a lease), and YCSB A/B/C let numbers be compared with other stores.
type Mix struct {
	Name         string
	ReadFraction float64
}

// Named workloads (--workload).
var (
	MixWrite = Mix{"write", 0}
	MixRead  = Mix{"read", 1}
	MixYCSBA = Mix{"ycsb-a", 0.5}
	MixYCSBB = Mix{"ycsb-b", 0.95}
	MixYCSBC = Mix{"ycsb-c", 1}
)

// ParseMix reads the --workload flag.
func ParseMix(s string) (Mix, error) {
	for _, m := range []Mix{MixWrite, MixRead, MixYCSBA, MixYCSBB, MixYCSBC} {
		if m.Name == s {
			return m, nil
		}
	}
	return Mix{}, fmt.Errorf("%w: workload %q (want write, read, ycsb-a, ycsb-b or ycsb-c)", ErrBadConfig, s)
}

// KeyDist is how keys are chosen: uniform spreads load over every key; Zipfian concentrates it on a
// few hot keys, which is what exposes conflicts and hot spots.
type KeyDist uint8

// Key distributions (--keys-dist).
const (
	KeysUniform KeyDist = iota + 1
	KeysZipf
)

// ParseKeyDist reads the --key-dist flag.
func ParseKeyDist(s string) (KeyDist, error) {
	switch s {
	case "uniform":
		return KeysUniform, nil
	case "zipf", "zipfian":
		return KeysZipf, nil
	}
	return 0, fmt.Errorf("%w: key distribution %q (want uniform or zipf)", ErrBadConfig, s)
}

// String is the --key-dist spelling, for the manifest.
func (d KeyDist) String() string {
	if d == KeysZipf {
		return "zipf"
	}
	return "uniform"
}

// Workload says what requests look like. Sizes are in bytes.
type Workload struct {
	Mix        Mix
	Keys       uint64  // number of distinct keys
	KeyDist    KeyDist // how keys are drawn
	ZipfTheta  float64 // skew for KeysZipf, in (0, 1); YCSB uses 0.99
	KeyBytes   int     // every key has exactly this size
	ValueBytes int     // every written value has exactly this size
}

// keyPrefix starts every key, so keys written by the generator are recognisable in a store's dump.
const keyPrefix = "k"

// Validate checks sizes fit: a key must hold its prefix and the decimal index of the largest key.
func (w *Workload) Validate() error {
	if w.Keys < 1 {
		return fmt.Errorf("%w: --keys must be at least 1", ErrBadConfig)
	}
	digits := len(strconv.FormatUint(w.Keys-1, 10))
	if w.KeyBytes < len(keyPrefix)+digits {
		return fmt.Errorf("%w: --key-size %d cannot hold %d keys (need %d bytes)", ErrBadConfig,
			w.KeyBytes, w.Keys, len(keyPrefix)+digits)
	}
	if w.ValueBytes < 1 && w.Mix.ReadFraction < 1 {
		return fmt.Errorf("%w: --value-size must be at least 1 byte", ErrBadConfig)
	}
	if w.Mix.ReadFraction < 0 || w.Mix.ReadFraction > 1 {
		return fmt.Errorf("%w: read fraction %v", ErrBadConfig, w.Mix.ReadFraction)
	}
	return nil
}

// AppendKey appends key number i, zero-padded to exactly KeyBytes ("k0000000000000042"), so that
// every key has the same size and sorts in index order.
func (w *Workload) AppendKey(dst []byte, i uint64) []byte {
	var digits [20]byte
	d := strconv.AppendUint(digits[:0], i, 10)
	dst = append(dst, keyPrefix...)
	for range w.KeyBytes - len(keyPrefix) - len(d) {
		dst = append(dst, '0')
	}
	return append(dst, d...)
}

// AppendValue appends a value of exactly ValueBytes for write number id: its first 16 bytes are id in
// hex, so every value written in a run is distinct (what a linearizability checker needs to tell
// writes apart), and the rest is filler, which callers draw at random once per run so that a store
// that compresses cannot make the values vanish.
func (w *Workload) AppendValue(dst []byte, id uint64, filler []byte) []byte {
	const hex = "0123456789abcdef"
	n := w.ValueBytes
	for shift := 60; shift >= 0 && n > 0; shift -= 4 {
		dst = append(dst, hex[id>>uint(shift)&0xf])
		n--
	}
	for n > 0 {
		k := min(n, len(filler))
		dst = append(dst, filler[:k]...)
		n -= k
	}
	return dst
}

// Step is one planned request: when it is due, what it does, to which key.
type Step struct {
	ID       uint64 // position in the plan, unique within a run
	DueNs    int64  // intended send time, ns after the run's start
	Op       kv.Op
	KeyIndex uint64 // formatted by Workload.AppendKey
}

// Plan is the replayable request stream of a run: the same (schedule, workload, seed) always yields
// the same steps. Arrival times and operations draw from separate random streams, so changing the
// workload does not move a single arrival. Not safe for concurrent use: the dispatcher owns it.
type Plan struct {
	sched *Schedule
	w     Workload
	rng   *rand.Rand
	zipf  *Zipf
	next  uint64
}

// NewPlan combines an arrival schedule with a workload.
func NewPlan(sched *Schedule, w Workload, seed uint64) (*Plan, error) {
	if err := w.Validate(); err != nil {
		return nil, err
	}
	p := &Plan{sched: sched, w: w, rng: rand.New(rand.NewPCG(seed, 0x0b5_4e1ec7))}
	if w.KeyDist == KeysZipf {
		z, err := NewZipf(w.Keys, w.ZipfTheta)
		if err != nil {
			return nil, err
		}
		p.zipf = z
	}
	return p, nil
}

// Next returns the next step of the plan.
func (p *Plan) Next() Step {
	s := Step{ID: p.next, DueNs: p.sched.Next(), Op: kv.OpPut}
	p.next++
	if p.w.Mix.ReadFraction >= 1 || (p.w.Mix.ReadFraction > 0 && p.rng.Float64() < p.w.Mix.ReadFraction) {
		s.Op = kv.OpGet
	}
	if p.zipf != nil {
		s.KeyIndex = p.zipf.Rank(p.rng.Float64())
	} else {
		s.KeyIndex = p.rng.Uint64N(p.w.Keys)
	}
	return s
}

// PeekDueNs is the intended time of the next step, without consuming it.
func (p *Plan) PeekDueNs() int64 { return p.sched.Peek() }
