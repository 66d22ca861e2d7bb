// Package scenario is the format of a benchmark scenario: one TOML file a user can copy and edit,
// saying what cluster to start, what load to offer it, which faults to inject and how often to
// repeat. bench/scenarios/README.md documents every field with its unit; Load parses a file,
// applies the defaults and refuses anything it cannot run, naming the field.
package scenario

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/sofadb/sofadb/faultproxy"
)

// ErrScenario wraps every refusal of a scenario file.
var ErrScenario = errors.New("scenario")

// Duration is a TOML string such as "10s" or "250ms".
type Duration struct{ time.Duration }

// UnmarshalText reads a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// MarshalText writes it back, so a scenario can be saved beside its results.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Scenario is one file of bench/scenarios. Field documentation: bench/scenarios/README.md.
type Scenario struct {
	Name        string `toml:"name"`
	Description string `toml:"description"`
	// Group files the scenario under a heading of the report: leader-stable, contended, failover,
	// ablation, etcd, smoke.
	Group string `toml:"group"`

	System   string   `toml:"system"`   // sofadb | etcd
	Replicas int      `toml:"replicas"` // 3 or 5 (1 allowed for sofadb, as a baseline)
	Mode     string   `toml:"mode"`     // sofadb: leader | duel
	Backoff  bool     `toml:"backoff"`  // sofadb, mode duel: randomized exponential backoff
	Reads    string   `toml:"reads"`    // sofadb: lease | log
	Flags    []string `toml:"flags"`    // extra replica flags (sofadb) or etcd flags

	Protocol string `toml:"protocol"` // binary | http (sofadb); http | grpc (etcd)
	Policy   string `toml:"policy"`   // leader | round-robin | random: which replica a request goes to

	Workload   string `toml:"workload"`    // write | read | ycsb-a | ycsb-b | ycsb-c
	Keys       uint64 `toml:"keys"`        // distinct keys
	KeyDist    string `toml:"key_dist"`    // uniform | zipf
	KeyBytes   int    `toml:"key_bytes"`   // bytes per key
	ValueBytes int    `toml:"value_bytes"` // bytes per written value
	Preload    bool   `toml:"preload"`     // write every key once before the run (reads find values)

	Connections int      `toml:"connections"`  // per replica; 0: the generator's default
	MaxInflight int      `toml:"max_inflight"` // calls in flight at most; 0: default (1024)
	Timeout     Duration `toml:"timeout"`      // per call
	MaxLagP99   Duration `toml:"max_lag_p99"`  // validity bound on the generator's send lag; 0: 5 ms
	Interval    Duration `toml:"interval"`     // length of a timeline interval (100ms for failover)

	Warmup   Duration `toml:"warmup"`   // sent, excluded from the summary
	Duration Duration `toml:"duration"` // measured window of each run
	Repeats  int      `toml:"repeats"`  // runs of the whole scenario (failover: independent kills)
	Seed     uint64   `toml:"seed"`     // arrival and workload streams; repeat k uses Seed+k

	Rate   Rate    `toml:"rate"`
	Faults []Fault `toml:"faults"`
}

// Rate is the offered-load plan, in operations per second.
type Rate struct {
	// Plan is fixed (one run at Rates[0]), list (one run per entry of Rates), search (the highest
	// valid rate whose p99 stays under P99Bound: a coarse sweep from Start multiplying by Factor,
	// then Bisect halvings between the last good and first bad rate), or from (a fraction of the
	// saturation another scenario of the same suite found).
	Plan     string    `toml:"plan"`
	Rates    []float64 `toml:"rates"`
	Start    float64   `toml:"start"`
	Max      float64   `toml:"max"`
	Factor   float64   `toml:"factor"`
	Bisect   int       `toml:"bisect"`
	P99Bound Duration  `toml:"p99_bound"`
	// From and Fraction: plan "from" runs at Fraction of the saturation From found (falling back to
	// Rates[0] when From did not run).
	From     string  `toml:"from"`
	Fraction float64 `toml:"fraction"`
}

