package disk

import (
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram ranges. Sync latency is recorded in nanoseconds from 1 µs (nothing real is faster) to
// 60 s (a stalled disk) at 3 significant figures, about 120 KB; records per sync from 1 to 1<<20.
const (
	syncLatencyNsMin   = 1_000
	syncLatencyNsMax   = 60_000_000_000
	recordsPerSyncMax  = 1 << 20
	histogramSigDigits = 3
)

// Stats is a consistent copy of the group committer's counters and histograms since Open. The
// histograms are private copies: the caller may read, merge or reset them freely.
type Stats struct {
	// Batches is the number of groups written (each one badger write), synced or not.
	Batches uint64
	// Syncs is the number of sync steps (DB.Sync plus any rotated-file fsyncs, timed as one).
	Syncs uint64
	// Records is the number of queued tickets resolved (successfully or not).
	Records uint64
	// Bytes is the number of key and value bytes handed to badger.
	Bytes uint64
	// Failures is the number of those records resolved with an error: the sticky failure, or a
	// refusal (ErrTooLarge). Records minus Failures were acknowledged.
	Failures uint64
	// RotatedSyncs counts extra fsyncs of badger files rotated out since the previous sync (see
	// badgerBackend.sync): a closed WAL or value log that badger's DB.Sync no longer covers.
	RotatedSyncs uint64
	// DirSyncs counts fsyncs of the data directory after its names changed (see dirNames).
	DirSyncs uint64
	// OutOfRange counts samples outside a histogram's range (recorded nowhere else, never dropped).
	OutOfRange uint64
	// SyncLatencyNs is the duration of each sync step, in nanoseconds.
	SyncLatencyNs *hdrhistogram.Histogram
	// RecordsPerSync is how many records each sync acknowledged: the story of group commit.
	RecordsPerSync *hdrhistogram.Histogram
}

// stats is recorded into by the syncer; Stats() takes copies. hdrhistogram is not
// goroutine-safe, so mu guards every access; recording under it costs tens of nanoseconds per group.
type stats struct {
	mu             sync.Mutex
	s              Stats
	syncLatencyNs  *hdrhistogram.Histogram
	recordsPerSync *hdrhistogram.Histogram
}

func (st *stats) init() {
	st.syncLatencyNs = hdrhistogram.New(syncLatencyNsMin, syncLatencyNsMax, histogramSigDigits)
	st.recordsPerSync = hdrhistogram.New(1, recordsPerSyncMax, histogramSigDigits)
}

func (st *stats) recordSync(d time.Duration, records int) {
	st.mu.Lock()
	st.s.Syncs++
	if st.syncLatencyNs.RecordValue(max(d.Nanoseconds(), syncLatencyNsMin)) != nil {
		st.s.OutOfRange++
	}
	if st.recordsPerSync.RecordValue(int64(records)) != nil {
		st.s.OutOfRange++
	}
	st.mu.Unlock()
}

func (st *stats) recordGroups(groups, records, failures, sizeBytes int) {
	st.mu.Lock()
	st.s.Batches += uint64(groups)
	st.s.Records += uint64(records)
	st.s.Failures += uint64(failures)
	st.s.Bytes += uint64(sizeBytes)
	st.mu.Unlock()
}

// snapshot returns a copy; Clone allocates (about 120 KB), so call it per scrape, not per request.
func (st *stats) snapshot() Stats {
	st.mu.Lock()
	defer st.mu.Unlock()
	out := st.s
	out.SyncLatencyNs = st.syncLatencyNs.Clone()
	out.RecordsPerSync = st.recordsPerSync.Clone()
	return out
}
