package loadgen

import (
	"fmt"
	"io"
	"runtime"
	"time"
)

// Config is one run. Run fills zero fields with the defaults named on them, so a Config literal in
// a test only says what the test is about.
type Config struct {
	// TargetURL names the system under test: sofa://h:p,..., sofa-http://h:p,..., etcd://h:p,...
	// or fake://?service=1ms (see ParseTarget).
	TargetURL string
	// NewTarget, when set, builds the target instead of TargetURL (tests, embedding).
	NewTarget func(*Clock) (Target, error)

	RateOpsPerSec float64 // offered load; required
	Arrival       Arrival // default Poisson
	Seed          uint64  // seeds the arrival and workload streams; 0 is a valid seed

	Warmup   time.Duration // sent and logged, excluded from the summary; default 0
	Duration time.Duration // measured window; default 30 s
	Interval time.Duration // interval histogram length; default 1 s

	Workload Workload
	Preload  bool // write every key once before the run, so reads find values

	Connections int           // per replica; default 4 for sofa://, 64 for HTTP targets
	MaxInflight int           // bound on calls sent and not completed; default 1024
	Policy      Policy        // which replica gets a call; default PolicyLeader
	Timeout     time.Duration // per call; default 1 s
	Workers     int           // goroutines issuing and recording; default GOMAXPROCS

	// MinSleep is the dispatcher's shortest sleep: shorter means send times closer to the schedule
	// and more CPU. Default 250 us (lag p50 about 0.2 ms on an idle machine, 2026-11-22); 1ns sleeps
	// as short as the kernel allows (then about 0.1 ms late, three times the CPU); 1ms is the Go
	// timer's own resolution.
	MinSleep time.Duration

	// MaxLagP99 is the validity threshold on the generator's own lateness: a run whose send lag
	// p99 exceeds it is invalid. Default 5 ms: five times this machine's timer resolution.
	MaxLagP99 time.Duration

	// FailFastAfter ends the run with ErrNoSuccess when no request has succeeded this long after
	// the run's zero and some have failed (an unreachable or refusing target), instead of a whole
	// run that calls itself invalid. Default 5 s; negative disables.
	FailFastAfter time.Duration

	// OnStart, when set, is called once the run's zero is fixed (a whole second of the wall clock,
	// before the first call is due): a bench runner times its fault injection from it.
	OnStart func(t0 time.Time)

	OutDir   string    // where the result files go; empty: no files
	History  bool      // write history.jsonl (needs OutDir)
	Progress io.Writer // live progress once a second; nil: silent
	// ServerStatus lists the replicas' HTTP addresses (host:port or URL) whose /status the
	// manifest records; empty: a sofa-http target's own addresses, else none.
	ServerStatus []string
	Command      []string // the command line, recorded in the manifest
}

// Defaults, exported so the command's -h text and the code cannot disagree.
const (
	DefaultDuration    = 30 * time.Second
	DefaultInterval    = time.Second
	DefaultConnections = 4 // sofa://: each connection pipelines any number of requests
	// DefaultHTTPConnections is the HTTP default: HTTP/1.1 carries one request per connection, so
	// connections bound what is in flight (64 at 2 ms is 32k ops/s per replica).
	DefaultHTTPConnections = 64
	DefaultMaxInflight     = 1024
	DefaultTimeout         = time.Second
	DefaultMaxLagP99       = 5 * time.Millisecond
	DefaultMinSleep        = 250 * time.Microsecond
)

// Check reports what Run would refuse in c, without running: a command line can be checked before
// it announces the run.
func (c Config) Check() error {
	c.applyDefaults()
	return c.validate()
}

func (c *Config) applyDefaults() {
	if c.Arrival == 0 {
		c.Arrival = Poisson
	}
	if c.Duration == 0 {
		c.Duration = DefaultDuration
	}
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	if c.Connections == 0 {
		c.Connections = DefaultConnections
		if spec, err := ParseTarget(c.TargetURL); err == nil && (spec.Scheme == SchemeSofaHTTP || spec.Scheme == SchemeEtcd) {
			c.Connections = DefaultHTTPConnections
		}
	}
	if c.MaxInflight == 0 {
		c.MaxInflight = DefaultMaxInflight
	}
	if c.FailFastAfter == 0 {
		c.FailFastAfter = 5 * time.Second
	}
	if c.Policy == 0 {
		c.Policy = PolicyLeader
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Workers == 0 {
		c.Workers = runtime.GOMAXPROCS(0)
	}
	if c.MinSleep == 0 {
		c.MinSleep = DefaultMinSleep
	}
	if c.MaxLagP99 == 0 {
		c.MaxLagP99 = DefaultMaxLagP99
	}
	if c.Workload.KeyDist == 0 {
		c.Workload.KeyDist = KeysUniform
	}
}

func (c *Config) validate() error {
	switch {
	case c.TargetURL == "" && c.NewTarget == nil:
		return fmt.Errorf("%w: no target", ErrBadConfig)
	case !(c.RateOpsPerSec > 0):
		return fmt.Errorf("%w: --rate must be above 0 ops/s", ErrBadConfig)
	case c.Duration < 0 || c.Warmup < 0:
		return fmt.Errorf("%w: negative duration", ErrBadConfig)
	case c.Interval < time.Millisecond:
		return fmt.Errorf("%w: --interval must be at least 1ms", ErrBadConfig)
	case c.Connections < 1 || c.MaxInflight < 1 || c.Workers < 1:
		return fmt.Errorf("%w: --connections, --max-inflight and --workers must be at least 1", ErrBadConfig)
	case c.Timeout <= 0:
		return fmt.Errorf("%w: --timeout must be above 0", ErrBadConfig)
	case c.History && c.OutDir == "":
		return fmt.Errorf("%w: --history needs --out", ErrBadConfig)
	}
	return c.Workload.Validate()
}