// Fault is one event of the scenario's fault schedule, At after the measured window's warm-up began.
type Fault struct {
	At     Duration `toml:"at"`
	Action string   `toml:"action"` // kill | pause | resume | restart | net | heal
	// Target is leader (the replica leading when the fault fires), follower (one that does not),
	// or a replica id ("2"). resume and restart take "last", the replica of the previous fault.
	// net takes a network shape (faultproxy.Shapes: quorum-loss, chained, wan, ...), applied
	// relative to the leader of the moment through the fault proxy the runner then puts on every
	// peer link; heal clears every link (its target is ignored).
	Target string `toml:"target"`
}

// NetFaults says whether the schedule has network faults (net, heal): the cluster then runs with a
// fault proxy on every peer link.
func (s *Scenario) NetFaults() bool {
	return slices.ContainsFunc(s.Faults, func(f Fault) bool { return f.Action == "net" || f.Action == "heal" })
}

// Load reads and checks a scenario file.
func Load(path string) (*Scenario, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrScenario, err)
	}
	return Parse(b, strings.TrimSuffix(filepath.Base(path), filepath.Ext(path)))
}

// Parse reads a scenario from TOML; name is used when the file has none.
func Parse(b []byte, name string) (*Scenario, error) {
	var s Scenario
	md, err := toml.Decode(string(b), &s)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrScenario, name, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		return nil, fmt.Errorf("%w %s: unknown field %q (see bench/scenarios/README.md)", ErrScenario, name, und[0].String())
	}
	if s.Name == "" {
		s.Name = name
	}
	s.applyDefaults()
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

// Encode writes the scenario (defaults applied) as TOML, to be kept with its results.
func (s *Scenario) Encode() ([]byte, error) {
	var sb strings.Builder
	err := toml.NewEncoder(&sb).Encode(s)
	return []byte(sb.String()), err
}

func (s *Scenario) applyDefaults() {
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	def(&s.System, "sofadb")
	def(&s.Group, "other")
	def(&s.Mode, "leader")
	def(&s.Reads, "lease")
	def(&s.Policy, "leader")
	def(&s.Workload, "write")
	def(&s.KeyDist, "uniform")
	def(&s.Rate.Plan, "fixed")
	if s.Protocol == "" {
		s.Protocol = map[string]string{"sofadb": "binary", "etcd": "http"}[s.System]
	}
	if s.Replicas == 0 {
		s.Replicas = 3
	}
	if s.Keys == 0 {
		s.Keys = 100_000
	}
	if s.KeyBytes == 0 {
		s.KeyBytes = 16
	}
	if s.ValueBytes == 0 {
		s.ValueBytes = 128
	}
	if s.Timeout.Duration == 0 {
		s.Timeout.Duration = time.Second
	}
	if s.Interval.Duration == 0 {
		s.Interval.Duration = time.Second
	}
	if s.Duration.Duration == 0 {
		s.Duration.Duration = 10 * time.Second
	}
	if s.Repeats == 0 {
		s.Repeats = 1
	}
	if s.Rate.Factor == 0 {
		s.Rate.Factor = 2
	}
	if s.Rate.P99Bound.Duration == 0 {
		s.Rate.P99Bound.Duration = 50 * time.Millisecond
	}
	if s.Rate.Fraction == 0 {
		s.Rate.Fraction = 0.5
	}
}

