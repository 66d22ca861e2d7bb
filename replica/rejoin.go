package replica

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/sofadb/sofadb/paxos"
)

// A replica whose data directory cannot be trusted (a corrupt record, lost writes: it refuses to
// start) comes back by rejoining: its directory is emptied but for its identity, and it starts as
// a learner. It must not vote before it knows what it may have voted for: a wiped acceptor that
// votes at once can give a majority that holds no copy of a chosen value, which then chooses
// another (paxos TestAWipedReplicaVotingAtOnceBreaksAgreement). So the rejoin, made by
// PlanRejoin/ApplyRejoin (`sofadb rejoin`) while every other replica is up, records in the file
// REJOIN:
//
//   - a promise floor above every ballot any other replica has promised: every ballot that was
//     ever prepared before the wipe is at or below the promise of the replica that prepared it,
//     so the rejoined replica refuses them all, whatever it promised and forgot;
//   - the highest slot any other replica holds a vote for: every value that may have been chosen
//     with the forgotten votes is in a slot at or below it (a majority includes another replica),
//     and the replica votes only once its chosen prefix reaches it (paxos.Config.VoteFromCommit).
//
// The replica raises its durable promise to the floor before anything else, runs as a learner,
// and removes REJOIN once it votes. This is Paxos Made Live's rule for a replica with a corrupted
// disk (catch up as a non-voting member first), with the ballot floor making it hold against
// prepares from before the wipe still in flight.

// rejoinFile marks a data directory rejoining; see above.
const rejoinFile = "REJOIN"

// rejoinMark is REJOIN's content.
type rejoinMark struct {
	// PromisedFloor is the durable promise the replica starts with (a paxos.Ballot).
	PromisedFloor uint64 `json:"promised_floor"`
	// VoteFrom is the chosen prefix the replica must reach before it votes.
	VoteFrom uint64 `json:"vote_from"`
	// From says where the figures came from, for the operator: each other replica's promise and
	// highest voted slot when the rejoin was planned.
	From    map[paxos.ReplicaID]string `json:"from"`
	Created time.Time                  `json:"created"`
}

