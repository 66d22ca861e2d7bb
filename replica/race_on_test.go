//go:build race

package replica_test

// raceEnabled says the test binary runs under the race detector, several times slower.
const raceEnabled = true
