package loadgen

import (
	"fmt"
	"net/url"
	"time"

	"github.com/sofadb/sofadb/kv"
)

// Fake is an in-process target whose behaviour is known exactly, for testing the generator and for
// measuring the generator's own ceiling. It answers every call after ServiceNs of work; the work
// happens only outside stalls, windows of StallForNs that start every StallEveryNs on the run clock
// (a frozen server: a call that arrives or is being worked on during a stall finishes that much
// later). It stores nothing: reads answer OK with an empty value, so only its write-only histories
// make sense to a linearizability checker.
//
// Completion times are computed, not observed: a call is stamped done at exactly the instant the
// model says, and delivered when a timer fires at or after it. The generator's accounting is then
// tested against exact expectations, free of this machine's millisecond timer overshoot; the lag,
// which is the generator's own doing, stays real.
type Fake struct {
	clock        *Clock
	ServiceNs    int64
	StallEveryNs int64
	StallForNs   int64
	// IssueCostNs is CPU the issuing goroutine burns per call, modelling a client library too slow
	// for the rate: a test starves the generator with it.
	IssueCostNs int64
}

// NewFake builds a fake target on the run's clock.
func NewFake(clock *Clock) *Fake { return &Fake{clock: clock} }

func fakeFromQuery(clock *Clock, q url.Values) (*Fake, error) {
	f := NewFake(clock)
	for key, field := range map[string]*int64{"service": &f.ServiceNs, "stall": &f.StallForNs,
		"stall-every": &f.StallEveryNs, "issue-cost": &f.IssueCostNs} {
		if v := q.Get(key); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 {
				return nil, fmt.Errorf("%w: fake %s=%q: want a duration like 1ms", ErrBadTarget, key, v)
			}
			*field = int64(d)
		}
	}
	if (f.StallForNs > 0) != (f.StallEveryNs > 0) || (f.StallEveryNs > 0 && f.StallForNs+f.ServiceNs >= f.StallEveryNs) {
		return nil, fmt.Errorf("%w: fake stall needs stall and stall-every, with stall + service < stall-every", ErrBadTarget)
	}
	return f, nil
}

// Go completes c per the model: inline when the answer is due at once (the instant target), else
// from a timer.
func (f *Fake) Go(c *Call, done chan<- *Call) {
	if f.IssueCostNs > 0 {
		spin(f.IssueCostNs)
	}
	now := f.clock.Now()
	c.SentNs = now
	c.Class = ClassOK
	if c.Op == kv.OpGet && c.KeepOutput {
		c.Output = c.Output[:0]
	}
	doneNs := f.finishAt(now)
	c.DoneNs = doneNs
	if doneNs <= now {
		done <- c
		return
	}
	time.AfterFunc(time.Duration(doneNs-now), func() { done <- c })
}

// finishAt is when a call that arrives at sentNs is answered.
func (f *Fake) finishAt(sentNs int64) int64 {
	if f.StallEveryNs == 0 {
		return sentNs + f.ServiceNs
	}
	start := sentNs
	if phase := start % f.StallEveryNs; phase < f.StallForNs {
		start += f.StallForNs - phase // arrived during a stall: work starts when it ends
	}
	end := start + f.ServiceNs
	if next := start - start%f.StallEveryNs + f.StallEveryNs; end > next {
		end += f.StallForNs // the work ran into the next stall
	}
	return end
}

// Close does nothing: the fake holds no resources.
func (f *Fake) Close() error { return nil }

// spin burns CPU for about ns nanoseconds.
func spin(ns int64) {
	deadline := time.Now().Add(time.Duration(ns))
	for time.Now().Before(deadline) {
	}
}