// readRejoin returns the directory's rejoin mark, or nil when it has none.
func readRejoin(dir string) (*rejoinMark, error) {
	b, err := os.ReadFile(filepath.Join(dir, rejoinFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var m rejoinMark
	if err := json.Unmarshal(b, &m); err != nil || m.PromisedFloor == 0 {
		return nil, fmt.Errorf("replica: %s in %s does not parse (%v): it was written by `sofadb rejoin`; plan the rejoin again",
			rejoinFile, dir, err)
	}
	return &m, nil
}

// ErrRejoinRefused is PlanRejoin's answer when a rejoin now would not be safe; the message says why.
var ErrRejoinRefused = errors.New("replica: rejoin refused")

// RejoinPlan is what a rejoin will write, and why.
type RejoinPlan struct {
	ID            paxos.ReplicaID
	PromisedFloor paxos.Ballot
	VoteFrom      uint64
	From          map[paxos.ReplicaID]string
}

// PlanRejoin asks every other replica for its status (at httpAddrs, which name every replica of
// the cluster, id's included) and returns the plan for replica id to rejoin. It refuses, saying
// why, when replica id still answers (stop it first), or when any other replica does not answer,
// is fenced, or is rejoining itself: a rejoin needs every other replica's promise and votes, and
// with one of them missing too, the votes a majority's durability rests on could be the ones lost.
func PlanRejoin(ctx context.Context, id paxos.ReplicaID, httpAddrs map[paxos.ReplicaID]string) (*RejoinPlan, error) {
	if _, ok := httpAddrs[id]; !ok || len(httpAddrs) < 3 {
		return nil, fmt.Errorf("replica: rejoin: -http must list every replica of the cluster (at least 3), replica %d included", id)
	}
	client := &http.Client{Timeout: 3 * time.Second}
	get := func(addr string) (*Status, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/status", nil)
		if err != nil {
			return nil, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("/status answered %s", resp.Status)
		}
		var st Status
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			return nil, fmt.Errorf("/status: %w", err)
		}
		return &st, nil
	}
	if st, err := get(httpAddrs[id]); err == nil {
		return nil, fmt.Errorf("%w: replica %d answers at %s (commit %d): stop it before emptying its data directory",
			ErrRejoinRefused, id, httpAddrs[id], st.Commit)
	}
	plan := &RejoinPlan{ID: id, From: map[paxos.ReplicaID]string{}}
	var maxPromised paxos.Ballot
	for _, other := range slices.Sorted(maps.Keys(httpAddrs)) {
		if other == id {
			continue
		}
		st, err := get(httpAddrs[other])
		switch {
		case err != nil:
			return nil, fmt.Errorf("%w: replica %d does not answer at %s (%v); a rejoin needs every other "+
				"replica up, to learn the highest ballot any of them promised and the highest slot any holds a vote for, and "+
				"with replica %d down too, votes a majority's durability rests on could be among those lost with replica %d's data",
				ErrRejoinRefused, other, httpAddrs[other], err, other, id)
		case st.ID != other:
			return nil, fmt.Errorf("%w: %s answers as replica %d, not %d", ErrRejoinRefused, httpAddrs[other], st.ID, other)
		case st.DiskError != "":
			return nil, fmt.Errorf("%w: replica %d is fenced (%s); bring it back first", ErrRejoinRefused, other, st.DiskError)
		case !st.Voting:
			return nil, fmt.Errorf("%w: replica %d is rejoining itself (votes from slot %d); one at a time",
				ErrRejoinRefused, other, st.RejoinVoteFrom)
		}
		promised, err := paxos.ParseBallot(st.Promised)
		if err != nil {
			return nil, fmt.Errorf("replica: rejoin: replica %d's promise: %w", other, err)
		}
		maxPromised = max(maxPromised, promised)
		plan.VoteFrom = max(plan.VoteFrom, st.LogLast, st.Commit)
		plan.From[other] = fmt.Sprintf("promised %s, votes up to slot %d, commit %d", st.Promised, st.LogLast, st.Commit)
	}
	plan.PromisedFloor = paxos.MakeBallot(maxPromised.Round()+1, 0)
	return plan, nil
}

// keptOnRejoin are the files of a data directory a rejoin keeps: the replica's identity (its
// peers know it by it) and the identities it learned of its peers.
var keptOnRejoin = []string{identityFile, peerBookFile}

// ApplyRejoin empties dir but for the replica's identity files and writes REJOIN from plan. dir must
// hold an IDENTITY of the plan's replica (a data directory of this cluster, not a typo).
func ApplyRejoin(dir string, plan *RejoinPlan) error {
	if _, err := os.Stat(filepath.Join(dir, identityFile)); err != nil {
		return fmt.Errorf("replica: rejoin: %s is not a replica's data directory (%w); nothing changed", dir, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if slices.Contains(keptOnRejoin, e.Name()) {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("replica: rejoin: %w", err)
		}
	}
	m := rejoinMark{PromisedFloor: uint64(plan.PromisedFloor), VoteFrom: plan.VoteFrom, From: plan.From, Created: time.Now().UTC()}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, rejoinFile), append(b, '\n'))
}

// syncDir fsyncs a directory.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// finishRejoin removes REJOIN once the replica votes (the loop calls it from publish).
func (s *Server) finishRejoin(st *Status) {
	if s.rejoin == nil || !st.Voting {
		return
	}
	err := os.Remove(filepath.Join(s.cfg.DataDir, rejoinFile))
	if err == nil || errors.Is(err, os.ErrNotExist) {
		err = syncDir(s.cfg.DataDir)
	}
	if err != nil {
		s.log.Error("rejoined, but REJOIN could not be removed; it is harmless (the replica will learn up to its slot again at a restart)", "err", err)
	} else {
		s.log.Warn("REJOINED: voting again", "commit", st.Commit, "vote_from", s.rejoin.VoteFrom)
	}
	s.rejoin = nil
}
