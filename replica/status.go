package replica

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/sofadb/sofadb/internal/buildinfo"
	"github.com/sofadb/sofadb/paxos"
)

// build is this binary's version and commit, read once.
var build = buildinfo.String("sofadb")

// Status is what /status reports: the replica's role and log positions, its disk's group-commit
// histograms, and counters. Tests and the bench read it to find the leader and see convergence.
type Status struct {
	ID paxos.ReplicaID `json:"id"`
	// Identity is this replica's data directory's (see identity.go); Build is the binary's version
	// and commit. Both go into a load generator run's manifest.
	Identity     string          `json:"identity"`
	Build        string          `json:"build"`
	Settings     Settings        `json:"settings"`
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
	// Voting is false while the replica rejoins after losing its data directory (see rejoin.go):
	// it learns, and neither promises nor votes, until its commit reaches RejoinVoteFrom.
	Voting         bool          `json:"voting"`
	RejoinVoteFrom uint64        `json:"rejoin_vote_from,omitempty"`
	AcceptRTTNs    int64         `json:"accept_rtt_ns"` // smoothed accept round trip: the resend timeout follows it
	DiskError      string        `json:"disk_error,omitempty"`
	Disk           DiskStatus    `json:"disk"`
	Core           paxos.Metrics `json:"core"`
	Peers          []PeerStatus  `json:"peers"`
}

// Settings are the configuration that shapes what a benchmark measures, as /status reports it (a
// load generator run records it in its manifest).
type Settings struct {
	Fsync            bool   `json:"fsync"`
	Mode             string `json:"mode"`
	ReadMode         string `json:"read_mode"`
	Redirect         bool   `json:"redirect"`
	Backoff          bool   `json:"backoff"`
	BatchBytesMax    int    `json:"batch_bytes"`
	InflightSlotsMax int    `json:"inflight_slots"`
	InflightBytesMax int    `json:"inflight_bytes"`
	TickNs           int64  `json:"tick_ns"`
	HeartbeatTicks   int    `json:"heartbeat_ticks"`
	ElectionTicks    int    `json:"election_ticks"`
	LeaseDriftTicks  int    `json:"lease_drift_ticks"`
	PreVote          bool   `json:"pre_vote"`
	PreVoteBehind    uint64 `json:"pre_vote_behind_slots"`
	SnapshotEvery    uint64 `json:"snapshot_every_slots"`
	SnapshotBytes    uint64 `json:"snapshot_every_bytes"`
	Replicas         int    `json:"replicas"`
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
	// Identity is the one known behind this peer's id; IdentityConflict the last refusal of a
	// process that claimed the id with another.
	Identity         string `json:"identity,omitempty"`
	IdentityConflict string `json:"identity_conflict,omitempty"`
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
	st := Status{ID: s.cfg.ID, Identity: identityString(s.tr.ident), Build: build, Role: cs.Role, Ballot: cs.Ballot.String(), Promised: cs.Promised.String(),
		Leader: cs.Leader, Mode: s.cfg.Core.Mode.String(), ReadMode: s.cfg.ReadMode.String(), Fsync: s.cfg.Fsync,
		Commit: cs.Commit, Applied: state.Applied(), Digest: fmt.Sprintf("%016x", state.Digest()),
		Keys: state.Len(), LogBase: cs.LogBase, LogLast: cs.LogLast, Inflight: cs.Inflight, Queued: cs.QueueLen,
		Pending: s.drv.Pending(), Core: cs.Metrics, AcceptRTTNs: int64(cs.AcceptRTT8) * int64(s.cfg.TickInterval) / 8,
		Voting: cs.Voting, RejoinVoteFrom: s.cfg.Core.VoteFromCommit}
	c := &s.cfg
	st.Settings = Settings{Fsync: c.Fsync, Mode: c.Core.Mode.String(), ReadMode: c.ReadMode.String(), Redirect: c.Redirect,
		Backoff: c.Core.Backoff, BatchBytesMax: c.Core.BatchBytesMax, InflightSlotsMax: c.Core.InflightSlotsMax,
		InflightBytesMax: c.Core.InflightBytesMax, TickNs: int64(c.TickInterval), HeartbeatTicks: c.Core.HeartbeatTicks,
		ElectionTicks: c.Core.ElectionTicks, LeaseDriftTicks: c.Core.LeaseDriftTicks, SnapshotEvery: c.SnapshotEverySlots,
		PreVote: c.Core.PreVote, PreVoteBehind: c.Core.PreVoteBehindSlotsMax,
		SnapshotBytes: c.SnapshotEveryBytes, Replicas: len(c.PeerAddrs)}
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
		ident, conflict := s.tr.book.status(id)
		st.Peers = append(st.Peers, PeerStatus{ID: id, Connected: connected, Sent: p.sent.Load(),
			Dropped: p.dropped.Load(), Reconnects: p.reconnects.Load(), LastError: p.failure(),
			Identity: ident, IdentityConflict: conflict})
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
