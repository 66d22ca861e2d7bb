package loadgen

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/sofadb/sofadb/kv"
)

// BenchmarkPlanNext is the dispatcher's cost to draw one step (arrival, op, Zipfian key).
func BenchmarkPlanNext(b *testing.B) {
	s, _ := NewSchedule(Poisson, 100_000, 1)
	p, err := NewPlan(s, Workload{Mix: MixYCSBA, Keys: 1_000_000, KeyDist: KeysZipf, ZipfTheta: 0.99, KeyBytes: 16, ValueBytes: 128}, 1)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		p.Next()
	}
}

// BenchmarkZipfRank is one Zipfian draw.
func BenchmarkZipfRank(b *testing.B) {
	z, _ := NewZipf(1_000_000, 0.99)
	rng := rand.New(rand.NewPCG(1, 2))
	b.ReportAllocs()
	for b.Loop() {
		z.Rank(rng.Float64())
	}
}

// BenchmarkRecord is a worker's cost to record one completion in its interval and summary sets.
func BenchmarkRecord(b *testing.B) {
	cur, sum := new(recSet), new(recSet)
	c := &Call{Step: Step{Op: kv.OpPut, DueNs: 1000}, SentNs: 2000}
	b.ReportAllocs()
	i := int64(0)
	for b.Loop() {
		i++
		c.DoneNs = 50_000 + i%1_000_000
		cur.record(c)
		sum.record(c)
	}
}

// BenchmarkWorkerFormat is a worker's cost to format a call's key and value before issuing it.
func BenchmarkWorkerFormat(b *testing.B) {
	w := Workload{Mix: MixWrite, Keys: 1_000_000, KeyBytes: 16, ValueBytes: 128}
	filler := makeFiller(1)
	c := new(Call)
	b.ReportAllocs()
	b.SetBytes(16 + 128)
	for i := uint64(0); b.Loop(); i++ {
		c.Key = w.AppendKey(c.Key[:0], i%w.Keys)
		c.Value = w.AppendValue(c.Value[:0], i, filler)
	}
}

// BenchmarkRunInstant drives a whole run against the instant fake at 200k ops/s for b.N requests'
// worth of time and reports the generator's CPU per request (ns/op is wall time per request).
func BenchmarkRunInstant(b *testing.B) {
	if testing.Short() {
		b.Skip("runs for seconds")
	}
	const rate = 200_000
	d := time.Duration(float64(b.N) / rate * float64(time.Second))
	if d < 100*time.Millisecond {
		d = 100 * time.Millisecond
	}
	b.ResetTimer()
	s, err := Run(context.Background(), Config{RateOpsPerSec: rate, Duration: d, MaxInflight: 16384,
		NewTarget: func(c *Clock) (Target, error) { return NewFake(c), nil },
		Workload:  Workload{Mix: MixWrite, Keys: 100_000, KeyBytes: 16, ValueBytes: 128}})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(s.LagP99Ns)/1e6, "lag-p99-ms")
}
