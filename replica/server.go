package replica

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
	"golang.org/x/sync/errgroup"

	"github.com/sofadb/sofadb/disk"
	"github.com/sofadb/sofadb/driver"
	"github.com/sofadb/sofadb/kv"
	"github.com/sofadb/sofadb/paxos"
	"github.com/sofadb/sofadb/wire"
)

// Server is one replica process: the loop goroutine that drives the driver (package driver), the
// peer transport, the client listeners and the background executor. New opens its disk and restores
// the core; Run serves until the context ends. Only the loop touches the driver; everything else
// talks to it through bounded channels.
type Server struct {
	cfg   Config
	log   *slog.Logger
	store *disk.Store
	drv   *driver.Driver
	tr    *transport
	exec  *executor

	peerIn    chan paxos.Message
	reqs      chan *driver.Request
	statusReq chan chan Status
	published atomic.Pointer[Status] // the loop's status, published once per tick for /metrics
	bgDone    <-chan func()
	diskLow   chan error    // the disk watcher's reason to fence (see diskspace.go)
	stopped   chan struct{} // closed when the loop has returned: nobody answers requests any more

	fr      *front // what client connections and HTTP handlers see
	httpSrv *fasthttp.Server
	httpLn  net.Listener

	stats serverStats
	watch *loopWatch

	rejoin *rejoinMark // while the replica rejoins as a learner (loop-owned)
}

// serverStats are the process shell's counters, read by /metrics from other goroutines (the
// driver keeps its own: driver.Stats).
type serverStats struct {
	busy               atomic.Uint64 // requests refused before reaching the loop (its queue was full)
	badRequests        atomic.Uint64 // requests refused as malformed before reaching the loop (400 / BadRequest)
	tooLarge           atomic.Uint64 // requests refused over a limit before reaching the loop (413 / TooLarge)
	badClientConns     atomic.Uint64 // closed for malformed input
	refusedClientConns atomic.Uint64 // refused at accept: over a connection limit
	busyBytes          atomic.Uint64 // requests refused Busy because ClientBytesMax was reached
	connBytesWaits     atomic.Uint64 // times a binary connection's reader waited for its byte budget
	evictedClientConns atomic.Uint64 // closed to make room: idle the longest when the table was full
	idleClientConns    atomic.Uint64 // closed after ClientIdleTimeout with nothing in flight
	memLimit           atomic.Int64  // the soft memory limit keepMemoryLimit last set (0: never)
	clientConns        atomic.Int64
}

