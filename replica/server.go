package replica

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/sofadb/sofadb/disk"
	"github.com/sofadb/sofadb/paxos"
	"github.com/sofadb/sofadb/wire"
)

// Server is one replica process. New opens its disk and restores the core; Run serves until the
// context ends. Only the loop goroutine touches core, state and the pending tables; everything
// else talks to it through bounded channels.
type Server struct {
	cfg   Config
	log   *slog.Logger
	store *disk.Store
	core  *paxos.Replica
	state *disk.State
	tr    *transport

	peerIn    chan paxos.Message
	reqs      chan *request
	statusReq chan chan Status
	snapDone  chan snapResult
	bg        chan func()
	stopped   chan struct{} // closed when the loop has returned: nobody answers requests any more

	// Owned by the loop.
	pending      map[cmdKey][]*request
	proposeBuf   []paxos.Command
	proposeReqs  []*request
	afterQ       []afterItem
	local        []paxos.Message
	deadlines    []*request
	readWait     []*request
	results      []disk.Result
	snapshotting bool
	lastSnap     uint64
	bytesSince   uint64  // command bytes applied since the last snapshot began
	snapJitter   float64 // this cycle's stretch of the snapshot thresholds, in [0, 0.5)
	lastTick     time.Time
	peerSnap     *disk.State // a peer snapshot validated by stepPeer, for installSnapshot
	rng          *rand.Rand  // the runtime's own randomness (snapshot jitter, HTTP client ids)
	ctx          context.Context
	snapWG       sync.WaitGroup // snapshot encodings for lagging peers
	failed       error
	leader       paxos.ReplicaID
	replies      map[*clientConn][]wire.Response // binary replies of this loop iteration, per connection

	clientLn net.Listener
	httpSrv  *fasthttp.Server
	httpLn   net.Listener
	connSem  chan struct{}
	conns    sync.WaitGroup
	httpSess httpSessions // sessions for HTTP requests; the loop's

	stats serverStats
}

// serverStats are counters read by /metrics from other goroutines.
type serverStats struct {
	byStatus       [16]atomic.Uint64 // replies by wire.Status
	timeouts       atomic.Uint64
	leaseReads     atomic.Uint64
	logReads       atomic.Uint64
	busy           atomic.Uint64
	badClientConns atomic.Uint64
	clientConns    atomic.Int64
	snapshots      atomic.Uint64
	snapshotErrors atomic.Uint64
}

type cmdKey struct{ client, seq uint64 }

// request is one client operation waiting for its answer. reply must not block: binary
// connections reserve room for every reply before submitting, HTTP handlers wait on a buffered
// channel.
type request struct {
	cmd       paxos.Command
	reply     func(response)
	deadline  time.Time
	readIndex uint64 // lease reads: serve once applied through here
	done      bool
	http      bool // an HTTP request: the loop gives it a session (see httpSessions)
	internal  bool // the loop's own request (an OpOpen for HTTP sessions): not counted in replies
}

type response struct {
	status wire.Status
	value  []byte
	leader paxos.ReplicaID
}

func (r *request) answer(s *Server, resp response) {
	if r.done {
		return
	}
	r.done = true
	if int(resp.status) < len(s.stats.byStatus) && !r.internal {
		s.stats.byStatus[resp.status].Add(1)
	}
	r.reply(resp)
}

type afterItem struct {
	seq  uint64
	msgs []paxos.Message
}

type snapResult struct {
	slot uint64
	err  error
}

