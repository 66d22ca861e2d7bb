//go:build !linux

package cluster

import (
	"errors"
	"syscall"
	"time"
)

// sysProcAttr: only Linux can tie a child's life to its parent's; elsewhere a replica outlives a
// test process that dies without running its cleanups.
func sysProcAttr() *syscall.SysProcAttr { return nil }

// processCPUTime is not implemented outside Linux.
func processCPUTime(int) (time.Duration, error) {
	return 0, errors.New("cluster: CPU time is only read on Linux")
}
