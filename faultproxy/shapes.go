package faultproxy

import (
	"fmt"
	"slices"
	"time"
)

// Shapes are the named network faults the bench runner and the chaos tool apply to a whole
// cluster, relative to its current leader. Each replaces whatever faults were set before.
//
//   - leader-partition: the leader cut from every other replica (both ways).
//   - quorum-loss: OmniPaxos' quorum-loss shape: one replica (the hub, the first after the leader)
//     keeps its links to everyone; every other link is cut. The leader can no longer reach a
//     majority; only the hub can.
//   - chained: OmniPaxos' chained shape: the link between the leader and one follower (the hub) is
//     cut, every other link kept; the hub hears the leader only through the others.
//   - isolate-hub: the hub cut from everyone (it falls behind while the others go on).
//   - constrained: OmniPaxos' constrained election: the leader cut from everyone, and the others
//     keep only their links to the hub, which is the one replica connected to a majority (run it
//     after isolate-hub, and the hub is also far behind).
//   - wan: 20 ms one way plus up to 10 ms of jitter on every link.
//   - wan-one-link: 40 ms one way plus up to 10 ms of jitter between the leader and the hub only.
//   - loss-out-of-leader, loss-into-leader: 30 % of the frames lost, one way, on every link of
//     the leader.
var Shapes = []string{"leader-partition", "quorum-loss", "chained", "isolate-hub", "constrained", "wan", "wan-one-link",
	"loss-out-of-leader", "loss-into-leader"}

// ApplyShape heals every link and then applies the named shape to the cluster of ids led by
// leader. It returns a one-line description of what it set.
func (p *Proxy) ApplyShape(name string, ids []int, leader int) (string, error) {
	if !slices.Contains(ids, leader) {
		return "", fmt.Errorf("faultproxy: shape %s: leader %d is not one of %v", name, leader, ids)
	}
	if len(ids) < 3 {
		return "", fmt.Errorf("faultproxy: shape %s needs at least 3 replicas, got %d", name, len(ids))
	}
	sorted := slices.Sorted(slices.Values(ids))
	hub := sorted[(slices.Index(sorted, leader)+1)%len(sorted)] // the first replica after the leader
	cut := Faults{Refuse: true}
	keepOnly := func(keep func(a, b int) bool) {
		for _, a := range sorted {
			for _, b := range sorted {
				if a < b && !keep(a, b) {
					p.SetBoth(a, b, cut)
				}
			}
		}
	}
	p.Heal()
	switch name {
	case "leader-partition":
		keepOnly(func(a, b int) bool { return a != leader && b != leader })
		return fmt.Sprintf("leader %d cut from every other replica", leader), nil
	case "quorum-loss":
		keepOnly(func(a, b int) bool { return a == hub || b == hub })
		return fmt.Sprintf("only replica %d keeps its links (to all); every other link cut (leader %d)", hub, leader), nil
	case "chained":
		keepOnly(func(a, b int) bool { return !(a == min(leader, hub) && b == max(leader, hub)) })
		return fmt.Sprintf("leader %d and replica %d cut from each other; every other link kept", leader, hub), nil
	case "isolate-hub":
		keepOnly(func(a, b int) bool { return a != hub && b != hub })
		return fmt.Sprintf("replica %d cut from every other replica", hub), nil
	case "constrained":
		keepOnly(func(a, b int) bool { return a != leader && b != leader && (a == hub || b == hub) })
		return fmt.Sprintf("leader %d cut from everyone; the others keep only their links to replica %d", leader, hub), nil
	case "wan":
		for _, a := range sorted {
			for _, b := range sorted {
				if a != b {
					p.Set(a, b, Faults{Delay: 20 * time.Millisecond, Jitter: 10 * time.Millisecond})
				}
			}
		}
		return "20 ms + up to 10 ms jitter one way on every link", nil
	case "wan-one-link":
		p.SetBoth(leader, hub, Faults{Delay: 40 * time.Millisecond, Jitter: 10 * time.Millisecond})
		return fmt.Sprintf("40 ms + up to 10 ms jitter one way between leader %d and replica %d", leader, hub), nil
	case "loss-out-of-leader", "loss-into-leader":
		for _, id := range sorted {
			if id == leader {
				continue
			}
			if name == "loss-out-of-leader" {
				p.Set(leader, id, Faults{Loss: 0.3})
			} else {
				p.Set(id, leader, Faults{Loss: 0.3})
			}
		}
		return fmt.Sprintf("30 %% of frames lost on every link %s leader %d", map[bool]string{true: "out of", false: "into"}[name == "loss-out-of-leader"], leader), nil
	}
	return "", fmt.Errorf("faultproxy: unknown shape %q (want one of %v)", name, Shapes)
}
