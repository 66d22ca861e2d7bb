package replica

import (
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/valyala/fasthttp"

	"github.com/sofadb/sofadb/paxos"
	"github.com/sofadb/sofadb/wire"
)

// Status is what /status reports: the replica's role and log positions, its disk's group-commit
// histograms, and counters. Tests and the bench read it to find the leader and see convergence.
type Status struct {
	ID           paxos.ReplicaID `json:"id"`
	Role         string          `json:"role"`
	Ballot       string          `json:"ballot"`
	Promised     string          `json:"promised"`
	Leader       paxos.ReplicaID `json:"leader"`
	LeaderClient string          `json:"leader_client,omitempty"`
	LeaderHTTP   string          `json:"leader_http,omitempty"`
	Mode         string          `json:"mode"`
	ReadMode     string          `json:"read_mode"`
	Fsync        bool            `json:"fsync"`
	Commit       uint64          `json:"commit"`  // chosen prefix
	Applied      uint64          `json:"applied"` // applied to the state machine
	Digest       string          `json:"digest"`  // hash chain of the applied log: equal on replicas that applied the same log
	Keys         int             `json:"keys"`
	LogBase      uint64          `json:"log_base"` // truncated through here
	LogLast      uint64          `json:"log_last"`
	Inflight     int             `json:"inflight_slots"`
	Queued       int             `json:"queued_commands"`
	Pending      int             `json:"pending_requests"`
	Lease        bool            `json:"lease"`
	DiskError    string          `json:"disk_error,omitempty"`
	Disk         DiskStatus      `json:"disk"`
	Core         paxos.Metrics   `json:"core"`
	Peers        []PeerStatus    `json:"peers"`
}

// DiskStatus summarises the group committer: how long fsyncs take and how many records each covers.
type DiskStatus struct {
	Syncs           uint64  `json:"syncs"`
	Records         uint64  `json:"records"`
	Bytes           uint64  `json:"bytes"`
	Failures        uint64  `json:"failures"`
	SyncP50Ns       int64   `json:"sync_p50_ns"`
	SyncP99Ns       int64   `json:"sync_p99_ns"`
	SyncP999Ns      int64   `json:"sync_p999_ns"`
	SyncMaxNs       int64   `json:"sync_max_ns"`
	RecordsPerSync  float64 `json:"records_per_sync_mean"`
	RecordsSyncP99  int64   `json:"records_per_sync_p99"`
	RecordsSyncMax  int64   `json:"records_per_sync_max"`
	SnapshotsSaved  uint64  `json:"snapshots_saved"`
	SnapshotErrors  uint64  `json:"snapshot_errors"`
	SnapshotApplied uint64  `json:"snapshot_slot"`
}

// PeerStatus is one peer link's counters.
type PeerStatus struct {
	ID         paxos.ReplicaID `json:"id"`
	Connected  bool            `json:"connected"`
	Sent       uint64          `json:"sent"`
	Dropped    uint64          `json:"dropped"`
	Reconnects uint64          `json:"reconnects"`
	// LastError says why the last attempt to connect to this peer failed (a refused dial, a
	// handshake whose cluster keys differ); empty once a connection succeeds.
	LastError string `json:"last_error,omitempty"`
}

// Status asks the loop for a consistent status; false if the loop does not answer within a second.
func (s *Server) Status() (Status, bool) {
	ch := make(chan Status, 1)
	select {
	case s.statusReq <- ch:
	case <-time.After(time.Second):
		return Status{}, false
	}
	return <-ch, true
}

