package kv

import (
	"container/list"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
)

// SessionWindow is how many sequence numbers below a client's highest one the state machine
// remembers individually. A client may have at most this many commands in flight: a command older
// than the window is refused as Stale rather than risk applying it twice.
const SessionWindow = 1024

// SessionsMax bounds the client table. When it is full the least recently used session is evicted;
// eviction is decided by slot order, so every replica evicts the same one. A command from an evicted
// session is refused as expired (Result.Expired), never applied: the table no longer knows which of
// its sequence numbers were applied.
const SessionsMax = 1 << 16

const windowWords = SessionWindow / 64

// Result is the outcome of one command, in the order the commands were applied.
type Result struct {
	// Value is the value read by a get (aliases the state; copy it before the next Apply).
	Value []byte
	// Found says a get found its key.
	Found bool
	// Dup says the command had already been applied (a retry chosen twice): it changed nothing.
	Dup bool
	// Stale says the command's sequence number fell below its client's window: it was not applied.
	Stale bool
	// Expired says the command's client id names no session (never opened, or evicted): it was not
	// applied.
	Expired bool
	// Session is the id an OpOpen gave out.
	Session uint64
	// Invalid says the command's payload did not decode (nothing the runtime proposes, but the log is
	// not trusted blindly): it changed nothing, on every replica alike.
	Invalid bool
}

// session remembers which of a client's sequence numbers were applied: maxSeq and a bitmap of the
// SessionWindow numbers at and below it (bit i of the window = maxSeq-i applied).
type session struct {
	client uint64
	maxSeq uint64
	seen   [windowWords]uint64
	elem   *list.Element
}

// State is the deterministic key-value state machine every replica applies the chosen log to. Given
// the same log, every replica reaches the same State, byte for byte: no map iteration order, clock or
// randomness leaks into it. It is not safe for concurrent use; the runtime owns it from one goroutine.
type State struct {
	applied     uint64 // last slot applied
	digest      uint64 // hash chain over every applied slot's commands: equal digests, equal logs
	kv          map[string][]byte
	sessions    map[uint64]*session
	lru         list.List // of *session, most recently used at the front
	issued      uint64    // session ids given out so far: the next OpOpen gets issued+1
	sessionsMax int
	hasher      hashState
}

// NewState returns an empty state at slot 0.
func NewState() *State {
	s := &State{kv: make(map[string][]byte), sessions: make(map[uint64]*session), sessionsMax: SessionsMax}
	s.lru.Init()
	return s
}

// Sessions is the number of client sessions held.
func (s *State) Sessions() int { return len(s.sessions) }

// Applied is the last slot applied; a restart resumes the log after it.
func (s *State) Applied() uint64 { return s.applied }

// Digest is the hash chain over every applied slot: two states with the same Applied and Digest were
// built from the same log.
func (s *State) Digest() uint64 { return s.digest }

// Len is the number of keys stored.
func (s *State) Len() int { return len(s.kv) }

// Get reads a key without going through the log: the runtime uses it for lease reads.
func (s *State) Get(key []byte) ([]byte, bool) {
	v, ok := s.kv[string(key)]
	return v, ok
}

// ErrSlotOrder is returned when slots are applied out of order: the log must be applied exactly once,
// in slot order, and a gap means the caller skipped a chosen slot.
var ErrSlotOrder = errors.New("kv: slot applied out of order")

// Apply applies one chosen slot's batch and appends each command's result to out. A no-op slot (no
// commands) still advances Applied and the digest.
func (s *State) Apply(slot uint64, cmds []Command, out []Result) ([]Result, error) {
	if slot != s.applied+1 {
		return out, fmt.Errorf("%w: applied %d, got %d", ErrSlotOrder, s.applied, slot)
	}
	s.hasher.reset(s.digest, slot)
	for i := range cmds {
		c := &cmds[i]
		s.hasher.command(c)
		out = append(out, s.applyOne(slot, c))
	}
	s.digest = s.hasher.sum()
	s.applied = slot
	return out, nil
}

