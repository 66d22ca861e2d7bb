// Command sofadb is one SofaDB replica: a Multi-Paxos acceptor, proposer and learner with a
// durable log, serving a pipelined binary protocol and HTTP. Start one per replica; see README.md
// for a 3-replica cluster on one machine.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	_ "net/http/pprof"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sofadb/sofadb/internal/buildinfo"
	"github.com/sofadb/sofadb/paxos"
	"github.com/sofadb/sofadb/replica"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "sofadb:", err)
		var ue usageError
		if errors.As(err, &ue) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// usageError is a command line that cannot run: exit status 2, like flag's own errors.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func run(args []string) error {
	if len(args) > 0 && args[0] == "rejoin" {
		return runRejoin(args[1:])
	}
	fs := flag.NewFlagSet("sofadb", flag.ContinueOnError)
	def := replica.DefaultConfig(1, nil, nil, nil) // the defaults have one source: the library's
	electionTime := func(ticks int) string {
		return fmt.Sprintf("%v-%v with the default tick", time.Duration(ticks)*def.TickInterval, time.Duration(2*ticks)*def.TickInterval)
	}
	id := fs.Uint("id", 0, "this replica's id (1..N, at most 65535), a key of -peers")
	version := fs.Bool("version", false, "print the build (module version, commit, Go version) and exit")
	peers := fs.String("peers", "", "peer addresses of every replica: 1=host:port,2=host:port,... (replicas authenticate to each other here)")
	clients := fs.String("clients", "", "binary-protocol addresses of every replica: 1=host:port,... (this replica listens on its own; the others are leader hints)")
	https := fs.String("http", "", "HTTP addresses of every replica: 1=host:port,... (used for redirects to the leader)")
	dataDir := fs.String("data", "", "data directory (created if missing); a restart resumes from it")
	keyFile := fs.String("cluster-key", "", "file holding the shared cluster key (at least 16 bytes; e.g. head -c 32 /dev/urandom)")
	mode := fs.String("mode", "leader", "proposer mode: leader (elected leader, followers forward) or duel (every replica proposes its own commands)")
	backoff := fs.Bool("backoff", def.Core.Backoff, "duel mode: randomized exponential backoff after a preemption (off shows the livelock)")
	reads := fs.String("reads", "lease", "how GET is served: lease (leader reads locally under a lease) or log (every read through the log)")
	redirect := fs.Bool("redirect", false, "a non-leader answers NotLeader / HTTP 307 with the leader's address instead of forwarding")
	fsync := fs.Bool("fsync", def.Fsync, "fsync before acknowledging; -fsync=false is for ablation runs only and is NOT durable")
	tick := fs.Duration("tick", def.TickInterval, "core clock tick; heartbeat and election timeouts are counted in ticks")
	heartbeat := fs.Int("heartbeat-ticks", def.Core.HeartbeatTicks, "ticks between leader heartbeats")
	election := fs.Int("election-ticks", def.Core.ElectionTicks, "ticks without a leader before an election (each replica draws [N, 2N): "+electionTime(def.Core.ElectionTicks)+")")
	preVote := fs.Bool("prevote", def.Core.PreVote, "leader mode: a replica whose election timer runs out first asks whether a majority would elect it, raising no ballot (off: it campaigns at once and can depose a live leader it merely lost touch with)")
	preVoteBehind := fs.Uint64("prevote-behind-slots", def.Core.PreVoteBehindSlotsMax, "grant no pre-vote to a replica whose chosen prefix is more than this many slots below ours: it catches up before it campaigns")
	drift := fs.Int("lease-drift-ticks", def.Core.LeaseDriftTicks, "clock-drift margin: a lease lasts election-ticks minus this after the heartbeat a majority acknowledged")
	batch := fs.Int("batch-bytes", def.Core.BatchBytesMax, "bytes of commands per log slot; 0 disables batching (one command per slot)")
	inflight := fs.Int("inflight-slots", def.Core.InflightSlotsMax, "slots proposed and not yet chosen (pipeline depth)")
	inflightBytes := fs.Int("inflight-bytes", def.Core.InflightBytesMax, "bytes proposed and not yet chosen")
	snapEvery := fs.Uint64("snapshot-every", def.SnapshotEverySlots, "applied slots between state snapshots (which let the log be truncated); 0 disables this trigger")
	snapBytes := fs.Uint64("snapshot-every-bytes", def.SnapshotEveryBytes, "applied command bytes between state snapshots, whichever comes first; 0 disables this trigger")
	snapRatio := fs.Float64("snapshot-state-ratio", def.SnapshotStateRatio, "and a snapshot waits until the bytes applied since the last reach this multiple of its size, so saving costs no more than writing (0: fixed thresholds only)")
	keyMax := fs.Int("key-max", def.KeyBytesMax, "largest key accepted, bytes (larger: 413 / TooLarge)")
	valueMax := fs.Int("value-max", def.ValueBytesMax, "largest value accepted, bytes (larger: 413 / TooLarge)")
	peerFrame := fs.Int("peer-frame-max", def.PeerFrameBytesMax, "largest peer message, bytes (a snapshot travels in fragments, and must fit in this once assembled)")
	snapRate := fs.Int64("snapshot-send-rate", def.SnapshotSendBytesPerSec, "bytes per second of a snapshot sent to one peer (0: unpaced); its fragments leave room for everything else on the connection")
	conns := fs.Int("max-conns", def.ClientConnsMax, "client connections per API; at the limit a new binary connection evicts the one idle longest")
	connsPerSource := fs.Int("max-conns-per-source", def.ClientConnsPerSourceMax, "client connections per API from one source host")
	idleTimeout := fs.Duration("client-idle-timeout", def.ClientIdleTimeout, "a binary connection with nothing in flight and nothing sent for this long is closed")
	inflightReq := fs.Int("max-inflight", def.ClientInflightMax, "requests in flight per binary connection (the reader waits beyond it)")
	timeout := fs.Duration("request-timeout", def.RequestTimeout, "a request not answered by then gets Unavailable (outcome unknown)")
	listenPeer := fs.String("listen-peer", "", "address to bind for peers when it differs from this replica's -peers entry (which the others dial), e.g. 0.0.0.0:7001 in a container")
	listenClient := fs.String("listen-client", "", "address to bind for the binary protocol when it differs from this replica's -clients entry (handed out as a leader hint)")
	listenHTTP := fs.String("listen-http", "", "address to bind for HTTP when it differs from this replica's -http entry (used in redirects)")
	connBytes := fs.Int64("max-conn-request-bytes", def.ClientConnBytesMax, "bytes of one binary connection's requests in flight; beyond it the replica stops reading that connection until replies free some (the client feels TCP back-pressure, the others keep their share)")
	reqBytes := fs.Int64("max-request-bytes", def.ClientBytesMax, "bytes of client requests taken and not yet answered, both APIs together; beyond it requests get Busy (HTTP 429) at once")
	memLimit := fs.Int64("memory-limit", 512<<20, "memory budget besides the state, bytes: the Go runtime's soft memory limit (GOMEMLIMIT) is kept at this plus twice the last snapshot's size, and the collector works harder as the heap nears it; 0 (or the GOMEMLIMIT environment variable) leaves the runtime's limit alone")
	memtable := fs.Int64("memtable-bytes", 0, "badger's memtable size, bytes: the write-ahead log's rotation unit and the size of one level-0 table; it bounds the store's memory (about 3 memtables plus the tables being built from them); 0 means 8 MiB")
	headroom := fs.Int64("disk-headroom", 0, "free space (bytes) on the data directory's file system below which the replica fences itself, before the disk fills; 0 means two memtables and 64 MiB")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	debugAddr := fs.String("debug-addr", "", "serve Go's pprof profiles (net/http/pprof) on this address, e.g. 127.0.0.1:6060; empty disables")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: sofadb -id N -peers ... -clients ... -http ... -data DIR -cluster-key FILE [flags]\n\n"+
			"Runs one SofaDB replica. Every replica gets the same -peers/-clients/-http lists. SIGINT or\n"+
			"SIGTERM shuts it down cleanly; restarted with the same -data it resumes where it stopped.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return nil
		}
		return usageError{"bad flags (see sofadb -h)"}
	}
	if *version {
		fmt.Println(buildinfo.String("sofadb"))
		return nil
	}
	if err := checkFlags(fs, *dataDir); err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	peerAddrs, err := parseAddrs("-peers", *peers)
	if err != nil {
		return err
	}
	clientAddrs, err := parseAddrs("-clients", *clients)
	if err != nil {
		return err
	}
	httpAddrs, err := parseAddrs("-http", *https)
	if err != nil {
		return err
	}
	if *id == 0 || *id > 65535 {
		return usageError{fmt.Sprintf("-id %d: want a replica id from 1 to 65535", *id)}
	}
	if _, ok := peerAddrs[paxos.ReplicaID(*id)]; !ok {
		return usageError{fmt.Sprintf("-id %d is not one of the -peers ids", *id)}
	}
	key, err := os.ReadFile(*keyFile)
	if err != nil {
		return fmt.Errorf("-cluster-key: %w", err)
	}
	cfg := replica.DefaultConfig(paxos.ReplicaID(*id), peerAddrs, clientAddrs, httpAddrs)
	cfg.DataDir, cfg.ClusterKey, cfg.Logger = *dataDir, bytes.TrimSpace(key), logger
	cfg.PeerListen, cfg.ClientListen, cfg.HTTPListen = *listenPeer, *listenClient, *listenHTTP
	if cfg.Core.Mode, err = paxos.ParseMode(*mode); err != nil {
		return err
	}
	if cfg.ReadMode, err = replica.ParseReadMode(*reads); err != nil {
		return err
	}
	cfg.Core.Backoff, cfg.Redirect, cfg.Fsync, cfg.TickInterval = *backoff, *redirect, *fsync, *tick
	cfg.Core.HeartbeatTicks, cfg.Core.ElectionTicks, cfg.Core.LeaseDriftTicks = *heartbeat, *election, *drift
	cfg.Core.PreVote, cfg.Core.PreVoteBehindSlotsMax = *preVote, *preVoteBehind
	cfg.Core.BatchBytesMax, cfg.Core.InflightSlotsMax, cfg.Core.InflightBytesMax = *batch, *inflight, *inflightBytes
	cfg.SnapshotEverySlots, cfg.SnapshotEveryBytes, cfg.SnapshotStateRatio = *snapEvery, *snapBytes, *snapRatio
	cfg.KeyBytesMax, cfg.ValueBytesMax = *keyMax, *valueMax
	cfg.SnapshotSendBytesPerSec = *snapRate
	cfg.PeerFrameBytesMax, cfg.ClientConnsMax, cfg.ClientInflightMax, cfg.RequestTimeout = *peerFrame, *conns, *inflightReq, *timeout
	cfg.ClientConnsPerSourceMax, cfg.ClientIdleTimeout = *connsPerSource, *idleTimeout
	cfg.DiskHeadroomBytes = *headroom
	cfg.Disk.MemTableBytes = *memtable
	cfg.ClientBytesMax, cfg.ClientConnBytesMax = *reqBytes, *connBytes
	if os.Getenv("GOMEMLIMIT") == "" {
		// Every queue the network can fill is bounded in bytes (requests, the core's queue and
		// pipeline, peer queues), and so is the store's (memtables, table builds); the limit
		// makes the collector return memory before the process grows past the budget plus the
		// state, instead of at twice the live heap. See README's "Memory".
		cfg.MemoryBudgetBytes = *memLimit
	}
	cfg.ClientFrameBytesMax = max(cfg.ClientFrameBytesMax, *keyMax+*valueMax+1024)
	s, err := replica.New(cfg)
	if err != nil {
		return err
	}
	if *debugAddr != "" {
		// The default mux carries net/http/pprof's handlers (imported for that). Off unless asked:
		// profiles reveal internals and cost CPU while taken.
		go func() { logger.Warn("debug server stopped", "err", http.ListenAndServe(*debugAddr, nil)) }()
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return s.Run(ctx)
}

