package replica

import (
	"runtime"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"

	"github.com/sofadb/sofadb/driver"
	"github.com/sofadb/sofadb/wire"
)

// The metrics are served by prometheus/client_golang: a collector that reads, at scrape time, the
// status the loop last published (once per tick) and the atomic counters kept outside the loop. A
// scrape never waits for the loop, and the fsync histogram is copied once per scrape.

// newMetricsHandler builds the /metrics handler: SofaDB's collector plus the Go runtime and process
// collectors.
func (s *Server) newMetricsHandler() fasthttp.RequestHandler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		sofaCollector{s})
	return fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
}

// sofaCollector is an unchecked collector: its series follow the replica's peers and statuses.
type sofaCollector struct{ s *Server }

func (sofaCollector) Describe(chan<- *prometheus.Desc) {}

// fsyncBuckets are the fsync histogram's upper bounds, in seconds.
var fsyncBuckets = []float64{50e-6, 100e-6, 200e-6, 500e-6, 1e-3, 2e-3, 5e-3, 10e-3, 20e-3, 50e-3, 100e-3, 200e-3, 500e-3, 1}

func (c sofaCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	emit := func(kind prometheus.ValueType, name, help string, v float64, labels ...string) {
		var names []string
		var values []string
		for i := 0; i+1 < len(labels); i += 2 {
			names, values = append(names, labels[i]), append(values, labels[i+1])
		}
		ch <- prometheus.MustNewConstMetric(prometheus.NewDesc("sofadb_"+name, help, names, nil), kind, v, values...)
	}
	gauge := func(name, help string, v float64) { emit(prometheus.GaugeValue, name, help, v) }
	counter := func(name, help string, v uint64) { emit(prometheus.CounterValue, name, help, float64(v)) }

	if st := s.published.Load(); st != nil {
		isLeader := 0.0
		if st.Role == "leader" {
			isLeader = 1
		}
		gauge("is_leader", "1 when this replica leads.", isLeader)
		gauge("leader_id", "Replica believed to lead (0: none).", float64(st.Leader))
		gauge("commit_slot", "Chosen prefix of the log.", float64(st.Commit))
		gauge("applied_slot", "Last slot applied to the state machine.", float64(st.Applied))
		gauge("log_base_slot", "Log truncated through this slot.", float64(st.LogBase))
		gauge("accept_rtt_seconds", "Smoothed accept round trip seen by this replica as leader; its accept resend timeout is at least twice it.", float64(st.AcceptRTTNs)/1e9)
		gauge("inflight_slots", "Proposed slots not yet chosen.", float64(st.Inflight))
		gauge("queued_commands", "Commands waiting for a slot or a leader.", float64(st.Queued))
		gauge("pending_requests", "Client requests waiting for their command.", float64(st.Pending))
		gauge("keys", "Keys in the state machine.", float64(st.Keys))
		gauge("voting", "1 when this replica promises and votes; 0 while it rejoins as a learner (sofadb rejoin).", b2f(st.Voting))
		m := st.Core
		counter("campaigns_total", "Phase 1 runs started.", m.Campaigns)
		counter("elections_won_total", "Phase 1 runs won.", m.Elected)
		counter("ballots_preempted_total", "Ballots abandoned to a higher one.", m.Preempted)
		counter("proposed_slots_total", "Slots proposed (re-proposals and no-ops included).", m.ProposedSlots)
		counter("proposed_commands_total", "Commands proposed.", m.ProposedCmds)
		counter("chosen_slots_total", "Slots chosen by this replica's own majority.", m.ChosenSlots)
		counter("resent_accepts_total", "Accepts resent after a timeout.", m.ResentAccepts)
		counter("forwarded_commands_total", "Commands forwarded to the leader.", m.Forwarded)
		counter("reforwarded_commands_total", "Commands forwarded again because the leader changed.", m.Reforwarded)
		counter("dropped_commands_total", "Commands given up (queue full at a forward, a non-leader got a forward).", m.Dropped)
		counter("catchup_requests_total", "Catch-up requests sent.", m.CatchupsSent)
		counter("catchup_entries_total", "Chosen values learned from catch-up replies.", m.CatchupEntries)
		counter("snapshots_installed_total", "Snapshots installed from peers.", m.SnapshotsIn)
		counter("lease_refusals_total", "Prepares ignored to honour a lease.", m.LeaseRefusals)
		counter("step_downs_total", "Times this replica stopped leading.", m.StepDowns)
		counter("campaigns_behind_total", "Campaigns abandoned to catch up first.", m.CampaignsBehind)
		counter("pre_votes_total", "Pre-vote rounds started: an election timer ran out.", m.PreVotes)
		counter("pre_vote_grants_total", "Pre-votes granted to other replicas.", m.PreVoteGrants)
		counter("pre_vote_refusals_total", "Pre-votes refused: a leader is alive, or the asker is far behind.", m.PreVoteRefusals)
		counter("rejoin_ignored_total", "Prepares and accepts left unanswered while rejoining as a learner after a wiped data directory.", m.RejoinIgnored)
		counter("ignored_messages_total", "Peer messages ignored: malformed or from an unknown sender.", m.IgnoredMessages)
		d := st.Disk
		counter("disk_records_total", "Records written through the group committer.", d.Records)
		counter("disk_bytes_total", "Bytes written through the group committer.", d.Bytes)
		counter("disk_failures_total", "Failed disk writes or syncs (sticky).", d.Failures)
		gauge("fsync_records_mean", "Records acknowledged per fsync (group commit).", d.RecordsPerSync)
		counter("snapshots_saved_total", "State snapshots saved.", d.SnapshotsSaved)
		counter("snapshot_errors_total", "State snapshots that failed.", d.SnapshotErrors)
	}
	gauge("client_connections", "Open binary-protocol connections.", float64(s.stats.clientConns.Load()))
	ds := s.drv.Stats()
	gauge("snapshot_bytes", "Size of the last state snapshot saved (or restored at start-up).", float64(ds.SnapshotBytes.Load()))
	gauge("memory_limit_bytes", "The Go runtime's soft memory limit as this replica last set it: -memory-limit plus twice the last snapshot's size (0: left alone).", float64(s.stats.memLimit.Load()))
	counter("lease_reads_total", "Reads served locally under the lease.", ds.LeaseReads.Load())
	counter("log_reads_total", "Reads sent through the log.", ds.LogReads.Load())
	counter("request_timeouts_total", "Requests answered Unavailable after RequestTimeout.", ds.Timeouts.Load())
	counter("busy_total", "Requests refused because a queue was full.", ds.Busy.Load()+s.stats.busy.Load())
	counter("busy_bytes_total", "Requests refused Busy because the bytes of requests not yet answered reached -max-request-bytes.", s.stats.busyBytes.Load())
	counter("conn_bytes_waits_total", "Times a binary connection's reader stopped reading because its requests in flight held -max-conn-request-bytes.", s.stats.connBytesWaits.Load())
	gauge("client_inflight_bytes", "Bytes of client requests taken and not yet answered.", float64(s.fr.inflightBytes.Load()))
	counter("leaderless_refusals_total", "Requests refused at once because no leader was known for several election timeouts.", ds.Leaderless.Load())
	counter("coalesced_retries_total", "Client retries that waited for a copy of their command already proposed instead of proposing another.", ds.Coalesced.Load())
	counter("bad_client_connections_total", "Binary client connections closed for malformed input.", s.stats.badClientConns.Load())
	counter("refused_client_connections_total", "Binary client connections refused at accept: over the per-source or the global limit with none idle to evict.", s.stats.refusedClientConns.Load())
	counter("evicted_client_connections_total", "Binary client connections closed to make room: the one idle longest when the table was full.", s.stats.evictedClientConns.Load())
	counter("idle_client_connections_closed_total", "Binary client connections closed after the idle timeout with nothing in flight.", s.stats.idleClientConns.Load())
	counter("peer_handshakes_refused_total", "Peer connections refused (no key, unknown peer, garbage).", s.tr.refused.Load())
	counter("peer_identity_conflicts_total", "Peer handshakes refused because another process already holds the peer's replica id.", s.tr.conflicts.Load())
	for code := range ds.Replies {
		st := wire.Status(code)
		if !st.Valid() {
			continue
		}
		n := ds.Replies[code].Load()
		switch st { // refused before reaching the loop
		case wire.StatusBusy:
			n += s.stats.busy.Load()
		case wire.StatusBadRequest:
			n += s.stats.badRequests.Load()
		case wire.StatusTooLarge:
			n += s.stats.tooLarge.Load()
		}
		emit(prometheus.CounterValue, "replies_total", "Client replies by status.", float64(n), "status", st.String())
	}
	var msgs, bytes uint64
	for _, id := range sortedIDs(s.tr.peers) {
		p := s.tr.peers[id]
		peer := strconv.Itoa(int(id))
		emit(prometheus.CounterValue, "peer_sent_messages_total", "Peer messages written to this peer's connection.", float64(p.sent.Load()), "peer", peer)
		emit(prometheus.CounterValue, "peer_sent_bytes_total", "Peer frame bytes written to this peer's connection.", float64(p.sentBytes.Load()), "peer", peer)
		emit(prometheus.CounterValue, "peer_dropped_messages_total", "Peer messages dropped (queue full or no connection).", float64(p.dropped.Load()), "peer", peer)
		emit(prometheus.CounterValue, "peer_redundant_accepts_total", "Accepts the core resent that were not queued: a copy for the same slot and ballot was queued on the current connection less than 250 ms before.", float64(p.suppressed.Load()), "peer", peer)
		emit(prometheus.CounterValue, "peer_reconnects_total", "Connections established with this peer.", float64(p.reconnects.Load()), "peer", peer)
		msgs, bytes = msgs+p.sent.Load(), bytes+p.sentBytes.Load()
	}
	counter("peer_messages_sent_total", "Peer messages written to connections, all peers.", msgs)
	counter("peer_bytes_sent_total", "Peer frame bytes written to connections, all peers.", bytes)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	emit(prometheus.CounterValue, "go_gc_pause_seconds_total", "Total stop-the-world GC pause time.", float64(ms.PauseTotalNs)/1e9)

	if h := s.store.Stats().SyncLatencyNs; h != nil && h.TotalCount() > 0 {
		buckets := make(map[float64]uint64, len(fsyncBuckets))
		var cum uint64
		bars := h.Distribution()
		i := 0
		for _, b := range fsyncBuckets {
			for i < len(bars) && float64(bars[i].To)/1e9 <= b {
				cum += uint64(bars[i].Count)
				i++
			}
			buckets[b] = cum
		}
		count := uint64(h.TotalCount())
		ch <- prometheus.MustNewConstHistogram(prometheus.NewDesc("sofadb_fsync_seconds", "Duration of each group-commit fsync.", nil, nil),
			count, float64(count)*h.Mean()/1e9, buckets)
	}
	work := prometheus.NewDesc("sofadb_loop_wakeup_seconds",
		"Work of each wake-up of the replica's loop, by what woke it: a wake-up near the election timeout makes peers take the replica for dead.", []string{"input"}, nil)
	for i, name := range wakeNames {
		ch <- constHistogram(work, &s.watch.work[i], name)
	}
	ch <- constHistogram(prometheus.NewDesc("sofadb_loop_tick_late_seconds",
		"How much later than one tick after the previous one each ticker wake-up of the loop came (busy, descheduled or paused by the garbage collector).", nil, nil),
		&s.watch.tickLate)
	latency := prometheus.NewDesc("sofadb_request_duration_seconds",
		"Server-side latency of the requests served (OK or not found), from arrival at the replica to its answer.", []string{"op"}, nil)
	for i, op := range []string{"read", "write"} {
		ch <- constHistogram(latency, &ds.Latency[i], op)
	}
}

// constHistogram exports one of the driver's fixed-bucket histograms (seconds).
func constHistogram(desc *prometheus.Desc, h *driver.LatencyHistogram, labels ...string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(driver.LatencyBucketsNs))
	var cum uint64
	for j, ub := range driver.LatencyBucketsNs {
		cum += h.Buckets[j].Load()
		buckets[float64(ub)/1e9] = cum
	}
	cum += h.Buckets[len(driver.LatencyBucketsNs)].Load()
	return prometheus.MustNewConstHistogram(desc, cum, float64(h.SumNs.Load())/1e9, buckets, labels...)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