func (s *State) applyOne(slot uint64, c *Command) Result {
	switch {
	case !c.Op.Valid():
		return Result{Invalid: true}
	case c.Op == OpOpen:
		s.issued++
		s.newSession(s.issued)
		return Result{Session: s.issued}
	case !c.Op.Mutates():
		v, ok := s.kv[string(c.Key)]
		return Result{Value: v, Found: ok}
	}
	switch s.admit(c.ClientID, c.Seq) {
	case admitDup:
		return Result{Dup: true}
	case admitStale:
		return Result{Stale: true}
	case admitExpired:
		return Result{Expired: true}
	}
	switch c.Op {
	case OpPut:
		// Copy: the command's bytes belong to the log entry, which is truncated later.
		s.kv[string(c.Key)] = slices.Clone(c.Value)
	case OpDelete:
		delete(s.kv, string(c.Key))
	}
	return Result{}
}

type admission int

const (
	admitNew admission = iota
	admitDup
	admitStale
	admitExpired
)

// admit decides whether (client, seq) is new and records it if so. A client without a session is
// refused: its session may have been evicted, and then nothing says whether seq was applied.
func (s *State) admit(client, seq uint64) admission {
	ss := s.sessions[client]
	if ss == nil {
		return admitExpired
	}
	s.lru.MoveToFront(ss.elem)
	switch {
	case seq > ss.maxSeq:
		shiftWindow(&ss.seen, seq-ss.maxSeq)
		ss.maxSeq = seq
		ss.seen[0] |= 1
		return admitNew
	case ss.maxSeq-seq >= SessionWindow:
		return admitStale
	}
	off := ss.maxSeq - seq
	word, bit := off/64, uint64(1)<<(off%64)
	if ss.seen[word]&bit != 0 {
		return admitDup
	}
	ss.seen[word] |= bit
	return admitNew
}

// newSession adds a session, evicting the least recently used one when the table is full.
func (s *State) newSession(client uint64) *session {
	if len(s.sessions) >= s.sessionsMax {
		oldest := s.lru.Back()
		old := oldest.Value.(*session)
		s.lru.Remove(oldest)
		delete(s.sessions, old.client)
	}
	ss := &session{client: client}
	ss.elem = s.lru.PushFront(ss)
	s.sessions[client] = ss
	return ss
}

// shiftWindow moves the window up by n sequence numbers: bit i becomes bit i+n.
func shiftWindow(w *[windowWords]uint64, n uint64) {
	if n >= SessionWindow {
		*w = [windowWords]uint64{}
		return
	}
	words, bits := int(n/64), n%64
	for i := windowWords - 1; i >= 0; i-- {
		var v uint64
		if src := i - words; src >= 0 {
			v = w[src] << bits
			if bits != 0 && src-1 >= 0 {
				v |= w[src-1] >> (64 - bits)
			}
		}
		w[i] = v
	}
}

// hashState computes the digest chain with FNV-1a; fixed, so digests compare across processes.
type hashState struct {
	h   [8]byte
	fnv fnvHash
}

type fnvHash = interface {
	Write([]byte) (int, error)
	Sum64() uint64
	Reset()
}

func (h *hashState) reset(prev, slot uint64) {
	if h.fnv == nil {
		h.fnv = fnv.New64a()
	}
	h.fnv.Reset()
	h.u64(prev)
	h.u64(slot)
}

func (h *hashState) u64(v uint64) {
	binary.LittleEndian.PutUint64(h.h[:], v)
	h.fnv.Write(h.h[:])
}

func (h *hashState) command(c *Command) {
	h.u64(c.ClientID)
	h.u64(c.Seq)
	h.u64(uint64(c.Op)<<32 | uint64(len(c.Key)))
	h.fnv.Write(c.Key)
	h.u64(uint64(len(c.Value)))
	h.fnv.Write(c.Value)
}

func (h *hashState) sum() uint64 { return h.fnv.Sum64() }

// Clone returns an independent copy of the state, so a snapshot can be encoded on another
// goroutine while this one keeps applying: the loop pays only for copying the maps. Values are
// shared, which is safe because a stored value is never modified (a put stores a fresh copy).
func (s *State) Clone() *State {
	c := &State{applied: s.applied, digest: s.digest, kv: maps.Clone(s.kv),
		sessions: make(map[uint64]*session, len(s.sessions)), issued: s.issued, sessionsMax: s.sessionsMax}
	c.lru.Init()
	for e := s.lru.Back(); e != nil; e = e.Prev() {
		ss := *e.Value.(*session)
		cs := &ss
		cs.elem = c.lru.PushFront(cs)
		c.sessions[cs.client] = cs
	}
	return c
}

