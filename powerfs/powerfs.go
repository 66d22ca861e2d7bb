// Package powerfs is a file system for power-loss tests: a FUSE mount (go-fuse) that keeps
// everything in memory and remembers, besides what was written, what was made durable: a
// file's data as of its last fsync (or fdatasync, or msync of a mapping), and a directory's names
// as of its last fsync. PowerLoss throws the rest away, as a machine losing power would lose its
// page cache; what a process believed written but never synced is gone when it is remounted.
//
// Its model is the strict one POSIX allows and some file systems and disks deliver: a new file's
// name, a rename or a removal is durable only once its directory is synced, not when the file is.
// (ext4 in its default mode also commits a new file's name when the file itself is synced; code
// that counts on that loses files here, which is what a test built on this is for.)
//
//	fsys := powerfs.New()
//	err := fsys.Mount(dir)   // then run the program on dir
//	...
//	fsys.PowerLoss()         // from now on every write fails; the unsynced state is dropped
//	kill the program
//	err = fsys.Remount()     // dir again, holding only what was durable
//
// Files and directories only: no symlinks, hard links, extended attributes or special files.
package powerfs

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// FS is one power-loss file system; mount it once, then PowerLoss and Remount as often as needed.
// Its methods are safe for concurrent use.
type FS struct {
	mu      sync.Mutex
	root    *mdir
	lost    bool // power is off: every change fails with EIO until Remount
	nextIno uint64
	dir     string
	srv     *fuse.Server
	// Stats, under mu.
	syncs, dirSyncs, losses int
	droppedBytes            int64
}

// mfile is a regular file's content: as written, and as of its last sync.
type mfile struct {
	ino           uint64
	data, durable []byte
	synced        bool // durable holds a sync (a file never synced has no durable content)
}

// mdir is a directory: its current names live in the mounted inode tree; durable is what its
// last fsync recorded (nil until then).
type mdir struct {
	ino     uint64
	durable map[string]any // *mfile or *mdir
	mtime   time.Time      // the last change of its names (programs watch it to know when to sync)
}

// New returns a file system holding an empty root directory, durable as such.
func New() *FS {
	f := &FS{nextIno: 2}
	f.root = &mdir{ino: 1, durable: map[string]any{}, mtime: time.Now()}
	return f
}

// Mount mounts the file system on dir (an existing, empty directory). It needs /dev/fuse and the
// right to mount (root, or fusermount): see Available.
func (f *FS) Mount(dir string) error {
	f.mu.Lock()
	f.dir = dir
	f.mu.Unlock()
	return f.mount()
}

func (f *FS) mount() error {
	root := &dirNode{fsys: f, d: f.root}
	timeout := time.Duration(0) // the kernel asks again each time: names and sizes change under it at Remount
	opts := &fs.Options{EntryTimeout: &timeout, AttrTimeout: &timeout, NegativeTimeout: &timeout,
		MountOptions: fuse.MountOptions{FsName: "powerfs", Name: "powerfs", DirectMount: true, MaxBackground: 32,
			DisableXAttrs: true}}
	srv, err := fs.Mount(f.dir, root, opts)
	if err != nil {
		// Without the right to mount directly, go-fuse falls back to fusermount itself; a second
		// failure is the answer.
		return fmt.Errorf("powerfs: mount %s: %w", f.dir, err)
	}
	f.mu.Lock()
	f.srv = srv
	f.mu.Unlock()
	return nil
}

// Available says whether this process can mount a FUSE file system here, and if not, why: for
// tests to skip with a clear message.
func Available() error {
	fd, err := syscall.Open("/dev/fuse", syscall.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("powerfs: /dev/fuse: %w", err)
	}
	syscall.Close(fd)
	return nil
}

// PowerLoss cuts the power: from now on every change (write, truncate, create, rename, remove,
// sync) fails with EIO, and the state that was never synced is dropped. Kill the program using
// the file system, then Remount.
func (f *FS) PowerLoss() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lost = true
}

// Remount unmounts the file system (after PowerLoss, with whatever the dead program left dirty in
// the kernel refused), brings every file and directory back to what was durable, and mounts it
// again on the same directory. Files and names that were never synced are gone.
func (f *FS) Remount() error {
	f.mu.Lock()
	if f.dir == "" {
		f.mu.Unlock()
		return ErrNotMounted
	}
	srv, lost := f.srv, f.lost
	f.lost = true // nothing the kernel flushes at unmount counts
	f.mu.Unlock()
	if srv != nil {
		if err := unmount(srv); err != nil {
			return err
		}
	}
	f.mu.Lock()
	if lost {
		f.losses++
	}
	f.dropped(f.root)
	f.lost = false
	f.mu.Unlock()
	return f.mount()
}