// checkFlags refuses, before anything is opened, what the flags alone show to be wrong: every
// missing required flag at once, stray arguments, a negative size or count (naming the flag), and a
// data path that exists but is not a directory.
func checkFlags(fs *flag.FlagSet, dataDir string) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var problems []string
	var missing []string
	for _, name := range []string{"id", "peers", "clients", "http", "data", "cluster-key"} {
		if !set[name] {
			missing = append(missing, "-"+name)
		}
	}
	if len(missing) > 0 {
		problems = append(problems, "missing "+strings.Join(missing, ", "))
	}
	if fs.NArg() > 0 {
		problems = append(problems, fmt.Sprintf("unexpected arguments %q (every setting is a -flag)", fs.Args()))
	}
	for _, name := range []string{"batch-bytes", "inflight-slots", "inflight-bytes", "key-max", "value-max", "peer-frame-max", "snapshot-send-rate",
		"max-conns", "max-conns-per-source", "max-inflight", "disk-headroom", "max-request-bytes", "max-conn-request-bytes", "memory-limit", "memtable-bytes", "heartbeat-ticks", "election-ticks", "lease-drift-ticks"} {
		if v, err := strconv.ParseInt(fs.Lookup(name).Value.String(), 10, 64); err == nil && v < 0 {
			problems = append(problems, fmt.Sprintf("-%s %d: must not be negative", name, v))
		}
	}
	if v, err := strconv.ParseFloat(fs.Lookup("snapshot-state-ratio").Value.String(), 64); err == nil && !(v >= 0 && v <= 1000) {
		problems = append(problems, fmt.Sprintf("-snapshot-state-ratio %v: must be between 0 and 1000", v))
	}
	for _, name := range []string{"inflight-slots", "inflight-bytes", "key-max", "value-max", "peer-frame-max", "max-conns",
		"max-inflight", "max-conn-request-bytes", "heartbeat-ticks", "election-ticks"} {
		if v, err := strconv.ParseInt(fs.Lookup(name).Value.String(), 10, 64); err == nil && v == 0 {
			problems = append(problems, fmt.Sprintf("-%s 0: must be at least 1", name))
		}
	}
	if dataDir != "" {
		if st, err := os.Stat(dataDir); err == nil && !st.IsDir() {
			problems = append(problems, fmt.Sprintf("-data %s is a file, not a directory", dataDir))
		}
	}
	if len(problems) > 0 {
		return usageError{strings.Join(problems, "; ") + " (see sofadb -h)"}
	}
	return nil
}

