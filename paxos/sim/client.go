package sim

import (
	"fmt"

	"github.com/sofadb/sofadb/driver"
	"github.com/sofadb/sofadb/kv"
	"github.com/sofadb/sofadb/paxos"
)

// cmdKey names a client command: the (client, seq) pair the state machine de-duplicates on.
type cmdKey struct{ client, seq uint64 }

func keyOf(c *paxos.Command) cmdKey { return cmdKey{c.ClientID, c.Seq} }

func kvKey(c *kv.Command) cmdKey { return cmdKey{c.ClientID, c.Seq} }

// clientMsg is a request to a replica or a reply to a client.
type clientMsg struct {
	client int
	cmd    paxos.Command
	seq    uint64
	ok     bool
	retry  bool // not applied here: try again (not leader, queue full, stale)
	leader paxos.ReplicaID
	// session is the id an OpOpen gave out; expired says a command's session was unknown.
	session uint64
	expired bool
	// A read's answer: where in the log it was served (a lease read: the applied slot, index -1 for
	// "after the whole slot"; a log read: its own slot and index in the batch) and what it found.
	lease     bool
	servedAt  uint64
	servedIdx int
	found     bool
	value     []byte
}

// client issues one command at a time and retries it, with the same (client, seq), until a replica
// acknowledges it: after a timeout (to another replica) or a "try elsewhere" reply (to the hint).
// Its first command opens its session (OpOpen, named by the client's nonce id); every later command
// carries the session id the cluster gave out.
type client struct {
	w       *world
	idx     int
	id      uint64 // the nonce naming its OpOpen
	op      kv.Op  // what cmd does, and on which key (cmd.Data is its encoding)
	key     []byte
	session uint64
	want    *kv.Command // a scripted command to send next (scenario tests)
	acks    int         // commands acknowledged, the open not counted
	seq     uint64
	cmd     paxos.Command
	waiting bool
	attempt uint64
	hint    int  // replica index to try next, -1 for none
	pin     int  // when >= 0, always send to this replica (scenario tests)
	follow  bool // send new commands to the leader the last reply named
	reader  bool // issues only reads, with no think time
	writer  bool // issues only puts (scenario tests)
	// scripted clients send only commands a test gives them (want), after opening their session.
	scripted bool
	// mustSee is the log position of the latest write acknowledged (to any client) before this
	// command was first sent: linearizability says a read must reflect it and a write must take
	// effect after it.
	mustSee position
}

// openNonceBit keeps the ids naming OpOpen commands apart from the session ids the state machine
// gives out (1, 2, 3, ...), so the checker's (client, seq) keys never collide.
const openNonceBit = 1 << 40

func (c *client) newCommand() paxos.Command {
	if c.session == 0 {
		c.op, c.key = kv.OpOpen, nil
		return driver.NewCommand(openNonceBit|c.id, 0, kv.OpOpen, nil, nil)
	}
	c.seq++
	if c.want != nil {
		w := *c.want
		c.want = nil
		c.op, c.key = w.Op, w.Key
		return driver.NewCommand(c.session, c.seq, w.Op, w.Key, w.Value)
	}
	key := []byte(fmt.Sprintf("k%d", c.w.rng.IntN(c.w.p.Keys)))
	var value []byte
	switch x := c.w.rng.IntN(100); {
	case c.writer:
		c.op, value = kv.OpPut, []byte(fmt.Sprintf("v%d.%d", c.id, c.seq))
	case c.reader || x < c.w.p.ReadPct:
		c.op = kv.OpGet
	case x < c.w.p.ReadPct+(100-c.w.p.ReadPct)*8/9:
		c.op, value = kv.OpPut, []byte(fmt.Sprintf("v%d.%d", c.id, c.seq))
	default:
		c.op = kv.OpDelete
	}
	c.key = key
	return driver.NewCommand(c.session, c.seq, c.op, key, value)
}

func (c *client) send() {
	if !c.waiting {
		if c.w.healed && c.session != 0 {
			return // after heal, clients only finish what they started
		}
		c.cmd = c.newCommand()
		c.mustSee = c.w.chk.lastAcked
		c.waiting = true
		if !c.follow {
			c.hint = -1
		}
		c.w.chk.onPropose(&c.cmd)
	}
	c.attempt++
	target := c.hint
	switch {
	case c.pin >= 0:
		target = c.pin
	case target < 0 || c.w.p.Mode == paxos.ModeDuel:
		target = c.w.rng.IntN(len(c.w.nodes))
	}
	c.w.sendClient(evClientRequest, target, clientMsg{client: c.idx, cmd: c.cmd})
	c.w.schedule(&event{kind: evClientTimeout, node: c.idx, gen: c.attempt, atUs: c.w.nowUs + int64(c.w.p.ClientTimeoutUs)})
}

func (c *client) timeout(attempt uint64) {
	if c.waiting && attempt == c.attempt {
		c.hint = -1
		c.send()
	}
}

func (c *client) reply(cm *clientMsg) {
	if !c.waiting || cm.seq != c.seq {
		return // a late reply to an earlier attempt of a finished command
	}
	if cm.expired {
		c.w.chk.violate("session", "client %d: session %d unknown to the state machine (seq %d)", c.id, c.session, c.seq)
		return
	}
	if cm.ok {
		switch c.op {
		case kv.OpGet:
			c.w.chk.onRead(c, cm)
		case kv.OpOpen:
			c.session = cm.session
		}
		if c.op != kv.OpOpen {
			c.acks++
		}
		if c.follow && cm.leader != 0 {
			c.hint = int(cm.leader) - 1
		}
		c.w.chk.onAck(&c.cmd, c.op, c.mustSee)
		c.waiting = false
		think := int64(c.w.p.ClientThinkUs)
		if c.reader || c.op == kv.OpOpen {
			think = 0
		}
		if c.scripted && c.want == nil {
			return // a scripted client sends only what its test gives it
		}
		c.w.schedule(&event{kind: evClientSend, node: c.idx, atUs: c.w.nowUs + think})
		return
	}
	c.hint = -1
	if cm.leader != 0 {
		c.hint = int(cm.leader) - 1
	}
	c.attempt++ // the pending timeout belongs to the old attempt now
	c.w.schedule(&event{kind: evClientRetry, node: c.idx, gen: c.attempt, atUs: c.w.nowUs + 1000})
}

// retry resends after a "try elsewhere" reply, unless something newer happened since.
func (c *client) retry(attempt uint64) {
	if c.waiting && attempt == c.attempt {
		c.send()
	}
}