// unmount detaches the server's mount, retrying while the kernel still holds it busy (a killed
// process's mappings are released a moment after its death).
func unmount(srv *fuse.Server) error {
	var err error
	for range 100 {
		if err = srv.Unmount(); err == nil {
			srv.Wait()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("powerfs: unmount: %w", err)
}

// dropped rolls the tree below d back to what was durable, counting the bytes thrown away.
func (f *FS) dropped(d *mdir) {
	for _, c := range d.durable {
		switch c := c.(type) {
		case *mfile:
			if !c.synced {
				c.durable = nil
			}
			f.droppedBytes += int64(max(0, len(c.data)-len(c.durable)))
			c.data = append([]byte(nil), c.durable...)
		case *mdir:
			f.dropped(c)
		}
	}
}

// Unmount unmounts the file system for good.
func (f *FS) Unmount() error {
	f.mu.Lock()
	srv := f.srv
	f.srv = nil
	f.mu.Unlock()
	if srv == nil {
		return nil
	}
	return unmount(srv)
}

// Stats are what the file system saw: file syncs, directory syncs, power losses, and the bytes of
// file data that a power loss threw away (written, never synced).
type Stats struct {
	FileSyncs, DirSyncs, PowerLosses int
	DroppedBytes                     int64
}

// Stats returns the counts so far.
func (f *FS) Stats() Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return Stats{FileSyncs: f.syncs, DirSyncs: f.dirSyncs, PowerLosses: f.losses, DroppedBytes: f.droppedBytes}
}

// errPowerLost is what every change gets while the power is off.
var errPowerLost = syscall.EIO

// change runs fn under the lock unless the power is off.
func (f *FS) change(fn func() syscall.Errno) syscall.Errno {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.lost {
		return errPowerLost
	}
	return fn()
}

func (f *FS) newIno() uint64 {
	f.nextIno++
	return f.nextIno
}

// ---- directories ----

type dirNode struct {
	fs.Inode
	fsys *FS
	d    *mdir
}

var (
	_ fs.NodeOnAdder     = (*dirNode)(nil)
	_ fs.NodeGetattrer   = (*dirNode)(nil)
	_ fs.NodeSetattrer   = (*dirNode)(nil)
	_ fs.NodeCreater     = (*dirNode)(nil)
	_ fs.NodeMkdirer     = (*dirNode)(nil)
	_ fs.NodeUnlinker    = (*dirNode)(nil)
	_ fs.NodeRmdirer     = (*dirNode)(nil)
	_ fs.NodeRenamer     = (*dirNode)(nil)
	_ fs.NodeFsyncer     = (*dirNode)(nil)
	_ fs.NodeStatfser    = (*dirNode)(nil)
	_ fs.NodeOpendirer   = (*dirNode)(nil)
	_ fs.NodeReaddirer   = (*dirNode)(nil)
	_ fs.NodeOnForgetter = (*dirNode)(nil)
)

// OnAdd builds the mounted tree of a directory from its durable names: at mount, before the file
// system serves anything (so without the lock, which a Mkdir calling here already holds; a new
// directory has no durable names).
func (n *dirNode) OnAdd(ctx context.Context) {
	for name, c := range n.d.durable {
		switch c := c.(type) {
		case *mfile:
			n.AddChild(name, n.NewPersistentInode(ctx, &fileNode{fsys: n.fsys, f: c}, fs.StableAttr{Mode: syscall.S_IFREG, Ino: c.ino}), false)
		case *mdir:
			n.AddChild(name, n.NewPersistentInode(ctx, &dirNode{fsys: n.fsys, d: c}, fs.StableAttr{Mode: syscall.S_IFDIR, Ino: c.ino}), false)
		}
	}
}

func (n *dirNode) OnForget() {}

func (n *dirNode) Opendir(ctx context.Context) syscall.Errno { return 0 }

func (n *dirNode) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	var es []fuse.DirEntry
	for name, c := range n.Children() {
		es = append(es, fuse.DirEntry{Name: name, Mode: c.Mode(), Ino: c.StableAttr().Ino})
	}
	return fs.NewListDirStream(es), 0
}

