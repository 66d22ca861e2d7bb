package disk

import (
	"errors"
	"maps"
	"sync"
	"time"
)

var (
	errInjectedWrite = errors.New("injected write error (disk full)")
	errInjectedSync  = errors.New("injected fsync error")
	errCrashed       = errors.New("fake disk crashed")
)

// fakeDisk is a backend with a page cache and a platter: writes land in the cache (written) and
// only a sync moves them to what survives a crash (synced). It can fail the n-th write or sync, hold
// a sync in flight until the test releases it, and crash, dropping every unsynced write.
type fakeDisk struct {
	mu       sync.Mutex
	written  map[string]string
	synced   map[string]string
	unsynced []op // ops written since the last sync, in order
	writes   int
	syncs    int
	crashed  bool

	failWriteAt int           // 1-based write call that fails; 0 = never
	failSyncAt  int           // 1-based sync call that fails; 0 = never
	syncTime    time.Duration // how long a sync takes: writes keep landing meanwhile

	// When set, sync sends on syncEntered and then waits for syncRelease before syncing.
	syncEntered chan int
	syncRelease chan struct{}
	releaseAll  func() // closes syncRelease once: every held and later sync proceeds
}

func newFakeDisk() *fakeDisk {
	return &fakeDisk{written: map[string]string{}, synced: map[string]string{}}
}

func (f *fakeDisk) write(ops []op) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.writes++
	if f.crashed {
		return errCrashed
	}
	if f.writes == f.failWriteAt {
		return errInjectedWrite
	}
	for _, o := range ops {
		c := op{key: append([]byte(nil), o.key...), value: append([]byte(nil), o.value...), del: o.del}
		applyOp(f.written, c)
		f.unsynced = append(f.unsynced, c)
	}
	return nil
}

func applyOp(m map[string]string, o op) {
	if o.del {
		delete(m, string(o.key))
	} else {
		m[string(o.key)] = string(o.value)
	}
}

// sync covers exactly the writes that returned before it was called: writes that land while it is
// held are left unsynced, the strictest model the backend contract allows.
func (f *fakeDisk) sync() error {
	f.mu.Lock()
	f.syncs++
	n, entered, release := f.syncs, f.syncEntered, f.syncRelease
	covered := len(f.unsynced)
	f.mu.Unlock()
	if entered != nil {
		entered <- n
		<-release
	}
	f.mu.Lock()
	syncTime := f.syncTime
	f.mu.Unlock()
	time.Sleep(syncTime)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.crashed {
		return errCrashed
	}
	if n == f.failSyncAt {
		return errInjectedSync
	}
	for _, o := range f.unsynced[:covered] {
		applyOp(f.synced, o)
	}
	f.unsynced = append(f.unsynced[:0], f.unsynced[covered:]...)
	return nil
}

// holdSyncs makes every later sync announce its number on the returned channel and wait for
// releaseOne or releaseAll.
func (f *fakeDisk) holdSyncs() (entered chan int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.syncEntered, f.syncRelease = make(chan int, 1000), make(chan struct{})
	f.releaseAll = sync.OnceFunc(func() { close(f.syncRelease) })
	return f.syncEntered
}

// releaseOne lets exactly one held sync proceed.
func (f *fakeDisk) releaseOne() { f.syncRelease <- struct{}{} }

// crash simulates power loss: every later call fails, and what survives is returned.
func (f *fakeDisk) crash() map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.crashed = true
	return maps.Clone(f.synced)
}

// waitWrites waits until n write calls have returned.
func (f *fakeDisk) waitWrites(n int) {
	for {
		if writes, _ := f.counts(); writes >= n {
			return
		}
		time.Sleep(100 * time.Microsecond)
	}
}

func (f *fakeDisk) counts() (writes, syncs int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.writes, f.syncs
}
