package loadgen

import (
	"fmt"
	"math/rand/v2"
)

// Arrival is the shape of the arrival process. Uniform is what wrk2 offers and makes runs easy to
// compare; Poisson is what many independent clients produce, and exposes how a service copes with
// bursts that a uniform schedule never contains.
type Arrival uint8

// Arrival processes.
const (
	Uniform Arrival = iota + 1
	Poisson
)

// ParseArrival reads the --arrival flag.
func ParseArrival(s string) (Arrival, error) {
	switch s {
	case "uniform":
		return Uniform, nil
	case "poisson":
		return Poisson, nil
	}
	return 0, fmt.Errorf("%w: arrival %q (want poisson or uniform)", ErrBadConfig, s)
}

func (a Arrival) String() string {
	switch a {
	case Uniform:
		return "uniform"
	case Poisson:
		return "poisson"
	}
	return fmt.Sprintf("arrival(%d)", uint8(a))
}

// Schedule yields intended send times in nanoseconds after the start, in increasing order. It is a
// pure function of (arrival, rate, seed): two schedules built alike yield the same times, which is
// what makes a run replayable. Not safe for concurrent use; the dispatcher owns it.
type Schedule struct {
	arrival   Arrival
	gapNs     float64 // mean gap between arrivals
	nextNs    float64 // kept in float so that uniform gaps like 1e9/3 do not drift by truncation
	index     uint64
	rng       *rand.Rand
	rateOpsPS float64
}

// NewSchedule builds the schedule of an arrival process at rateOpsPerSec.
func NewSchedule(a Arrival, rateOpsPerSec float64, seed uint64) (*Schedule, error) {
	if !(rateOpsPerSec > 0) || rateOpsPerSec > 1e9 {
		return nil, fmt.Errorf("%w: rate %v ops/s (want 0 < rate <= 1e9)", ErrBadConfig, rateOpsPerSec)
	}
	if a != Uniform && a != Poisson {
		return nil, fmt.Errorf("%w: arrival %v", ErrBadConfig, a)
	}
	s := &Schedule{arrival: a, gapNs: 1e9 / rateOpsPerSec, rateOpsPS: rateOpsPerSec,
		rng: rand.New(rand.NewPCG(seed, 0x5ced_a771_7a15))} // second word: a fixed stream id for arrivals
	if a == Poisson {
		s.nextNs = s.rng.ExpFloat64() * s.gapNs
	}
	return s, nil
}

// Next returns the next intended send time in nanoseconds since the start.
func (s *Schedule) Next() int64 {
	t := int64(s.nextNs)
	s.index++
	if s.arrival == Uniform {
		s.nextNs = float64(s.index) * s.gapNs
	} else {
		s.nextNs += s.rng.ExpFloat64() * s.gapNs
	}
	return t
}

// Peek returns the intended time Next would return, without consuming it.
func (s *Schedule) Peek() int64 { return int64(s.nextNs) }