// status is built on the loop.
func (s *Server) status() Status {
	cs, state := s.drv.Core().Status(), s.drv.State()
	st := Status{ID: s.cfg.ID, Role: cs.Role, Ballot: cs.Ballot.String(), Promised: cs.Promised.String(),
		Leader: cs.Leader, Mode: s.cfg.Core.Mode.String(), ReadMode: s.cfg.ReadMode.String(), Fsync: s.cfg.Fsync,
		Commit: cs.Commit, Applied: state.Applied(), Digest: fmt.Sprintf("%016x", state.Digest()),
		Keys: state.Len(), LogBase: cs.LogBase, LogLast: cs.LogLast, Inflight: cs.Inflight, Queued: cs.QueueLen,
		Pending: s.drv.Pending(), Core: cs.Metrics}
	_, st.Lease = s.drv.ReadIndex()
	if cs.Leader != 0 {
		st.LeaderClient, st.LeaderHTTP = s.cfg.ClientAddrs[cs.Leader], s.cfg.HTTPAddrs[cs.Leader]
	}
	if err := s.drv.Failed(); err != nil {
		st.DiskError = err.Error()
	} else if err := s.store.Err(); err != nil {
		st.DiskError = err.Error()
	}
	st.Disk = s.diskStatus()
	for _, id := range sortedIDs(s.tr.peers) {
		p := s.tr.peers[id]
		p.mu.Lock()
		connected := p.conn != nil
		p.mu.Unlock()
		st.Peers = append(st.Peers, PeerStatus{ID: id, Connected: connected, Sent: p.sent.Load(),
			Dropped: p.dropped.Load(), Reconnects: p.reconnects.Load(), LastError: p.failure()})
	}
	return st
}

func (s *Server) diskStatus() DiskStatus {
	ds := s.store.Stats()
	out := DiskStatus{Syncs: ds.Syncs, Records: ds.Records, Bytes: ds.Bytes, Failures: ds.Failures,
		SnapshotsSaved: s.drv.Stats().Snapshots.Load(), SnapshotErrors: s.drv.Stats().SnapshotErrors.Load(),
		SnapshotApplied: s.store.SnapshotSlot()}
	if h := ds.SyncLatencyNs; h != nil && h.TotalCount() > 0 {
		out.SyncP50Ns, out.SyncP99Ns = h.ValueAtQuantile(50), h.ValueAtQuantile(99)
		out.SyncP999Ns, out.SyncMaxNs = h.ValueAtQuantile(99.9), h.Max()
	}
	if h := ds.RecordsPerSync; h != nil && h.TotalCount() > 0 {
		out.RecordsPerSync, out.RecordsSyncP99, out.RecordsSyncMax = h.Mean(), h.ValueAtQuantile(99), h.Max()
	}
	return out
}

func sortedIDs(m map[paxos.ReplicaID]*peer) []paxos.ReplicaID { return slices.Sorted(maps.Keys(m)) }