// snapshotVersion is written first in every snapshot so a format change is detected, not misread.
// Version 2 added the count of session ids issued; version 1 snapshots still restore (with none).
const snapshotVersion = 2

// ErrBadSnapshot is returned when snapshot bytes do not decode: truncated, wrong version or
// inconsistent. The state is left unchanged.
var ErrBadSnapshot = errors.New("kv: malformed snapshot")

// AppendSnapshot appends the whole state (applied slot, digest, keys in sorted order, sessions from
// least to most recently used) to dst. Sorting makes the bytes identical on every replica.
func (s *State) AppendSnapshot(dst []byte) []byte {
	dst = binary.AppendUvarint(dst, snapshotVersion)
	dst = binary.AppendUvarint(dst, s.applied)
	dst = binary.LittleEndian.AppendUint64(dst, s.digest)
	dst = binary.AppendUvarint(dst, s.issued)
	keys := make([]string, 0, len(s.kv))
	for k := range s.kv {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	dst = binary.AppendUvarint(dst, uint64(len(keys)))
	for _, k := range keys {
		v := s.kv[k]
		dst = binary.AppendUvarint(dst, uint64(len(k)))
		dst = append(dst, k...)
		dst = binary.AppendUvarint(dst, uint64(len(v)))
		dst = append(dst, v...)
	}
	dst = binary.AppendUvarint(dst, uint64(s.lru.Len()))
	for e := s.lru.Back(); e != nil; e = e.Prev() {
		ss := e.Value.(*session)
		dst = binary.AppendUvarint(dst, ss.client)
		dst = binary.AppendUvarint(dst, ss.maxSeq)
		for _, w := range ss.seen {
			dst = binary.LittleEndian.AppendUint64(dst, w)
		}
	}
	return dst
}

// Restore replaces the state with a snapshot written by AppendSnapshot. On error the state is
// unchanged. The restored state copies what it keeps, so data may be reused afterwards.
func (s *State) Restore(data []byte) error {
	n := NewState()
	d := snapDecoder{b: data}
	v := d.uvarint()
	if v != 1 && v != snapshotVersion && d.err == nil {
		return fmt.Errorf("%w: version %d", ErrBadSnapshot, v)
	}
	n.applied = d.uvarint()
	n.digest = d.u64()
	if v >= 2 {
		n.issued = d.uvarint()
	}
	for i, keys := uint64(0), d.uvarint(); i < keys && d.err == nil; i++ {
		k := d.bytes()
		v := d.bytes()
		n.kv[string(k)] = slices.Clone(v)
	}
	for i, count := uint64(0), d.uvarint(); i < count && d.err == nil; i++ {
		ss := &session{client: d.uvarint(), maxSeq: d.uvarint()}
		for w := range ss.seen {
			ss.seen[w] = d.u64()
		}
		if d.err == nil {
			ss.elem = n.lru.PushFront(ss)
			n.sessions[ss.client] = ss
		}
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = errors.New("trailing bytes")
	}
	if d.err != nil {
		return fmt.Errorf("%w: %v", ErrBadSnapshot, d.err)
	}
	s.applied, s.digest, s.kv, s.sessions, s.issued = n.applied, n.digest, n.kv, n.sessions, n.issued
	s.lru.Init()
	for e := n.lru.Back(); e != nil; e = e.Prev() {
		ss := e.Value.(*session)
		ss.elem = s.lru.PushFront(ss)
	}
	return nil
}

// snapDecoder reads a snapshot, remembering the first error so the caller checks once.
type snapDecoder struct {
	b   []byte
	err error
}

func (d *snapDecoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errors.New("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *snapDecoder) u64() uint64 {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 8 {
		d.err = errors.New("short")
		return 0
	}
	v := binary.LittleEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

func (d *snapDecoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.err = errors.New("length past end")
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

// SnapshotSlot reads the applied slot from the head of AppendSnapshot bytes, so the slot a snapshot
// covers is the one stored inside it, never a second copy that could disagree.
func SnapshotSlot(data []byte) (uint64, error) {
	d := snapDecoder{b: data}
	if v := d.uvarint(); d.err == nil && v != snapshotVersion && v != 1 {
		return 0, fmt.Errorf("%w: version %d", ErrBadSnapshot, v)
	}
	slot := d.uvarint()
	if d.err != nil {
		return 0, fmt.Errorf("%w: %v", ErrBadSnapshot, d.err)
	}
	return slot, nil
}
