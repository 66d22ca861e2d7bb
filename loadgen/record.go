package loadgen

import (
	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram range and precision: 1 µs to 1 h at 3 significant figures (about 160 KB each). Values are
// recorded in nanoseconds; the lowest discernible value of 1 µs keeps the histogram small while still
// resolving loopback round trips (15 µs here). A value above an hour is clamped to the top and counted
// in overflow, never dropped.
const (
	histLowestNs  = 1_000
	histHighestNs = 3_600_000_000_000
	histSigFigs   = 3
)

func newHist() *hdr.Histogram { return hdr.New(histLowestNs, histHighestNs, histSigFigs) }

// opStats is what one recorder knows about one operation type.
type opStats struct {
	lat    *hdr.Histogram // latency of successes
	svc    *hdr.Histogram // service time of successes
	errLat *hdr.Histogram // latency of failures, all classes together
	issued int64          // calls handed to the target
	class  [numClasses]int64
}

// recSet is a set of histograms and counters filled by exactly one goroutine at a time. Workers own
// one per interval and one for the summary; ownership moves to the collector by channel, never by
// sharing (hdrhistogram-go is not goroutine-safe). Histograms are created on first use, so an
// operation a workload never issues costs nothing.
type recSet struct {
	ops      [numOps]opStats
	lag      *hdr.Histogram // actual send - intended send, every sent call
	overflow int64          // values clamped because they exceeded histHighestNs
}

func recordInto(h **hdr.Histogram, v int64, overflow *int64) {
	if *h == nil {
		*h = newHist()
	}
	if v < 0 {
		v = 0 // cannot happen with one monotonic clock; clamp rather than lose the count
	}
	if (*h).RecordValue(v) != nil {
		*overflow++
		_ = (*h).RecordValue((*h).HighestTrackableValue())
	}
}

// issued counts a call handed to the target.
func (s *recSet) issued(c *Call) { s.ops[c.Op-1].issued++ }

// record files a completed call under its operation and class.
func (s *recSet) record(c *Call) {
	o := &s.ops[c.Op-1]
	o.class[c.Class]++
	if c.Class.Success() {
		recordInto(&o.lat, c.LatencyNs(), &s.overflow)
		recordInto(&o.svc, c.ServiceNs(), &s.overflow)
	} else {
		recordInto(&o.errLat, c.LatencyNs(), &s.overflow)
	}
	if c.SentNs != 0 {
		recordInto(&s.lag, c.LagNs(), &s.overflow)
	}
}

// outcomes counts the successes and failures recorded in s.
func (s *recSet) outcomes() (ok, failed int64) {
	for i := range s.ops {
		for k, n := range s.ops[i].class {
			if Class(k).Success() {
				ok += n
			} else {
				failed += n
			}
		}
	}
	return ok, failed
}

func mergeHist(dst **hdr.Histogram, src *hdr.Histogram) {
	if src == nil || src.TotalCount() == 0 {
		return
	}
	if *dst == nil {
		*dst = newHist()
	}
	(*dst).Merge(src)
}

// merge adds src into s. Both must be owned by the caller.
func (s *recSet) merge(src *recSet) {
	for i := range s.ops {
		d, o := &s.ops[i], &src.ops[i]
		mergeHist(&d.lat, o.lat)
		mergeHist(&d.svc, o.svc)
		mergeHist(&d.errLat, o.errLat)
		d.issued += o.issued
		for k := range d.class {
			d.class[k] += o.class[k]
		}
	}
	mergeHist(&s.lag, src.lag)
	s.overflow += src.overflow
}

// reset empties s for reuse, keeping its histograms' memory.
func (s *recSet) reset() {
	for i := range s.ops {
		o := &s.ops[i]
		for _, h := range []*hdr.Histogram{o.lat, o.svc, o.errLat} {
			if h != nil {
				h.Reset()
			}
		}
		o.issued, o.class = 0, [numClasses]int64{}
	}
	if s.lag != nil {
		s.lag.Reset()
	}
	s.overflow = 0
}

// completed is the number of calls recorded in s, by class.
func (s *recSet) completed() (ok, failed int64) {
	for i := range s.ops {
		for k, n := range s.ops[i].class {
			if Class(k).Success() {
				ok += n
			} else {
				failed += n
			}
		}
	}
	return ok, failed
}

// allLatency merges the success latencies of every operation into one histogram (nil when empty).
func (s *recSet) allLatency() *hdr.Histogram {
	var all *hdr.Histogram
	for i := range s.ops {
		mergeHist(&all, s.ops[i].lat)
	}
	return all
}
