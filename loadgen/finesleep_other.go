//go:build !linux

package loadgen

import "time"

// fineSleep falls back to the runtime's timer where nanosleep(2) is not wired up.
func fineSleep(d time.Duration) { time.Sleep(d) }
