package faultproxy

import (
	"fmt"
	"testing"
)

// cutMap renders which unordered pairs of ids are cut, e.g. "1-2 1-3".
func cutMap(p *Proxy, ids []int) string {
	out := ""
	for _, a := range ids {
		for _, b := range ids {
			if a < b && p.Get(a, b).Refuse && p.Get(b, a).Refuse {
				out += fmt.Sprintf("%d-%d ", a, b)
			}
		}
	}
	return out
}

// Each partial-connectivity shape cuts exactly the links OmniPaxos' shapes cut, relative to the
// leader, and replaces what was set before.
func TestShapesCutTheRightLinks(t *testing.T) {
	five := []int{1, 2, 3, 4, 5}
	for _, tc := range []struct {
		shape  string
		ids    []int
		leader int
		cut    string
	}{
		{"leader-partition", []int{1, 2, 3}, 2, "1-2 2-3 "},
		{"quorum-loss", five, 1, "1-3 1-4 1-5 3-4 3-5 4-5 "}, // hub 2 keeps every link
		{"chained", []int{1, 2, 3}, 3, "1-3 "},               // hub is 1, the first after 3
		{"isolate-hub", five, 5, "1-2 1-3 1-4 1-5 "},
		{"constrained", five, 1, "1-2 1-3 1-4 1-5 3-4 3-5 4-5 "}, // the others keep only hub 2
		{"wan", []int{1, 2, 3}, 1, ""},
	} {
		p := New(1)
		p.SetBoth(4, 5, Faults{Refuse: true}) // replaced by any shape
		desc, err := p.ApplyShape(tc.shape, tc.ids, tc.leader)
		if err != nil {
			t.Fatal(err)
		}
		if got := cutMap(p, tc.ids); got != tc.cut {
			t.Errorf("%s (leader %d): cut %q, want %q (%s)", tc.shape, tc.leader, got, tc.cut, desc)
		}
		p.Close()
	}
	p := New(1)
	defer p.Close()
	if _, err := p.ApplyShape("wan", []int{1, 2, 3}, 1); err != nil || p.Get(3, 2).Delay == 0 {
		t.Errorf("wan: %v, 3->2 %v", err, p.Get(3, 2))
	}
	if _, err := p.ApplyShape("loss-into-leader", []int{1, 2, 3}, 1); err != nil || p.Get(2, 1).Loss != 0.3 || p.Get(1, 2).Loss != 0 || p.Get(3, 2).Delay != 0 {
		t.Errorf("loss-into-leader: %v; 2->1 %v, 1->2 %v, 3->2 %v", err, p.Get(2, 1), p.Get(1, 2), p.Get(3, 2))
	}
	if _, err := p.ApplyShape("nonsense", []int{1, 2, 3}, 1); err == nil {
		t.Error("an unknown shape was accepted")
	}
}
