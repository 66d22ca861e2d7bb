package scenario

import (
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestSuitesParse: every scenario file shipped parses, and the names in a suite are unique.
func TestSuitesParse(t *testing.T) {
	for _, suite := range []string{"default", "full", "smoke"} {
		ss, err := LoadDir(filepath.Join("..", "scenarios", suite))
		if err != nil {
			t.Fatal(err)
		}
		if len(ss) == 0 {
			t.Fatalf("suite %s is empty", suite)
		}
		seen := map[string]bool{}
		for _, s := range ss {
			if seen[s.Name] {
				t.Errorf("suite %s: two scenarios named %s", suite, s.Name)
			}
			seen[s.Name] = true
		}
	}
}

func TestDefaults(t *testing.T) {
	s, err := Parse([]byte("[rate]\nrates = [100]\n"), "x")
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "x" || s.System != "sofadb" || s.Protocol != "binary" || s.Replicas != 3 || s.Duration.Duration != 10*time.Second ||
		s.Rate.Plan != "fixed" || s.Rate.P99Bound.Duration != 50*time.Millisecond || s.Timeout.Duration != time.Second {
		t.Errorf("defaults: %+v", s)
	}
	if s, _ := Parse([]byte("system = \"etcd\"\n[rate]\nrates = [1]\n"), "e"); s == nil || s.Protocol != "http" {
		t.Errorf("etcd's default protocol: %+v", s)
	}
}

// TestRefusals: each bad file is refused with an error naming the field.
func TestRefusals(t *testing.T) {
	for _, c := range []struct{ toml, want string }{
		{"nmae = \"typo\"\n[rate]\nrates = [1]", "unknown field \"nmae\""},
		{"duration = \"10 seconds\"\n[rate]\nrates = [1]", "duration"},
		{"mode = \"chaos\"\n[rate]\nrates = [1]", "mode = \"chaos\""},
		{"[rate]\nplan = \"fixed\"", "needs rate.rates"},
		{"[rate]\nrates = [-5]", "must be positive"},
		{"[rate]\nplan = \"search\"\nstart = 100\nmax = 10", "rate.plan search"},
		{"[rate]\nplan = \"from\"\nrates = [1]", "rate.plan from"},
		{"system = \"etcd\"\nmode = \"duel\"\n[rate]\nrates = [1]", "etcd has only its own leader"},
		{"system = \"etcd\"\nprotocol = \"binary\"\n[rate]\nrates = [1]", "protocol"},
		{"replicas = 12\n[rate]\nrates = [1]", "replicas = 12"},
		{"duration = \"1s\"\n[rate]\nrates = [1]\n[[faults]]\nat = \"5s\"\naction = \"kill\"\ntarget = \"leader\"", "outside the run"},
		{"[rate]\nrates = [1]\n[[faults]]\nat = \"1s\"\naction = \"explode\"\ntarget = \"leader\"", "faults[0].action"},
		{"[rate]\nrates = [1]\n[[faults]]\nat = \"1s\"\naction = \"kill\"", "faults[0].target"},
	} {
		_, err := Parse([]byte(c.toml), "bad")
		if err == nil || !errors.Is(err, ErrScenario) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v, want an error containing %q", c.toml, err, c.want)
		}
	}
}

// TestEncodeRoundTrip: the scenario kept beside the results parses back to the same thing.
func TestEncodeRoundTrip(t *testing.T) {
	s, err := Load(filepath.Join("..", "scenarios", "default", "30-failover-binary.toml"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Encode()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(b, "")
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if back.Name != s.Name || len(back.Faults) != 2 || back.Faults[0].At != s.Faults[0].At || !reflect.DeepEqual(back.Rate, s.Rate) {
		t.Errorf("round trip: %+v\nwant %+v", back, s)
	}
}