// refusalLogInterval is how often refused connections are summed up in the log (see refusalLog).
const refusalLogInterval = 10 * time.Second

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
	if cfg.DiskHeadroomBytes == 0 {
		mem := cfg.Disk.MemTableBytes
		if mem == 0 {
			mem = disk.DefaultMemTableBytes
		}
		cfg.DiskHeadroomBytes = defaultHeadroom(mem)
	}
	// The ports are bound before the data directory is opened: a port already taken (a second
	// copy of this replica, a typo) fails at once with the address named, not after recovery
	// or on the directory's lock.
	lns, err := listen(&cfg)
	if err != nil {
		return nil, err
	}
	store, rec, err := disk.Open(cfg.DataDir, cfg.Disk)
	if err != nil {
		lns.close()
		return nil, err
	}
	defer func() {
		if err != nil {
			lns.close()
		}
	}()
	// A slot is one disk record: the largest batch, and the largest single command (which gets a
	// slot of its own whatever the batch limit), must fit one, with room for the entry's header.
	// Otherwise one large PUT would fail the record, which the runtime must treat as a disk failure.
	const entryOverheadBytes = 64
	largestCmd := cfg.KeyBytesMax + cfg.ValueBytesMax + 24
	if max(cfg.Core.BatchBytesMax, largestCmd)+entryOverheadBytes >= store.RecordBytesMax() {
		store.Close()
		err = fmt.Errorf("%w: batch bytes %d or key+value limits %d+%d do not fit the store's record limit %d",
			ErrConfig, cfg.Core.BatchBytesMax, cfg.KeyBytesMax, cfg.ValueBytesMax, store.RecordBytesMax())
		return nil, err
	}
	ident, err := loadIdentity(cfg.DataDir, cfg.ID)
	if err != nil {
		store.Close()
		return nil, err
	}
	book, err := openPeerBook(cfg.DataDir)
	if err != nil {
		store.Close()
		return nil, err
	}
	mark, err := readRejoin(cfg.DataDir)
	if err != nil {
		store.Close()
		return nil, err
	}
	if mark != nil {
		// Rejoining: the promise floor is durable before anything can be answered, and the core
		// votes only once its chosen prefix reaches the mark (see rejoin.go).
		floor := paxos.Ballot(mark.PromisedFloor)
		if rec.Durable.Promised < floor {
			var tk disk.Ticket
			if tk, err = store.Persist(&paxos.Ready{Promised: floor, MustSync: true}); err == nil {
				err = tk.Wait()
			}
			if err != nil {
				store.Close()
				return nil, fmt.Errorf("replica: rejoin: persist the promise floor: %w", err)
			}
			rec.Durable.Promised = floor
		}
		cfg.Core.VoteFromCommit = mark.VoteFrom
		cfg.Logger.Warn("REJOINING as a learner: no promise or vote until every slot up to vote_from is chosen and known here",
			"replica", cfg.ID, "vote_from", mark.VoteFrom, "promised_floor", floor.String(), "planned_from", mark.From)
	}
	state := kv.NewState()
	if rec.Snapshot != nil {
		if err = state.Restore(rec.Snapshot); err != nil {
			store.Close()
			err = fmt.Errorf("replica: restore snapshot: %w", err)
			return nil, err
		}
	}
	cfg.Core.Seed ^= uint64(time.Now().UnixNano()) // a restarted replica must not replay its old timeouts
	s := &Server{cfg: cfg, log: cfg.Logger.With("replica", cfg.ID), store: store,
		peerIn: make(chan paxos.Message, 4096), reqs: make(chan *driver.Request, cfg.RequestQueueMax),
		statusReq: make(chan chan Status), stopped: make(chan struct{}), diskLow: make(chan error, 1), rejoin: mark}
	s.fr = &front{cfg: &s.cfg, log: s.log, stats: &s.stats, reqs: s.reqs, stopped: s.stopped, status: s.Status,
		ln: lns.client, replies: map[*clientConn][]wire.Response{},
		table:  newConnTable(cfg.ClientConnsMax, cfg.ClientConnsPerSourceMax, cfg.ClientEvictIdleAfter),
		refuse: newRefusalLog(s.log, refusalLogInterval)}
	var connState func(net.Conn, fasthttp.ConnState)
	if lns.http != nil {
		hl := &httpListener{Listener: lns.http, table: newConnTable(cfg.ClientConnsMax, cfg.ClientConnsPerSourceMax, cfg.ClientEvictIdleAfter),
			refuse: s.fr.refuse, stats: &s.stats}
		s.httpLn, connState = hl, hl.connState
	}
	s.exec = newExecutor(16)
	s.bgDone = s.exec.done
	s.tr = newTransport(&s.cfg, s.log, ident, book, s.deliver)
	s.watch = newLoopWatch(s.log, s.cfg.TickInterval, s.cfg.Core.ElectionTicks)
	s.tr.ln = lns.peer
	if s.httpLn != nil {
		s.httpSrv = s.fr.newHTTPServer(connState)
	}
	dcfg := driver.Config{Core: cfg.Core, TickInterval: cfg.TickInterval, ReadMode: cfg.ReadMode, Redirect: cfg.Redirect,
		Fsync: cfg.Fsync, SnapshotEverySlots: cfg.SnapshotEverySlots, SnapshotEveryBytes: cfg.SnapshotEveryBytes, SnapshotStateRatio: cfg.SnapshotStateRatio,
		SnapshotBytesMax: cfg.PeerFrameBytesMax, RequestTimeout: cfg.RequestTimeout, Seed: cfg.Core.Seed, Logger: s.log}
	s.drv, err = driver.New(dcfg, wallClock{}, storage{store}, transportIO{s.tr}, s.exec, driver.Hooks{}, state, &rec.Durable)
	if err != nil {
		store.Close()
		return nil, err
	}
	s.drv.Stats().SnapshotBytes.Store(int64(len(rec.Snapshot))) // until the next save: the memory limit counts the state
	s.log.Info("replica opened", "dir", cfg.DataDir, "identity", identityString(ident), "applied", state.Applied(), "promised", rec.Durable.Promised,
		"slots", len(rec.Durable.Entries), "mode", cfg.Core.Mode, "reads", cfg.ReadMode, "fsync", cfg.Fsync)
	if !cfg.Fsync {
		s.log.Warn("FSYNC IS OFF: acknowledged writes are NOT durable; use only for ablation runs")
	}
	s.fr.metrics = s.newMetricsHandler()
	return s, nil
}

