package paxos

import "testing"

// These tests pin pre-vote (Config.PreVote): an election timer running out must not, by itself,
// disturb a leader that a majority still hears, and a replica far behind must not be elected.

// TestStalledFollowerDoesNotDisturbALiveLeader: a follower hears nothing for three election
// timeouts (its loop stalled, or everything to it is delayed) while the leader stays alive for the
// others. Without pre-vote it campaigns with a higher ballot, and the leader, Nacked by it as soon
// as they talk again, runs phase 1 anew (a new ballot: the leadership churn issue 12 measured under
// load). With pre-vote the follower only asks, is refused by the leader and the other follower,
// and rejoins under the same ballot.
func TestStalledFollowerDoesNotDisturbALiveLeader(t *testing.T) {
	for _, preVote := range []bool{true, false} {
		name := map[bool]string{true: "pre-vote", false: "no-pre-vote"}[preVote]
		t.Run(name, func(t *testing.T) {
			c := newTestNet(t, 3, func(cfg *Config) { cfg.PreVote = preVote })
			l := c.leader()
			c.tick(l.cfg.ElectionTicks) // settle: every follower has heard the leader
			f := c.others(l)[0]
			ballot, campaigns, fCampaigns := l.ballot, l.metrics.Campaigns, f.metrics.Campaigns
			c.hold = func(m *Message) bool { return m.To == f.id }
			c.tick(3 * l.cfg.ElectionTicks)
			if f.metrics.PreVotes == 0 && f.metrics.Campaigns == fCampaigns {
				t.Fatal("setup: the cut-off follower's election timer never ran out")
			}
			c.hold, c.held = nil, nil
			c.tick(2 * l.cfg.ElectionTicks)
			disturbed := l.role != leader || l.ballot != ballot || l.metrics.Campaigns != campaigns
			if preVote && disturbed {
				t.Fatalf("leader %d disturbed by a follower that only lost touch: role %v, ballot %v -> %v, campaigns %d -> %d",
					l.id, l.role, ballot, l.ballot, campaigns, l.metrics.Campaigns)
			}
			if !preVote && !disturbed {
				t.Fatal("without pre-vote the leader kept its ballot: the scenario does not show what pre-vote prevents")
			}
			if preVote && (f.metrics.Campaigns != fCampaigns || f.metrics.PreVotes == 0) {
				t.Fatalf("follower: %d pre-vote rounds, %d campaigns; want rounds and no campaign", f.metrics.PreVotes, f.metrics.Campaigns-fCampaigns)
			}
			if preVote && l.metrics.PreVoteRefusals == 0 {
				t.Fatal("the leader refused no pre-vote")
			}
		})
	}
}

// TestFarBehindReplicaIsNotElected: the leader dies while one follower is far behind (it missed
// every slot the leader had chosen). The up-to-date follower's own pre-votes are lost, so the only
// replica that can ask is the one behind: the up-to-date one must refuse it for as long as it is
// behind, instead of electing a leader that must first fetch the whole log (or a snapshot) before
// it can serve anything. Once the up-to-date one can ask, it wins.
func TestFarBehindReplicaIsNotElected(t *testing.T) {
	for _, slack := range []uint64{2, 1 << 20} {
		t.Run(map[bool]string{true: "behind-check", false: "no-behind-check"}[slack == 2], func(t *testing.T) {
			c := newTestNet(t, 3, func(cfg *Config) { cfg.PreVoteBehindSlotsMax = slack })
			l := c.leader()
			behind, ahead := c.others(l)[0], c.others(l)[1]
			c.hold = func(m *Message) bool { return m.To == behind.id }
			for i := range 20 {
				l.Propose([]Command{cmd(3, uint64(i+1), 4)})
				c.pump()
			}
			c.tickOnly(l.cfg.HeartbeatTicks, l, ahead)
			if ahead.commit < behind.commit+10 {
				t.Fatalf("setup: ahead at %d, behind at %d", ahead.commit, behind.commit)
			}
			// The leader dies; the ahead follower's pre-votes to the one behind are lost.
			c.held = nil
			c.hold = func(m *Message) bool {
				return m.From == l.id || m.To == l.id || (m.From == ahead.id && m.Type == MsgPreVote)
			}
			campaigned := false
			for range 20 * l.cfg.ElectionTicks {
				c.tickOnly(1, behind, ahead)
				campaigned = campaigned || behind.role != follower
			}
			if slack == 2 && campaigned {
				t.Fatalf("replica %d, %d slots behind, was granted a pre-vote and campaigned", behind.id, ahead.commit-behind.commit)
			}
			if slack != 2 {
				if !campaigned {
					t.Fatal("without the behind check the replica behind never campaigned: the test does not bite")
				}
				return
			}
			if ahead.metrics.PreVoteRefusals == 0 {
				t.Fatal("the up-to-date follower refused nothing")
			}
			c.hold = func(m *Message) bool { return m.From == l.id || m.To == l.id }
			if nl := c.newLeaderAfter(behind, ahead); nl != ahead {
				t.Fatalf("replica %d leads, want the up-to-date %d", nl.id, ahead.id)
			}
		})
	}
}