func (n *dirNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.fsys.mu.Lock()
	defer n.fsys.mu.Unlock()
	out.Mode = syscall.S_IFDIR | 0o755
	out.Ino = n.d.ino
	out.Nlink = 2
	out.SetTimes(nil, &n.d.mtime, &n.d.mtime)
	return 0
}

// touched records a change of the directory's names (under the lock).
func (d *mdir) touched() { d.mtime = time.Now() }

// Setattr accepts and ignores mode, owner and time changes on a directory.
func (n *dirNode) Setattr(ctx context.Context, fh fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return n.Getattr(ctx, fh, out)
}

// Statfs reports a large, empty disk: the programs under test watch free space.
func (n *dirNode) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	const block = 4096
	out.Bsize, out.Frsize = block, block
	out.Blocks = (1 << 40) / block
	out.Bfree, out.Bavail = out.Blocks, out.Blocks
	out.Files, out.Ffree = 1<<20, 1<<20
	out.NameLen = 255
	return 0
}

func (n *dirNode) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	var child *fs.Inode
	errno := n.fsys.change(func() syscall.Errno {
		if n.GetChild(name) != nil {
			return syscall.EEXIST
		}
		n.d.touched()
		mf := &mfile{ino: n.fsys.newIno()}
		child = n.NewPersistentInode(ctx, &fileNode{fsys: n.fsys, f: mf}, fs.StableAttr{Mode: syscall.S_IFREG, Ino: mf.ino})
		out.Mode = syscall.S_IFREG | 0o644
		out.Ino = mf.ino
		return 0
	})
	if errno != 0 {
		return nil, nil, 0, errno
	}
	return child, nil, fuse.FOPEN_KEEP_CACHE, 0
}

func (n *dirNode) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	var child *fs.Inode
	errno := n.fsys.change(func() syscall.Errno {
		if n.GetChild(name) != nil {
			return syscall.EEXIST
		}
		n.d.touched()
		md := &mdir{ino: n.fsys.newIno(), mtime: time.Now()}
		child = n.NewPersistentInode(ctx, &dirNode{fsys: n.fsys, d: md}, fs.StableAttr{Mode: syscall.S_IFDIR, Ino: md.ino})
		out.Mode = syscall.S_IFDIR | 0o755
		out.Ino = md.ino
		return 0
	})
	return child, errno
}

func (n *dirNode) Unlink(ctx context.Context, name string) syscall.Errno {
	return n.fsys.change(func() syscall.Errno {
		c := n.GetChild(name)
		if c == nil {
			return syscall.ENOENT
		}
		if c.IsDir() {
			return syscall.EISDIR
		}
		n.d.touched()
		return 0 // the bridge takes the name out of the tree; durable only once n is synced
	})
}

func (n *dirNode) Rmdir(ctx context.Context, name string) syscall.Errno {
	return n.fsys.change(func() syscall.Errno {
		c := n.GetChild(name)
		if c == nil {
			return syscall.ENOENT
		}
		if !c.IsDir() {
			return syscall.ENOTDIR
		}
		if len(c.Children()) > 0 {
			return syscall.ENOTEMPTY
		}
		n.d.touched()
		return 0
	})
}

func (n *dirNode) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	return n.fsys.change(func() syscall.Errno {
		if flags != 0 {
			return syscall.EINVAL // RENAME_EXCHANGE, RENAME_NOREPLACE: not modelled
		}
		c := n.GetChild(name)
		if c == nil {
			return syscall.ENOENT
		}
		if t := newParent.EmbeddedInode().GetChild(newName); t != nil && t.IsDir() != c.IsDir() {
			if t.IsDir() {
				return syscall.EISDIR
			}
			return syscall.ENOTDIR
		}
		n.d.touched()
		if np, ok := newParent.(*dirNode); ok {
			np.d.touched()
		}
		return 0 // the bridge moves the name; durable once both directories are synced
	})
}

// Fsync of a directory makes its current names durable (each pointing at its file or directory,
// whatever their own contents' durability).
func (n *dirNode) Fsync(ctx context.Context, fh fs.FileHandle, flags uint32) syscall.Errno {
	return n.fsys.change(func() syscall.Errno {
		names := map[string]any{}
		for name, c := range n.Children() {
			switch op := c.Operations().(type) {
			case *fileNode:
				names[name] = op.f
			case *dirNode:
				names[name] = op.d
			}
		}
		n.d.durable = names
		n.fsys.dirSyncs++
		return 0
	})
}

// ---- regular files ----

type fileNode struct {
	fs.Inode
	fsys *FS
	f    *mfile
}