// New opens the replica's data directory and rebuilds its state: the latest snapshot, then the
// durable acceptor state the core replays from.
func New(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.Core.ID = cfg.ID
	cfg.Core.Peers = cfg.Core.Peers[:0]
	for id := range cfg.PeerAddrs {
		cfg.Core.Peers = append(cfg.Core.Peers, id)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Disk.Logger == nil {
		cfg.Disk.Logger = cfg.Logger
	}
	store, rec, err := disk.Open(cfg.DataDir, cfg.Disk)
	if err != nil {
		return nil, err
	}
	// A slot is one disk record: the largest batch, and the largest single command (which gets a
	// slot of its own whatever the batch limit), must fit one, with room for the entry's header.
	// Otherwise one large PUT would fail the record, which the runtime must treat as a disk failure.
	const entryOverheadBytes = 64
	largestCmd := cfg.KeyBytesMax + cfg.ValueBytesMax + 24
	if max(cfg.Core.BatchBytesMax, largestCmd)+entryOverheadBytes >= store.RecordBytesMax() {
		store.Close()
		return nil, fmt.Errorf("%w: batch bytes %d or key+value limits %d+%d do not fit the store's record limit %d",
			ErrConfig, cfg.Core.BatchBytesMax, cfg.KeyBytesMax, cfg.ValueBytesMax, store.RecordBytesMax())
	}
	state := disk.NewState()
	if rec.Snapshot != nil {
		if err := state.Restore(rec.Snapshot); err != nil {
			store.Close()
			return nil, fmt.Errorf("replica: restore snapshot: %w", err)
		}
	}
	cfg.Core.Seed ^= uint64(time.Now().UnixNano()) // a restarted replica must not replay its old timeouts
	core, err := paxos.New(cfg.Core, &rec.Durable)
	if err != nil {
		store.Close()
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger.With("replica", cfg.ID), store: store, core: core, state: state,
		peerIn: make(chan paxos.Message, 4096), reqs: make(chan *request, cfg.RequestQueueMax),
		statusReq: make(chan chan Status), snapDone: make(chan snapResult, 4), bg: make(chan func(), 16), stopped: make(chan struct{}),
		pending: map[cmdKey][]*request{}, lastSnap: state.Applied(), replies: map[*clientConn][]wire.Response{},
		connSem: make(chan struct{}, cfg.ClientConnsMax)}
	s.ctx = context.Background() // Run replaces it with the one that stops the replica
	s.rng = rand.New(rand.NewPCG(cfg.Core.Seed, uint64(cfg.ID)))
	s.snapJitter = s.rng.Float64() / 2 // from the first cycle on: replicas start together
	s.tr = newTransport(s)
	s.log.Info("replica opened", "dir", cfg.DataDir, "applied", state.Applied(), "promised", rec.Durable.Promised,
		"slots", len(rec.Durable.Entries), "mode", cfg.Core.Mode, "reads", cfg.ReadMode, "fsync", cfg.Fsync)
	if !cfg.Fsync {
		s.log.Warn("FSYNC IS OFF: acknowledged writes are NOT durable; use only for ablation runs")
	}
	return s, nil
}

// Run serves peers and clients until ctx ends, then shuts down cleanly: listeners close, the loop
// stops, and everything queued for the disk is synced before the store closes.
func (s *Server) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.ctx = ctx
	if err := s.listen(); err != nil {
		s.store.Close()
		return err
	}
	if err := s.tr.start(ctx); err != nil {
		s.closeListeners()
		s.store.Close()
		return err
	}
	// Binary client connections are closed once the loop has stopped (and answered what it could):
	// an idle client must not hold up the shutdown.
	clientCtx, closeClients := context.WithCancel(context.Background())
	defer closeClients()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); s.background(ctx) }()
	go func() { defer wg.Done(); s.serveClients(clientCtx) }()
	if s.httpSrv != nil {
		wg.Add(1)
		go func() { defer wg.Done(); s.httpSrv.Serve(s.httpLn) }()
	}
	s.log.Info("replica serving", "peer", s.cfg.PeerAddrs[s.cfg.ID], "client", s.clientLn.Addr().String(), "http", s.cfg.HTTPAddrs[s.cfg.ID])
	err := s.loop(ctx)
	close(s.stopped)
	cancel()
	closeClients()
	s.closeListeners()
	s.tr.stop()
	wg.Wait()
	s.snapWG.Wait()
	s.conns.Wait()
	if cerr := s.store.Close(); cerr != nil && err == nil {
		err = cerr
	}
	s.log.Info("replica stopped")
	return err
}

func (s *Server) listen() error {
	ln, err := net.Listen("tcp", s.cfg.ClientAddrs[s.cfg.ID])
	if err != nil {
		return fmt.Errorf("replica: client listener: %w", err)
	}
	s.clientLn = ln
	if s.cfg.DisableHTTP {
		return nil
	}
	hl, err := net.Listen("tcp", s.cfg.HTTPAddrs[s.cfg.ID])
	if err != nil {
		ln.Close()
		return fmt.Errorf("replica: http listener: %w", err)
	}
	s.httpLn = hl
	s.httpSrv = s.newHTTPServer()
	return nil
}

func (s *Server) closeListeners() {
	if s.clientLn != nil {
		s.clientLn.Close()
	}
	if s.httpSrv != nil {
		s.httpSrv.Shutdown()
	}
}

// deliver hands a peer message to the loop, blocking (and so slowing the peer's TCP stream) while
// the loop is behind.
func (s *Server) deliver(ctx context.Context, m paxos.Message) bool {
	select {
	case s.peerIn <- m:
		return true
	case <-ctx.Done():
		return false
	}
}

// submit hands a client request to the loop, or refuses it Busy at once (answering on the caller's
// goroutine) when the loop's queue is full: an overloaded replica sheds load instead of queueing
// without bound.
func (s *Server) submit(r *request) {
	select {
	case s.reqs <- r:
	default:
		s.stats.busy.Add(1)
		r.answer(s, response{status: wire.StatusBusy})
	}
}

// background runs slow disk work (snapshots, truncation) off the loop, one job at a time.
func (s *Server) background(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case job := <-s.bg:
			job()
		}
	}
}

var errStopped = errors.New("replica stopped")