// handleMetrics writes the Prometheus text exposition format (version 0.0.4).
func (s *Server) handleMetrics(ctx *fasthttp.RequestCtx) {
	st, ok := s.Status()
	if !ok {
		ctx.Error("replica stopping\n", fasthttp.StatusServiceUnavailable)
		return
	}
	var b strings.Builder
	gauge := func(name, help string, v any) {
		fmt.Fprintf(&b, "# HELP sofadb_%s %s\n# TYPE sofadb_%s gauge\nsofadb_%s %v\n", name, help, name, name, v)
	}
	counter := func(name, help string, v uint64) {
		fmt.Fprintf(&b, "# HELP sofadb_%s %s\n# TYPE sofadb_%s counter\nsofadb_%s %d\n", name, help, name, name, v)
	}
	isLeader := 0
	if st.Role == "leader" {
		isLeader = 1
	}
	gauge("is_leader", "1 when this replica leads.", isLeader)
	gauge("leader_id", "Replica believed to lead (0: none).", st.Leader)
	gauge("commit_slot", "Chosen prefix of the log.", st.Commit)
	gauge("applied_slot", "Last slot applied to the state machine.", st.Applied)
	gauge("log_base_slot", "Log truncated through this slot.", st.LogBase)
	gauge("inflight_slots", "Proposed slots not yet chosen.", st.Inflight)
	gauge("queued_commands", "Commands waiting for a slot or a leader.", st.Queued)
	gauge("pending_requests", "Client requests waiting for their command.", st.Pending)
	gauge("keys", "Keys in the state machine.", st.Keys)
	gauge("client_connections", "Open binary-protocol connections.", s.stats.clientConns.Load())
	m := st.Core
	counter("campaigns_total", "Phase 1 runs started.", m.Campaigns)
	counter("elections_won_total", "Phase 1 runs won.", m.Elected)
	counter("ballots_preempted_total", "Ballots abandoned to a higher one.", m.Preempted)
	counter("proposed_slots_total", "Slots proposed (re-proposals and no-ops included).", m.ProposedSlots)
	counter("proposed_commands_total", "Commands proposed.", m.ProposedCmds)
	counter("chosen_slots_total", "Slots chosen by this replica's own majority.", m.ChosenSlots)
	counter("resent_accepts_total", "Accepts resent after a timeout.", m.ResentAccepts)
	counter("forwarded_commands_total", "Commands forwarded to the leader.", m.Forwarded)
	counter("catchup_requests_total", "Catch-up requests sent.", m.CatchupsSent)
	counter("snapshots_installed_total", "Snapshots installed from peers.", m.SnapshotsIn)
	counter("lease_refusals_total", "Prepares ignored to honour a lease.", m.LeaseRefusals)
	ds := s.drv.Stats()
	counter("lease_reads_total", "Reads served locally under the lease.", ds.LeaseReads.Load())
	counter("log_reads_total", "Reads sent through the log.", ds.LogReads.Load())
	counter("request_timeouts_total", "Requests answered Unavailable after RequestTimeout.", ds.Timeouts.Load())
	counter("busy_total", "Requests refused because a queue was full.", ds.Busy.Load()+s.stats.busy.Load())
	counter("bad_client_connections_total", "Client connections closed for malformed input or over the limit.", s.stats.badClientConns.Load())
	counter("peer_handshakes_refused_total", "Peer connections refused (no key, unknown peer, garbage).", s.tr.refused.Load())
	fmt.Fprintf(&b, "# HELP sofadb_replies_total Client replies by status.\n# TYPE sofadb_replies_total counter\n")
	for code := range ds.Replies {
		if st := wire.Status(code); st.Valid() {
			n := ds.Replies[code].Load()
			switch st { // refused before reaching the loop
			case wire.StatusBusy:
				n += s.stats.busy.Load()
			case wire.StatusBadRequest:
				n += s.stats.badRequests.Load()
			case wire.StatusTooLarge:
				n += s.stats.tooLarge.Load()
			}
			fmt.Fprintf(&b, "sofadb_replies_total{status=%q} %d\n", st.String(), n)
		}
	}
	writeDiskMetrics(&b, s.store.Stats().SyncLatencyNs, st.Disk)
	counter("disk_records_total", "Records written through the group committer.", st.Disk.Records)
	counter("disk_bytes_total", "Bytes written through the group committer.", st.Disk.Bytes)
	var msgs, bytes uint64
	for _, p := range s.tr.peers {
		msgs, bytes = msgs+p.sent.Load(), bytes+p.sentBytes.Load()
	}
	counter("peer_messages_sent_total", "Peer messages written to connections.", msgs)
	counter("peer_bytes_sent_total", "Peer frame bytes written to connections.", bytes)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Fprintf(&b, "# HELP sofadb_go_gc_pause_seconds_total Total stop-the-world GC pause time.\n# TYPE sofadb_go_gc_pause_seconds_total counter\nsofadb_go_gc_pause_seconds_total %g\n", float64(ms.PauseTotalNs)/1e9)
	counter("go_gc_cycles_total", "Completed GC cycles.", uint64(ms.NumGC))
	gauge("go_heap_bytes", "Bytes of allocated heap objects.", ms.HeapAlloc)
	ctx.SetContentType("text/plain; version=0.0.4")
	ctx.SetBodyString(b.String())
}

func writeDiskMetrics(b *strings.Builder, h *hdrhistogram.Histogram, d DiskStatus) {
	fmt.Fprintf(b, "# HELP sofadb_fsync_seconds Duration of each group-commit fsync.\n# TYPE sofadb_fsync_seconds summary\n")
	if h != nil {
		for _, q := range []float64{50, 90, 99, 99.9} {
			fmt.Fprintf(b, "sofadb_fsync_seconds{quantile=\"%g\"} %g\n", q/100, float64(h.ValueAtQuantile(q))/1e9)
		}
		fmt.Fprintf(b, "sofadb_fsync_seconds_sum %g\nsofadb_fsync_seconds_count %d\n", float64(h.TotalCount())*h.Mean()/1e9, h.TotalCount())
	}
	fmt.Fprintf(b, "# HELP sofadb_fsync_records_mean Records acknowledged per fsync (group commit).\n# TYPE sofadb_fsync_records_mean gauge\nsofadb_fsync_records_mean %g\n", d.RecordsPerSync)
	fmt.Fprintf(b, "# HELP sofadb_disk_failures_total Failed disk writes or syncs (sticky).\n# TYPE sofadb_disk_failures_total counter\nsofadb_disk_failures_total %d\n", d.Failures)
}
