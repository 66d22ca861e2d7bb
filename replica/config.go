// Package replica is SofaDB's replica process at run time: one goroutine owns the Paxos core and
// drives it (persist through disk/, send, apply, answer), a peer transport carries wire frames
// between authenticated replicas, and two client APIs (a pipelined binary protocol and HTTP via
// fasthttp) feed the same path.
package replica

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/sofadb/sofadb/disk"
	"github.com/sofadb/sofadb/driver"
	"github.com/sofadb/sofadb/paxos"
)

// ReadMode says how GET is served (driver.ReadMode).
type ReadMode = driver.ReadMode

// Read modes.
const (
	ReadLease = driver.ReadLease
	ReadLog   = driver.ReadLog
)

// ParseReadMode reads a ReadMode from a flag value.
func ParseReadMode(s string) (ReadMode, error) { return driver.ParseReadMode(s) }

// Config is everything a replica process needs. Durations are wall-clock; the core counts ticks of
// TickInterval.
type Config struct {
	ID paxos.ReplicaID
	// PeerAddrs, ClientAddrs and HTTPAddrs map every replica (this one included) to its addresses:
	// this replica listens on its own, dials its peers, and hands out the others as leader hints.
	PeerAddrs   map[paxos.ReplicaID]string
	ClientAddrs map[paxos.ReplicaID]string
	HTTPAddrs   map[paxos.ReplicaID]string
	// PeerListen, ClientListen and HTTPListen are the addresses this replica binds when they
	// differ from those the others reach it at (its entries above): in a container, 0.0.0.0:7001
	// behind the address the network gives it. Empty: bind the advertised address.
	PeerListen, ClientListen, HTTPListen string
	DataDir                              string
	// ClusterKey authenticates peers: a replica that cannot prove it holds it is refused.
	ClusterKey []byte

	// Core is the Paxos configuration (ID and Peers are filled in from above).
	Core         paxos.Config
	TickInterval time.Duration
	// Fsync off skips every fsync: for ablation runs only, and loudly logged.
	Fsync    bool
	ReadMode ReadMode
	// Redirect makes a non-leader answer NotLeader (HTTP 307) with the leader's address instead of
	// forwarding the command to the leader.
	Redirect bool
	// SnapshotEverySlots and SnapshotEveryBytes say how many applied slots, or bytes of applied
	// commands, pass between snapshots (which let the log be truncated, in memory and on disk):
	// whichever comes first. With batching a slot can hold many commands, so the byte bound is what
	// keeps a busy replica's memory flat. 0 disables that trigger; both 0 disables snapshots.
	SnapshotEverySlots uint64
	SnapshotEveryBytes uint64
	// SnapshotStateRatio: see driver.Config; 1 by default.
	SnapshotStateRatio float64

	KeyBytesMax       int
	ValueBytesMax     int
	PeerFrameBytesMax int // the largest peer message (a snapshot, assembled from its fragments): this bounds the state size too
	// SnapshotSendBytesPerSec paces the fragments of a snapshot sent to one peer (0: unpaced), so
	// that a transfer takes a bounded share of the link, the CPU and the receiver's disk.
	SnapshotSendBytesPerSec int64
	ClientFrameBytesMax     int
	ClientConnsMax          int
	// ClientConnsPerSourceMax caps the binary connections of one source host; at ClientConnsMax
	// a new connection evicts the one idle longest (no request in flight for ClientEvictIdleAfter);
	// a connection idle for ClientIdleTimeout is closed. HTTP keeps its own per-source cap.
	ClientConnsPerSourceMax int
	ClientEvictIdleAfter    time.Duration
	ClientIdleTimeout       time.Duration
	ClientInflightMax       int // per binary connection
	// ClientConnBytesMax bounds the bytes of one binary connection's requests in flight: beyond
	// it its reader stops reading until replies free some (TCP pushes back on the client), so one
	// connection pipelining large values can neither take the replica-wide budget (ClientBytesMax)
	// from the others nor make the replica spend CPU reading and refusing what it cannot take.
	ClientConnBytesMax int64
	PeerQueueMax       int // messages waiting for one peer's writer; more are dropped (Paxos tolerates loss)
	PeerQueueBytesMax  int // and their approximate bytes
	RequestQueueMax    int // client requests waiting for the loop; more are refused Busy
	// ClientBytesMax bounds the bytes of client requests taken and not yet answered, over all
	// connections of both APIs; beyond it requests are refused Busy at once.
	ClientBytesMax     int64
	RequestTimeout     time.Duration
	HandshakeTimeout   time.Duration
	UnauthenticatedMax int // peer connections still in their handshake
	// UnauthenticatedPerSourceMax is how many of those one source host may hold.
	UnauthenticatedPerSourceMax int
	Logger                      *slog.Logger
	// Disk configures the store (queue bounds, memtable size, fault injection in tests); its
	// Logger defaults to Logger.
	Disk disk.Options
	// MemoryBudgetBytes, when above 0, is what the replica may use besides its state: the Go
	// runtime's soft memory limit (GOMEMLIMIT) is kept at this plus twice the last snapshot's size
	// (the state, and the copy a snapshot save encodes), so that the collector returns memory
	// before the process grows past it instead of at twice the live heap, whatever the state's
	// size. Zero leaves the runtime's limit alone (tests that run several replicas in one process).
	MemoryBudgetBytes int64
	// DiskHeadroomBytes is the free space below which the replica fences itself (see
	// diskspace.go); 0 means two memtables and 64 MiB. FreeBytes reads the free space of a
	// directory's file system (nil: statfs; tests replace it).
	DiskHeadroomBytes int64
	FreeBytes         func(dir string) (uint64, error)
	DisableHTTP       bool
}

