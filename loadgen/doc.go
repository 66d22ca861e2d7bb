// Package loadgen is SofaDB's open-loop load generator: it offers a fixed rate of requests to a
// key-value service whatever the service does, and measures every request from the moment it was
// due, so a stall in the service shows in the percentiles instead of silently slowing the client
// down (coordinated omission, the flaw of closed-loop benchmarks).
//
// The pieces, in the order a request meets them:
//
//   - Plan: a seeded, replayable list of requests (intended send time, operation, key), built from an
//     arrival Schedule (uniform or Poisson) and a Workload (mix of reads and writes over uniform or
//     Zipfian keys).
//   - the dispatcher (one goroutine): wakes up, takes every request whose intended time has passed,
//     waits for an in-flight slot if the bound is reached, and hands it to a worker. It never sleeps
//     once per request: timers here resolve to about a millisecond, so it sends in bursts of whatever
//     is due.
//   - workers (a few goroutines): issue requests on a Target and record their completions in their own
//     per-interval HdrHistograms, which nobody else touches while they own them.
//   - the collector (one goroutine): at every interval boundary swaps each worker's histograms for
//     empty ones, merges them, prints progress, and writes the interval log and time series.
//
// Three durations are recorded per request, all in nanoseconds: latency (completion - intended send),
// service time (completion - actual send) and lag (actual send - intended send). Latency is the
// number a user of the service would see; lag is how far the generator itself fell behind, and a run
// whose lag or achieved rate says the generator could not keep up is marked invalid in its summary.
package loadgen
