package cluster

import "syscall"

// sysProcAttr makes the kernel kill a replica when the process that started it dies (a test that
// panics or times out), so no orphan keeps its ports and data directory busy.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
