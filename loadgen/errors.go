package loadgen

import "errors"

// Sentinel errors: callers (the command, the bench runner) tell configuration mistakes from run
// failures with errors.Is.
var (
	// ErrBadConfig rejects a configuration before anything is sent: a bad flag value or combination.
	ErrBadConfig = errors.New("loadgen: bad configuration")
	// ErrNoSuccess ends a run in which nothing succeeded in its first Config.FailFastAfter.
	ErrNoSuccess = errors.New("loadgen: target unusable")
	// ErrBadTarget rejects a target URL that names no known scheme or has no usable address.
	ErrBadTarget = errors.New("loadgen: bad target")
	// ErrZipfTheta rejects a Zipf exponent outside (0, 1), the range Gray et al.'s generator covers.
	ErrZipfTheta = errors.New("loadgen: zipf theta must be in (0, 1)")
	// ErrPreload means the preload phase could not write every key, so reads would miss.
	ErrPreload = errors.New("loadgen: preload failed")
	// ErrClosed is the outcome of a call issued on a target that is closed.
	ErrClosed = errors.New("loadgen: target closed")
)