// DefaultConfig returns a configuration for replica id in a cluster with the given addresses.
func DefaultConfig(id paxos.ReplicaID, peers, clients, https map[paxos.ReplicaID]string) Config {
	var ids []paxos.ReplicaID
	for p := range peers {
		ids = append(ids, p)
	}
	core := paxos.DefaultConfig(id, ids)
	// With a 10 ms tick: heartbeat 20 ms, election 150-300 ms, resend 40 ms.
	core.HeartbeatTicks, core.ElectionTicks, core.ResendTicks, core.LeaseDriftTicks = 2, 15, 4, 3
	core.InflightSlotsMax = 256
	// Slots are chosen in order, so a command proposed behind a full window waits for all of it:
	// under a burst of 60 KB values from one client, an 8 MiB window held a light client's writes
	// behind about half a second of someone else's data (p50 140-300 ms, 700-3,400 timeouts of
	// 60,000 in scripts/overload.sh). At 1 MiB: p50 60-95 ms, no timeouts, and the burst's own
	// throughput unchanged (5 runs). Small values never fill it: 20k writes/s of 128 B keep about
	// 15 KB in flight.
	core.InflightBytesMax = 1 << 20
	core.Backoff = true // duel mode only; -backoff=false shows the livelock
	core.BatchBytesMax = 256 << 10
	return Config{
		ID: id, PeerAddrs: peers, ClientAddrs: clients, HTTPAddrs: https,
		Core: core, TickInterval: 10 * time.Millisecond, Fsync: true, SnapshotEverySlots: 100_000, SnapshotEveryBytes: 64 << 20, SnapshotStateRatio: 1,
		KeyBytesMax: 1 << 10, ValueBytesMax: 64 << 10,
		PeerFrameBytesMax: 256 << 20, SnapshotSendBytesPerSec: 64 << 20, ClientFrameBytesMax: 1 << 20,
		ClientConnsMax: 1024, ClientConnsPerSourceMax: 256, ClientEvictIdleAfter: time.Second, ClientIdleTimeout: 2 * time.Minute,
		ClientInflightMax: 1024, ClientConnBytesMax: 2 << 20, PeerQueueMax: 1 << 16, PeerQueueBytesMax: 64 << 20, ClientBytesMax: 64 << 20,
		RequestQueueMax: 1 << 16,
		RequestTimeout:  10 * time.Second, HandshakeTimeout: 2 * time.Second, UnauthenticatedMax: 32,
		UnauthenticatedPerSourceMax: 4,
		Logger:                      slog.Default(),
	}
}

// ErrConfig is returned for an unusable configuration.
var ErrConfig = errors.New("replica: invalid config")

func (c *Config) validate() error {
	bad := func(f string, a ...any) error { return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(f, a...)) }
	if c.PeerAddrs[c.ID] == "" || c.ClientAddrs[c.ID] == "" || (!c.DisableHTTP && c.HTTPAddrs[c.ID] == "") {
		return bad("replica %d needs its own peer, client and HTTP addresses", c.ID)
	}
	for id := range c.PeerAddrs {
		if c.ClientAddrs[id] == "" {
			return bad("replica %d has a peer address but no client address", id)
		}
	}
	switch {
	case c.DataDir == "":
		return bad("no data directory")
	case len(c.ClusterKey) < 16:
		return bad("cluster key of %d bytes: need at least 16", len(c.ClusterKey))
	case c.TickInterval <= 0 || c.RequestTimeout <= 0 || c.HandshakeTimeout <= 0:
		return bad("tick, request and handshake durations must be positive")
	case c.KeyBytesMax <= 0 || c.ValueBytesMax <= 0 || c.ClientFrameBytesMax < c.KeyBytesMax+c.ValueBytesMax+64:
		return bad("key %d / value %d limits do not fit the client frame limit %d", c.KeyBytesMax, c.ValueBytesMax, c.ClientFrameBytesMax)
	case c.ClientConnsPerSourceMax <= 0 || c.ClientEvictIdleAfter <= 0 || c.ClientIdleTimeout <= 0 || c.UnauthenticatedPerSourceMax <= 0:
		return fmt.Errorf("%w: client connection limits and timeouts must be positive", ErrConfig)
	case c.PeerFrameBytesMax <= 0 || c.ClientConnsMax <= 0 || c.ClientInflightMax <= 0 || c.ClientConnBytesMax <= 0 ||
		c.PeerQueueMax <= 0 || c.PeerQueueBytesMax <= 0 || c.ClientBytesMax <= 0 || c.RequestQueueMax <= 0 || c.UnauthenticatedMax <= 0:
		return bad("every limit must be positive")
	case c.SnapshotSendBytesPerSec < 0:
		return bad("snapshot send rate %d bytes/s", c.SnapshotSendBytesPerSec)
	case c.Core.BatchBytesMax > c.PeerFrameBytesMax/2:
		return bad("batch bytes %d do not fit a peer frame of %d", c.Core.BatchBytesMax, c.PeerFrameBytesMax)
	}
	return nil
}

// listenAddr is the address to bind: the explicit one, or this replica's entry in advertised.
func (c *Config) listenAddr(explicit string, advertised map[paxos.ReplicaID]string) string {
	if explicit != "" {
		return explicit
	}
	return advertised[c.ID]
}
