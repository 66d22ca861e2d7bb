package replica

import (
	"context"
	"fmt"
	"syscall"
	"time"
)

// A full file system killed the replica with SIGBUS (badger's memtable is a memory-mapped sparse
// file: a page it cannot back on ENOSPC faults), instead of the fenced, clearly reported state a
// failed disk gets (issue 12, item 3). So the replica watches the free space of its data
// directory's file system and fences itself while there is still room: below DiskHeadroomBytes
// (by default two memtables and 64 MiB, enough for the memtable being filled and the next one),
// it stops acknowledging and says why in its log and /status. Once space is freed, a restart
// rejoins (the fence is not persisted).

// diskCheckInterval is how often free space is read (one statfs).
const diskCheckInterval = time.Second

// defaultHeadroom is the free space below which the replica fences itself, for a memtable size.
func defaultHeadroom(memTableBytes int64) int64 { return 2*memTableBytes + 64<<20 }

// statfsFree is the space an unprivileged writer can still use on dir's file system.
func statfsFree(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// watchDisk reads the free space now and every diskCheckInterval, and hands the loop the reason
// to fence once it is below the headroom. It returns after that, or when ctx ends.
func (s *Server) watchDisk(ctx context.Context) {
	free := s.cfg.FreeBytes
	if free == nil {
		free = statfsFree
	}
	t := time.NewTicker(diskCheckInterval)
	defer t.Stop()
	for {
		n, err := free(s.cfg.DataDir)
		if err != nil {
			s.log.Warn("cannot read the data directory's free space", "dir", s.cfg.DataDir, "err", err)
		} else if int64(n) < s.cfg.DiskHeadroomBytes {
			err := fmt.Errorf("disk nearly full: %d MiB free on %s, below the headroom of %d MiB (-disk-headroom); "+
				"fenced before the file system fills; free space and restart",
				n>>20, s.cfg.DataDir, s.cfg.DiskHeadroomBytes>>20)
			s.log.Error("DISK NEARLY FULL: fencing this replica", "free_mib", n>>20, "headroom_mib", s.cfg.DiskHeadroomBytes>>20)
			select {
			case s.diskLow <- err:
			case <-ctx.Done():
			}
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