var (
	_ fs.NodeOpener    = (*fileNode)(nil)
	_ fs.NodeReader    = (*fileNode)(nil)
	_ fs.NodeWriter    = (*fileNode)(nil)
	_ fs.NodeGetattrer = (*fileNode)(nil)
	_ fs.NodeSetattrer = (*fileNode)(nil)
	_ fs.NodeFsyncer   = (*fileNode)(nil)
	_ fs.NodeFlusher   = (*fileNode)(nil)
	_ fs.NodeAllocater = (*fileNode)(nil)
)

// Open keeps the kernel's page cache: every change goes through it, and mappings need it.
func (n *fileNode) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_TRUNC != 0 {
		if errno := n.fsys.change(func() syscall.Errno { n.f.data = n.f.data[:0]; return 0 }); errno != 0 {
			return nil, 0, errno
		}
	}
	return nil, fuse.FOPEN_KEEP_CACHE, 0
}

func (n *fileNode) Read(ctx context.Context, fh fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	n.fsys.mu.Lock()
	defer n.fsys.mu.Unlock()
	if off >= int64(len(n.f.data)) {
		return fuse.ReadResultData(nil), 0
	}
	end := min(int64(len(n.f.data)), off+int64(len(dest)))
	return fuse.ReadResultData(append([]byte(nil), n.f.data[off:end]...)), 0
}

func (n *fileNode) Write(ctx context.Context, fh fs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	errno := n.fsys.change(func() syscall.Errno {
		n.f.grow(off + int64(len(data)))
		copy(n.f.data[off:], data)
		return 0
	})
	if errno != 0 {
		return 0, errno
	}
	return uint32(len(data)), 0
}

// grow extends the file with zeros to size bytes (never shrinks it).
func (m *mfile) grow(size int64) {
	if size <= int64(len(m.data)) {
		return
	}
	if size <= int64(cap(m.data)) {
		old := len(m.data)
		m.data = m.data[:size]
		clear(m.data[old:])
		return
	}
	d := make([]byte, size, max(size, 2*int64(cap(m.data))))
	copy(d, m.data)
	m.data = d
}

func (n *fileNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.fsys.mu.Lock()
	defer n.fsys.mu.Unlock()
	out.Mode = syscall.S_IFREG | 0o644
	out.Ino = n.f.ino
	out.Nlink = 1
	out.Size = uint64(len(n.f.data))
	out.Blocks = (out.Size + 511) / 512
	out.Blksize = 4096
	return 0
}

// Setattr honours a size change (truncate, ftruncate) and ignores mode, owner and times.
func (n *fileNode) Setattr(ctx context.Context, fh fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if sz, ok := in.GetSize(); ok {
		errno := n.fsys.change(func() syscall.Errno {
			if int64(sz) < int64(len(n.f.data)) {
				n.f.data = n.f.data[:sz]
			} else {
				n.f.grow(int64(sz))
			}
			return 0
		})
		if errno != 0 {
			return errno
		}
	}
	return n.Getattr(ctx, fh, out)
}

// Allocate (fallocate) extends the file unless asked to keep its size; holes are zeros anyway.
func (n *fileNode) Allocate(ctx context.Context, fh fs.FileHandle, off uint64, size uint64, mode uint32) syscall.Errno {
	return n.fsys.change(func() syscall.Errno {
		const keepSize = 0x1 // FALLOC_FL_KEEP_SIZE
		if mode&^keepSize != 0 {
			return syscall.EOPNOTSUPP // punching holes, collapsing ranges: not modelled
		}
		if mode&keepSize == 0 {
			n.f.grow(int64(off + size))
		}
		return 0
	})
}

// Fsync (and fdatasync, and msync of a mapping: the kernel writes the dirty pages first) makes
// the file's current content durable. Not its name: that takes its directory's fsync.
func (n *fileNode) Fsync(ctx context.Context, fh fs.FileHandle, flags uint32) syscall.Errno {
	return n.fsys.change(func() syscall.Errno {
		n.f.durable = append(n.f.durable[:0], n.f.data...)
		n.f.synced = true
		n.fsys.syncs++
		return 0
	})
}

// Flush (close) makes nothing durable.
func (n *fileNode) Flush(ctx context.Context, fh fs.FileHandle) syscall.Errno {
	n.fsys.mu.Lock()
	defer n.fsys.mu.Unlock()
	if n.fsys.lost {
		return errPowerLost
	}
	return 0
}

// ErrNotMounted is Remount's answer for a file system never mounted.
var ErrNotMounted = errors.New("powerfs: not mounted")
