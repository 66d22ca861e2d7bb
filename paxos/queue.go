package paxos

// cmdQueue holds commands waiting for a slot (or for a leader), one FIFO per client, and cuts
// batches from them round-robin. A client that pipelines large values therefore cannot make another
// client's command wait behind its backlog: each batch takes one command from every waiting client
// in turn, starting where the last batch stopped, and a command too large for the room left in a
// batch does not keep smaller ones of other clients out of it. One client's commands keep their
// order (the state machine's per-client sequence numbers rely on it); commands of different
// clients are concurrent, so any interleaving of them is linearizable.
//
// Order is deterministic: clients are visited in the order they joined the queue, never in map
// order, so a simulated run replays exactly.
type cmdQueue struct {
	byClient map[uint64]*clientCmds
	ring     []uint64 // clients with commands, in the order they joined
	next     int      // ring position the next batch starts at
	n        int      // commands
	bytes    int      // their Size, summed
}

type clientCmds struct {
	cmds []Command
	head int
}

func (q *cmdQueue) len() int { return q.n }

// push appends commands at the back of their clients' queues.
func (q *cmdQueue) push(cmds []Command) {
	for _, c := range cmds {
		cc := q.client(c.ClientID, false)
		cc.cmds = append(cc.cmds, c)
		q.n++
		q.bytes += c.Size()
	}
}

// pushFront puts commands back ahead of everything queued (a lost ballot's proposals, forwards
// that died with a leader's term): in their own order within each client, and ahead of that
// client's later commands; their clients are served first.
func (q *cmdQueue) pushFront(cmds []Command) {
	if len(cmds) == 0 {
		return
	}
	groups := map[uint64][]Command{}
	var order []uint64
	for _, c := range cmds {
		if _, ok := groups[c.ClientID]; !ok {
			order = append(order, c.ClientID)
		}
		groups[c.ClientID] = append(groups[c.ClientID], c)
		q.n++
		q.bytes += c.Size()
	}
	for i := len(order) - 1; i >= 0; i-- {
		cc := q.client(order[i], true)
		cc.cmds = append(groups[order[i]], cc.cmds[cc.head:]...)
		cc.head = 0
	}
}

// client returns id's FIFO, adding id to the ring (at the back, or where the next batch starts
// when front is set) if it has none.
func (q *cmdQueue) client(id uint64, front bool) *clientCmds {
	if cc, ok := q.byClient[id]; ok {
		if front { // served first: move it to where the next batch starts
			q.removeFromRing(id)
			q.ring = append(q.ring, 0)
			copy(q.ring[q.next+1:], q.ring[q.next:])
			q.ring[q.next] = id
		}
		return cc
	}
	if q.byClient == nil {
		q.byClient = map[uint64]*clientCmds{}
	}
	cc := &clientCmds{}
	q.byClient[id] = cc
	if front {
		q.ring = append(q.ring, 0)
		copy(q.ring[q.next+1:], q.ring[q.next:])
		q.ring[q.next] = id
	} else {
		// Joining at the back of the round: just before the next batch's start.
		q.ring = append(q.ring, 0)
		copy(q.ring[q.next+1:], q.ring[q.next:])
		q.ring[q.next] = id
		q.next++
	}
	return cc
}

func (q *cmdQueue) removeFromRing(id uint64) {
	for i, c := range q.ring {
		if c == id {
			q.ring = append(q.ring[:i], q.ring[i+1:]...)
			if i < q.next {
				q.next--
			}
			break
		}
	}
	if q.next >= len(q.ring) {
		q.next = 0
	}
}

// take cuts one batch: the first command of the client whose turn it is, then one command of each
// client in turn, round after round, while they fit in maxBytes (maxBytes 0: that one command
// alone). It returns nil when the queue is empty.
func (q *cmdQueue) take(maxBytes int) []Command {
	if q.n == 0 {
		return nil
	}
	var batch []Command
	bytes, resume := 0, 0
	for {
		added := false
		for i := 0; i < len(q.ring) && q.n > 0; {
			if q.next >= len(q.ring) {
				q.next = 0
			}
			id := q.ring[q.next]
			cc := q.byClient[id]
			c := cc.cmds[cc.head]
			if len(batch) > 0 && (maxBytes == 0 || bytes+c.Size() > maxBytes) {
				q.next++
				i++
				continue
			}
			batch = append(batch, c)
			bytes += c.Size()
			cc.cmds[cc.head] = Command{} // let the batch own the only reference
			cc.head++
			q.n--
			q.bytes -= c.Size()
			added = true
			if cc.head == len(cc.cmds) {
				delete(q.byClient, id)
				q.ring = append(q.ring[:q.next], q.ring[q.next+1:]...)
				// q.next now names the following client already.
			} else {
				if cc.head >= 256 && 2*cc.head >= len(cc.cmds) { // reuse the consumed front
					cc.cmds = cc.cmds[:copy(cc.cmds, cc.cmds[cc.head:])]
					cc.head = 0
				}
				q.next++
				i++
			}
			resume = q.next
			if maxBytes == 0 {
				break
			}
		}
		if !added || q.n == 0 || maxBytes == 0 {
			break
		}
	}
	// The next batch starts with the client after the last one served here: a client skipped only
	// because this batch had no room left for it goes first.
	q.next = resume
	if q.n == 0 {
		q.ring, q.next = nil, 0
	} else if q.next >= len(q.ring) {
		q.next = 0
	}
	return batch
}

// drain removes and returns every queued command, each client's in order, clients in turn order.
func (q *cmdQueue) drain() []Command {
	out := make([]Command, 0, q.n)
	for k := range q.ring {
		id := q.ring[(q.next+k)%len(q.ring)]
		cc := q.byClient[id]
		out = append(out, cc.cmds[cc.head:]...)
	}
	*q = cmdQueue{}
	return out
}

// filter keeps the commands keep approves of, in their order.
func (q *cmdQueue) filter(keep func(*Command) bool) {
	for i := 0; i < len(q.ring); {
		id := q.ring[i]
		cc := q.byClient[id]
		kept := cc.cmds[:0]
		for _, c := range cc.cmds[cc.head:] {
			if keep(&c) {
				kept = append(kept, c)
			} else {
				q.n--
				q.bytes -= c.Size()
			}
		}
		clear(cc.cmds[len(kept):])
		cc.cmds, cc.head = kept, 0
		if len(kept) == 0 {
			delete(q.byClient, id)
			q.ring = append(q.ring[:i], q.ring[i+1:]...)
			if i < q.next {
				q.next--
			}
			continue
		}
		i++
	}
	if q.next >= len(q.ring) {
		q.next = 0
	}
}