// Validate refuses what the runner cannot do, naming the field.
func (s *Scenario) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w %s: %s", ErrScenario, s.Name, fmt.Sprintf(format, args...))
	}
	oneOf := func(field, v string, allowed ...string) error {
		for _, a := range allowed {
			if v == a {
				return nil
			}
		}
		return bad("%s = %q: want one of %s", field, v, strings.Join(allowed, ", "))
	}
	for _, err := range []error{
		oneOf("system", s.System, "sofadb", "etcd"),
		oneOf("mode", s.Mode, "leader", "duel"),
		oneOf("reads", s.Reads, "lease", "log"),
		oneOf("policy", s.Policy, "leader", "round-robin", "random"),
		oneOf("workload", s.Workload, "write", "read", "ycsb-a", "ycsb-b", "ycsb-c"),
		oneOf("key_dist", s.KeyDist, "uniform", "zipf"),
		oneOf("rate.plan", s.Rate.Plan, "fixed", "list", "search", "from"),
	} {
		if err != nil {
			return err
		}
	}
	switch s.System {
	case "sofadb":
		if err := oneOf("protocol", s.Protocol, "binary", "http"); err != nil {
			return err
		}
	case "etcd":
		if err := oneOf("protocol", s.Protocol, "http", "grpc"); err != nil {
			return err
		}
		if s.Mode != "leader" {
			return bad("mode %q: etcd has only its own leader", s.Mode)
		}
	}
	switch {
	case s.Replicas < 1 || s.Replicas > 9:
		return bad("replicas = %d: want 1 to 9", s.Replicas)
	case s.Duration.Duration < 100*time.Millisecond:
		return bad("duration = %v: want at least 100ms", s.Duration.Duration)
	case s.Warmup.Duration < 0 || s.Timeout.Duration <= 0 || s.Interval.Duration <= 0 || s.MaxLagP99.Duration < 0:
		return bad("warmup, timeout and interval must be positive")
	case s.Repeats < 1 || s.Repeats > 100:
		return bad("repeats = %d: want 1 to 100", s.Repeats)
	case s.Connections < 0 || s.MaxInflight < 0:
		return bad("connections and max_inflight must not be negative")
	}
	return s.validateRate(bad)
}

func (s *Scenario) validateRate(bad func(string, ...any) error) error {
	r := &s.Rate
	for _, v := range r.Rates {
		if v <= 0 {
			return bad("rate.rates holds %v: every rate must be positive (operations per second)", v)
		}
	}
	switch r.Plan {
	case "fixed", "list":
		if len(r.Rates) == 0 {
			return bad("rate.plan %q needs rate.rates", r.Plan)
		}
	case "search":
		if r.Start <= 0 || r.Max < r.Start || r.Factor <= 1 || r.Bisect < 0 {
			return bad("rate.plan search needs 0 < start <= max and factor > 1 (got start %v max %v factor %v)", r.Start, r.Max, r.Factor)
		}
	case "from":
		if r.From == "" || r.Fraction <= 0 || len(r.Rates) == 0 {
			return bad("rate.plan from needs rate.from, a fraction in (0, 1] and rate.rates[0] as the fallback")
		}
	}
	for i, f := range s.Faults {
		switch {
		case !slices.Contains([]string{"kill", "pause", "resume", "restart", "net", "heal"}, f.Action):
			return bad("faults[%d].action = %q: want kill, pause, resume, restart, net or heal", i, f.Action)
		case f.Action == "net" && !slices.Contains(faultproxy.Shapes, f.Target):
			return bad("faults[%d]: net target %q: want a network shape, one of %v", i, f.Target, faultproxy.Shapes)
		case f.Action == "net" && s.System != "sofadb":
			return bad("faults[%d]: net faults need the fault proxy, which only sofadb clusters run behind", i)
		case f.At.Duration < 0 || f.At.Duration > s.Warmup.Duration+s.Duration.Duration:
			return bad("faults[%d].at = %v: outside the run (warm-up plus duration)", i, f.At.Duration)
		case f.Target == "" && f.Action != "heal":
			return bad("faults[%d].target is empty: leader, follower, last or a replica id", i)
		}
	}
	return nil
}

// LoadDir reads every *.toml of dir, in name order.
func LoadDir(dir string) ([]*Scenario, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.toml"))
	if err != nil {
		return nil, err
	}
	var out []*Scenario
	for _, p := range paths {
		s, err := Load(p)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}