// parseAddrs reads "1=host:port,2=host:port".
func parseAddrs(flagName, s string) (map[paxos.ReplicaID]string, error) {
	out := map[paxos.ReplicaID]string{}
	if s == "" {
		return nil, fmt.Errorf("%s is required", flagName)
	}
	for _, part := range strings.Split(s, ",") {
		idStr, addr, ok := strings.Cut(strings.TrimSpace(part), "=")
		n, err := strconv.ParseUint(idStr, 10, 16)
		if !ok || err != nil || n == 0 || addr == "" {
			return nil, fmt.Errorf("%s: %q is not id=host:port", flagName, part)
		}
		if _, dup := out[paxos.ReplicaID(n)]; dup {
			return nil, fmt.Errorf("%s: replica %d listed twice", flagName, n)
		}
		out[paxos.ReplicaID(n)] = addr
	}
	return out, nil
}

// runRejoin is `sofadb rejoin`: the way back for a replica whose data directory it refuses to
// start on (a corrupt record, lost writes). See replica/rejoin.go for why it is safe, and when not.
func runRejoin(args []string) error {
	fs := flag.NewFlagSet("sofadb rejoin", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), `usage: sofadb rejoin -id N -data DIR -http 1=host:port,2=host:port,... [-yes]

Empties replica N's data directory (keeping its identity) so that it starts again as a learner:
it neither promises nor votes until it has learned every slot any other replica held a vote for,
and its promise starts above every ballot they promised. Every other replica must be up and
healthy (it refuses otherwise, and changes nothing); replica N must be stopped. Without -yes it
prints the plan and changes nothing. Then start replica N as before.`)
		fs.PrintDefaults()
	}
	id := fs.Uint("id", 0, "the replica to rejoin")
	dataDir := fs.String("data", "", "its data directory")
	https := fs.String("http", "", "HTTP addresses of every replica: 1=host:port,... (as given to the replicas)")
	yes := fs.Bool("yes", false, "empty the directory and write the rejoin mark (without it: only print the plan)")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if *id == 0 || *id > 65535 || *dataDir == "" || *https == "" || fs.NArg() > 0 {
		fs.Usage()
		return usageError{"rejoin: -id, -data and -http are required"}
	}
	addrs, err := parseAddrs("-http", *https)
	if err != nil {
		return usageError{err.Error()}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	plan, err := replica.PlanRejoin(ctx, paxos.ReplicaID(*id), addrs)
	if err != nil {
		return err
	}
	fmt.Printf("rejoin plan for replica %d: promise floor %v, votes once slot %d is chosen and known\n", plan.ID, plan.PromisedFloor, plan.VoteFrom)
	for _, other := range slices.Sorted(maps.Keys(plan.From)) {
		fmt.Printf("  replica %d: %s\n", other, plan.From[other])
	}
	if !*yes {
		fmt.Printf("nothing changed; run again with -yes to empty %s (keeping its identity) and mark it rejoining\n", *dataDir)
		return nil
	}
	if err := replica.ApplyRejoin(*dataDir, plan); err != nil {
		return err
	}
	fmt.Printf("%s emptied and marked rejoining; start replica %d as before\n", *dataDir, plan.ID)
	return nil
}
