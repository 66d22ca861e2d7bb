//go:build !linux

package cluster

import "syscall"

// sysProcAttr: only Linux can tie a child's life to its parent's; elsewhere a replica outlives a
// test process that dies without running its cleanups.
func sysProcAttr() *syscall.SysProcAttr { return nil }
