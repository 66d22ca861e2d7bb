package loadgen

import (
	"fmt"
	"math/rand/v2"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
)

// Policy chooses the replica a call goes to.
type Policy uint8

// Targeting policies (--policy).
const (
	// PolicyLeader sends everything to the replica believed to lead, and moves on when told otherwise
	// (a redirect, a leader hint, or a not-leader answer without a hint: then the next replica). The
	// call that was refused is recorded as not_leader, not retried: the generator never retries.
	PolicyLeader Policy = iota + 1
	// PolicyRoundRobin spreads calls evenly over the replicas.
	PolicyRoundRobin
	// PolicyRandom picks a replica at random per call: with every replica proposing, this is how the
	// contended scenario makes proposers duel.
	PolicyRandom
)

// ParsePolicy reads the --policy flag.
func ParsePolicy(s string) (Policy, error) {
	switch s {
	case "leader":
		return PolicyLeader, nil
	case "round-robin", "rr":
		return PolicyRoundRobin, nil
	case "random":
		return PolicyRandom, nil
	}
	return 0, fmt.Errorf("%w: policy %q (want leader, round-robin or random)", ErrBadConfig, s)
}

// String is the --policy spelling, for the manifest.
func (p Policy) String() string {
	switch p {
	case PolicyLeader:
		return "leader"
	case PolicyRoundRobin:
		return "round-robin"
	case PolicyRandom:
		return "random"
	}
	return fmt.Sprintf("policy(%d)", uint8(p))
}

// picker applies a Policy over n replicas. Safe for concurrent use: the leader guess and the
// round-robin counter are atomics, and math/rand/v2's global source is goroutine-safe.
type picker struct {
	policy Policy
	n      int
	leader atomic.Int32
	rr     atomic.Uint32
}

func (p *picker) pick() int {
	switch p.policy {
	case PolicyRoundRobin:
		return int(p.rr.Add(1)-1) % p.n
	case PolicyRandom:
		return rand.IntN(p.n)
	}
	return int(p.leader.Load())
}

// notLeader records that replica from refused a call; hint is the index of the replica it named as
// leader, or -1. Only the first refusal after a change moves the guess (compare-and-swap on from), so
// a burst of refusals from the old leader does not skip past the new one.
func (p *picker) notLeader(from, hint int) {
	if p.policy != PolicyLeader {
		return
	}
	next := (from + 1) % p.n
	if hint >= 0 && hint < p.n {
		next = hint
	}
	p.leader.CompareAndSwap(int32(from), int32(next))
}

// unreachable records that a call to replica from failed at the connection (refused, reset, being
// redialled). Under PolicyLeader the guess moves to the next replica, as it does on a not-leader
// answer without a hint: a follower forwards to (or names) whoever leads now. Without this a dead
// leader kept the generator dialling it until it came back, and a failover looked as long as the
// killed replica's downtime.
func (p *picker) unreachable(from int) { p.notLeader(from, -1) }

// TargetOptions are the knobs every network target shares.
type TargetOptions struct {
	Connections int           // per replica
	Timeout     time.Duration // per call
	Policy      Policy
	MaxInflight int // the generator's bound: targets size their queues by it, so Go never blocks
}

// TargetSpec is a parsed target URL.
type TargetSpec struct {
	Scheme string   // sofa, sofa-http, etcd or fake
	Addrs  []string // host:port of every replica, in the order given
	Query  url.Values
}

// Target URL schemes.
const (
	SchemeSofa     = "sofa"
	SchemeSofaHTTP = "sofa-http"
	SchemeEtcd     = "etcd"      // etcd's JSON gateway (HTTP)
	SchemeEtcdGRPC = "etcd-grpc" // etcd's gRPC API, through go.etcd.io/etcd/client/v3
	SchemeFake     = "fake"
)

// ParseTarget reads a target URL: scheme://host:port,host:port,... (the replicas, the first being
// the initial leader guess), or fake://?service=1ms&stall=200ms&stall-every=1s for the in-process
// fake.
func ParseTarget(s string) (TargetSpec, error) {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return TargetSpec{}, fmt.Errorf("%w: %q has no scheme://", ErrBadTarget, s)
	}
	hosts, query, _ := strings.Cut(rest, "?")
	q, err := url.ParseQuery(query)
	if err != nil {
		return TargetSpec{}, fmt.Errorf("%w: %q: %v", ErrBadTarget, s, err)
	}
	spec := TargetSpec{Scheme: scheme, Query: q}
	for _, h := range strings.Split(strings.TrimSuffix(hosts, "/"), ",") {
		if h = strings.TrimSpace(h); h != "" {
			spec.Addrs = append(spec.Addrs, h)
		}
	}
	switch scheme {
	case SchemeSofa, SchemeSofaHTTP, SchemeEtcd, SchemeEtcdGRPC:
		if len(spec.Addrs) == 0 {
			return TargetSpec{}, fmt.Errorf("%w: %q names no host:port", ErrBadTarget, s)
		}
	case SchemeFake:
	default:
		return TargetSpec{}, fmt.Errorf("%w: unknown scheme %q (want sofa, sofa-http, etcd, etcd-grpc or fake)", ErrBadTarget, scheme)
	}
	return spec, nil
}

// Open connects to the target the spec names.
func (s TargetSpec) Open(clock *Clock, o TargetOptions) (Target, error) {
	switch s.Scheme {
	case SchemeSofaHTTP:
		return NewSofaHTTPTarget(clock, s.Addrs, o), nil
	case SchemeEtcd:
		return NewEtcdTarget(clock, s.Addrs, o), nil
	case SchemeEtcdGRPC:
		return NewEtcdGRPCTarget(clock, s.Addrs, o)
	case SchemeSofa:
		return openSofa(clock, s.Addrs, o)
	case SchemeFake:
		return fakeFromQuery(clock, s.Query)
	}
	return nil, fmt.Errorf("%w: scheme %q", ErrBadTarget, s.Scheme)
}

// indexOf finds addr among addrs, for leader hints and redirects; -1 when it is not one of them.
func indexOf(addrs []string, addr string) int {
	for i, a := range addrs {
		if a == addr {
			return i
		}
	}
	return -1
}
