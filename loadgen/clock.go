package loadgen

import "time"

// Clock turns the monotonic clock into nanoseconds since the run's start. Every timestamp of a run
// (intended, sent, done) is taken from one Clock, so differences between them are exact and immune
// to wall-clock steps; WallStart ties them back to wall time for the interval log.
type Clock struct {
	start time.Time
}

// NewClock starts a clock at start, which should carry a monotonic reading (as time.Now does).
func NewClock(start time.Time) *Clock { return &Clock{start: start} }

// Now is the time since the clock's start in nanoseconds.
func (c *Clock) Now() int64 { return int64(time.Since(c.start)) }

// At converts a clock reading back to a time.Time, for timers that must fire at a planned instant.
func (c *Clock) At(ns int64) time.Time { return c.start.Add(time.Duration(ns)) }

// WallStart is the wall-clock time of the clock's zero.
func (c *Clock) WallStart() time.Time { return c.start }
