package cluster

import "syscall"

// KillBehindBack kills p without telling the launcher, as a crash would.
func KillBehindBack(p *Proc) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd.Process.Signal(syscall.SIGKILL)
}
