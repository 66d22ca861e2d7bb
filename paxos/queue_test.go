package paxos

import (
	"math/rand/v2"
	"testing"
)

// A light client's command is in the next slot the leader cuts, not behind a heavy client's
// backlog: with one FIFO for everybody it waited for 40 slots of 60 KB values ahead of it.
func TestLightClientIsNotQueuedBehindAHeavyOne(t *testing.T) {
	c := newTestNet(t, 3, func(cfg *Config) { cfg.BatchBytesMax, cfg.InflightSlotsMax = 256<<10, 2 })
	l := c.leader()
	c.hold = func(m *Message) bool { return m.Type == MsgAccepted }
	for i := range 160 { // 160 x 60 KB from client 1: 40 slots of 4
		if err := l.Propose([]Command{cmd(1, uint64(i+1), 60<<10)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Propose([]Command{cmd(2, 1, 100)}); err != nil {
		t.Fatal(err)
	}
	c.pump()
	inflight := l.nextSlot - 1
	c.hold = nil
	for c.held != nil {
		msgs := c.held
		c.held = nil
		for i := range msgs {
			c.reps[msgs[i].To-1].Step(&msgs[i])
		}
		c.pump()
	}
	// The two slots in flight when client 2 arrived held client 1's commands; client 2's is in the
	// first slot cut after them.
	for s := uint64(1); s <= l.commit; s++ {
		for _, cm := range l.log.get(s).cmds {
			if cm.ClientID == 2 {
				if s > inflight+1 {
					t.Fatalf("client 2's command went into slot %d; the first slot cut after it arrived was %d", s, inflight+1)
				}
				return
			}
		}
	}
	t.Fatalf("client 2's command not chosen by slot %d", l.commit)
}

// The queue hands out every command exactly once, each client's in order, whatever mix of pushes,
// front pushes, batches, filters and drains it sees; and a batch never exceeds its byte limit
// unless it is a single command.
func TestCmdQueueKeepsEachClientsOrder(t *testing.T) {
	for seed := range uint64(200) {
		rng := rand.New(rand.NewPCG(seed, 7))
		var q cmdQueue
		next := map[uint64]uint64{} // next seq to push, per client
		var out []Command
		queued := 0
		for range 300 {
			switch op := rng.IntN(10); {
			case op < 5:
				var cmds []Command
				for range 1 + rng.IntN(4) {
					cl := uint64(1 + rng.IntN(5))
					next[cl]++
					cmds = append(cmds, cmd(cl, next[cl], rng.IntN(3000)))
				}
				q.push(cmds)
				queued += len(cmds)
			case op < 8:
				limit := rng.IntN(8000)
				b := q.take(limit)
				size := 0
				for i := range b {
					size += b[i].Size()
				}
				if len(b) > 1 && (limit == 0 || size > limit) {
					t.Fatalf("seed %d: batch of %d commands, %d bytes, limit %d", seed, len(b), size, limit)
				}
				out = append(out, b...)
			case op == 8:
				// Front pushes put back what was taken most recently (a lost ballot's proposals).
				k := min(len(out), rng.IntN(4))
				back := append([]Command(nil), out[len(out)-k:]...)
				out = out[:len(out)-k]
				q.pushFront(back)
			default:
				out = append(out, q.drain()...)
			}
			total := 0
			for _, cc := range q.byClient {
				total += len(cc.cmds) - cc.head
			}
			if total != q.n || len(q.ring) != len(q.byClient) {
				t.Fatalf("seed %d: count %d, held %d, ring %d, clients %d", seed, q.n, total, len(q.ring), len(q.byClient))
			}
		}
		out = append(out, q.drain()...)
		if len(out) != queued || q.n != 0 || q.bytes != 0 {
			t.Fatalf("seed %d: %d out of %d queued; left n=%d bytes=%d", seed, len(out), queued, q.n, q.bytes)
		}
		last := map[uint64]uint64{}
		for _, c := range out {
			if c.Seq != last[c.ClientID]+1 {
				t.Fatalf("seed %d: client %d's seq %d after %d", seed, c.ClientID, c.Seq, last[c.ClientID])
			}
			last[c.ClientID] = c.Seq
		}
	}
}

// Every waiting client gets a turn in each batch that has room for its next command.
func TestCmdQueueTakesRoundRobin(t *testing.T) {
	var q cmdQueue
	for i := range 10 {
		q.push([]Command{cmd(1, uint64(i+1), 1000)})
	}
	q.push([]Command{cmd(2, 1, 10), cmd(2, 2, 10)})
	q.push([]Command{cmd(3, 1, 5000)})
	b := q.take(3000)
	got := []uint64{}
	for _, c := range b {
		got = append(got, c.ClientID)
	}
	// Client 1 first (its turn), then 2, then 3's 5 KB does not fit, then 1 and 2 again.
	want := []uint64{1, 2, 1, 2}
	if len(got) != len(want) {
		t.Fatalf("batch clients %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("batch clients %v, want %v", got, want)
		}
	}
	if b := q.take(3000); b[0].ClientID != 3 {
		t.Fatalf("next batch starts with client %d, want 3 (whose turn was skipped for room)", b[0].ClientID)
	}
}
