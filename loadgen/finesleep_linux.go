package loadgen

import (
	"syscall"
	"time"
)

// fineSleep blocks the calling goroutine's thread in nanosleep(2). Go's timers wake about 1 ms late
// (they ride on the network poller's millisecond timeout), while nanosleep woke about 70 us late on
// this machine when measured (2026-11-22, idle; FIELD-NOTES has later figures): for the dispatcher, that is the difference between a median send lag of 0.55 ms
// and of about 0.1 ms, which would otherwise be added to every latency it measures. The thread is
// parked in the kernel, not spinning; the runtime hands its P to other goroutines meanwhile.
func fineSleep(d time.Duration) {
	ts := syscall.NsecToTimespec(int64(d))
	for syscall.Nanosleep(&ts, &ts) == syscall.EINTR { // resume with what is left after a signal
	}
}
