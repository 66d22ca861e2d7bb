package replica

import (
	"context"
	"runtime/debug"
	"time"
)

// memoryCheckInterval is how often the memory limit is brought in line with the state's size.
const memoryCheckInterval = time.Second

// memoryLimitFor is the runtime's soft memory limit for a replica with this budget whose last
// snapshot was snapBytes: the budget, the state, and the state's encoded copy while a snapshot is
// saved or sent.
func memoryLimitFor(budget, snapBytes int64) int64 { return budget + 2*max(snapBytes, 0) }

// keepMemoryLimit holds the Go runtime's soft memory limit at memoryLimitFor(MemoryBudgetBytes,
// the last snapshot's size), checked every memoryCheckInterval; it changes the limit only when
// it moves by more than 1/16, and publishes it for /metrics. It returns when ctx ends.
func (s *Server) keepMemoryLimit(ctx context.Context) {
	t := time.NewTicker(memoryCheckInterval)
	defer t.Stop()
	for {
		want := memoryLimitFor(s.cfg.MemoryBudgetBytes, s.drv.Stats().SnapshotBytes.Load())
		if cur := s.stats.memLimit.Load(); want > cur+cur/16 || want < cur-cur/16 {
			debug.SetMemoryLimit(want)
			s.stats.memLimit.Store(want)
			s.log.Debug("memory limit set", "limit_mib", want>>20, "budget_mib", s.cfg.MemoryBudgetBytes>>20)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