// Run serves peers and clients until ctx ends, then shuts down cleanly: listeners close, the loop
// stops, and everything queued for the disk is synced before the store closes.
func (s *Server) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Binary client connections are closed once the loop has stopped (and answered what it could):
	// an idle client must not hold up the shutdown.
	clientCtx, closeClients := context.WithCancel(context.Background())
	defer closeClients()
	// The shell's goroutines run under one errgroup: if one fails (the HTTP server stops serving on
	// its own), its context stops the loop and the replica exits with that error instead of
	// carrying on deaf.
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { s.exec.run(gctx); return nil })
	g.Go(func() error { s.tr.run(gctx); return nil })
	g.Go(func() error { s.watchDisk(gctx); return nil })
	if s.cfg.MemoryBudgetBytes > 0 {
		g.Go(func() error { s.keepMemoryLimit(gctx); return nil })
	}
	g.Go(func() error { s.fr.serveClients(clientCtx); return nil })
	if s.httpSrv != nil {
		g.Go(func() error {
			err := s.httpSrv.Serve(s.httpLn)
			if ctx.Err() == nil { // not our shutdown: fasthttp returns nil when its listener closes
				return fmt.Errorf("replica: http server stopped serving: %v", err)
			}
			return nil
		})
	}
	s.log.Info("replica serving", "peer", s.cfg.PeerAddrs[s.cfg.ID], "client", s.fr.ln.Addr().String(), "http", s.cfg.HTTPAddrs[s.cfg.ID])
	err := s.loop(gctx)
	close(s.stopped)
	cancel() // from here on, a listener closing is the shutdown, not a failure
	closeClients()
	s.closeListeners()
	if gerr := g.Wait(); err == nil {
		err = gerr
	}
	s.fr.conns.Wait()
	if cerr := s.store.Close(); cerr != nil && err == nil {
		err = cerr
	}
	s.log.Info("replica stopped")
	return err
}

// listeners are a replica's three bound ports (http is nil with DisableHTTP).
type listeners struct{ peer, client, http net.Listener }

// listen binds cfg's listen addresses (the advertised ones unless told otherwise).
func listen(cfg *Config) (*listeners, error) {
	lns := &listeners{}
	bind := func(what, addr string) (net.Listener, error) {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			lns.close()
			return nil, fmt.Errorf("replica: %s listener: %w", what, err)
		}
		return ln, nil
	}
	var err error
	if lns.peer, err = bind("peer", cfg.listenAddr(cfg.PeerListen, cfg.PeerAddrs)); err != nil {
		return nil, err
	}
	if lns.client, err = bind("client", cfg.listenAddr(cfg.ClientListen, cfg.ClientAddrs)); err != nil {
		return nil, err
	}
	if !cfg.DisableHTTP {
		if lns.http, err = bind("http", cfg.listenAddr(cfg.HTTPListen, cfg.HTTPAddrs)); err != nil {
			return nil, err
		}
	}
	return lns, nil
}

func (l *listeners) close() {
	for _, ln := range []net.Listener{l.peer, l.client, l.http} {
		if ln != nil {
			ln.Close()
		}
	}
}

// Close releases a Server that will not Run: its ports and its store. (Run closes both itself.)
func (s *Server) Close() error {
	(&listeners{peer: s.tr.ln, client: s.fr.ln, http: s.httpLn}).close()
	return s.store.Close()
}

func (s *Server) closeListeners() {
	if s.fr.ln != nil {
		s.fr.ln.Close()
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
