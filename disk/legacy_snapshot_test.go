package disk

// The older snapshot format, chunk records in badger, written here only so that tests can build a
// store the way earlier versions left it: Open must still read it.

// snapshotChunksInFlight is how many chunk records writeChunks keeps queued at once: enough to keep
// the flusher busy, few enough that log records are never stuck behind a whole snapshot.
const snapshotChunksInFlight = 4

// writeChunks queues data as chunk records of generation gen, a few at a time, and waits until all
// are written (not synced). Records resolve in order, so waiting on a chunk covers those before it.
func (s *Store) writeChunks(gen uint64, data []byte) (chunks uint32, err error) {
	var inFlight []Ticket
	for off := 0; off < len(data); chunks++ {
		end := min(off+s.opt.SnapshotChunkBytes, len(data))
		key := chunkKey(gen, chunks)
		o := op{key: key, value: sealed(key, data[off:end])}
		inFlight = append(inFlight, s.c.submit(&record{ops: []op{o}, sizeBytes: end - off}))
		if len(inFlight) > snapshotChunksInFlight {
			if err := inFlight[0].Wait(); err != nil {
				break
			}
			inFlight = inFlight[1:]
		}
		off = end
	}
	if len(inFlight) == 0 {
		return 0, nil
	}
	// The last ticket resolves after every earlier one, and a failure is sticky: its result
	// speaks for all of them, and once it resolves no chunk of data is referenced any more.
	return chunks, inFlight[len(inFlight)-1].Wait()
}
