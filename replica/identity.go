package replica

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/sofadb/sofadb/paxos"
	"github.com/sofadb/sofadb/wire"
)

// A replica's identity (wire.Identity) is created at random with its data directory and kept in
// it, next to the identities of the peers it has met. Two processes that claim one replica id (a
// copy started at another address, or a replica whose data directory was wiped and so has lost
// its promises) are two acceptors answering under one name: the quorum arithmetic no longer holds.
// A peer that already knows the identity behind an id refuses any other, and says so loudly.
//
// The files are small text files, written whole to a temporary name, synced and renamed into
// place, so a crash leaves the old file or the new one.
const (
	identityFile   = "IDENTITY"
	peerBookFile   = "PEER-IDENTITIES"
	identityHeader = "sofadb replica identity v1"
	peerBookHeader = "sofadb peer identities v1"
)

// ErrIdentity marks a data directory that belongs to another replica, or an identity file that
// cannot be read.
var ErrIdentity = errors.New("replica identity")

// loadIdentity reads this replica's identity from dir, creating it on first start. A directory
// created for another replica id is refused: running it as this one would present another
// acceptor's promises under this id.
func loadIdentity(dir string, id paxos.ReplicaID) (wire.Identity, error) {
	path := filepath.Join(dir, identityFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		var ident wire.Identity
		_, _ = rand.Read(ident[:])
		body := fmt.Sprintf("%s\nreplica %d\nidentity %s\n", identityHeader, id, hex.EncodeToString(ident[:]))
		return ident, writeFileAtomic(path, []byte(body))
	}
	if err != nil {
		return wire.Identity{}, fmt.Errorf("%w: %v", ErrIdentity, err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	var owner uint64
	var ident wire.Identity
	if len(lines) != 3 || lines[0] != identityHeader {
		return wire.Identity{}, fmt.Errorf("%w: %s is not a SofaDB identity file", ErrIdentity, path)
	}
	owner, err = strconv.ParseUint(strings.TrimPrefix(lines[1], "replica "), 10, 16)
	if err == nil {
		ident, err = parseIdentity(strings.TrimPrefix(lines[2], "identity "))
	}
	if err != nil {
		return wire.Identity{}, fmt.Errorf("%w: %s is corrupt: %v", ErrIdentity, path, err)
	}
	if paxos.ReplicaID(owner) != id {
		return wire.Identity{}, fmt.Errorf("%w: data directory %s belongs to replica %d, not %d (check -id and -data)",
			ErrIdentity, dir, owner, id)
	}
	return ident, nil
}

func parseIdentity(s string) (wire.Identity, error) {
	var ident wire.Identity
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(ident) {
		return ident, fmt.Errorf("identity %q is not %d hex bytes", s, len(ident))
	}
	copy(ident[:], b)
	return ident, nil
}

func identityString(ident wire.Identity) string { return hex.EncodeToString(ident[:]) }

// peerBook remembers the identity behind each peer id, across restarts. Safe for concurrent use
// (handshakes run on connection goroutines).
type peerBook struct {
	path string

	mu        sync.Mutex
	known     map[paxos.ReplicaID]wire.Identity
	conflicts map[paxos.ReplicaID]string // the last refusal per id, for /status
}

func openPeerBook(dir string) (*peerBook, error) {
	b := &peerBook{path: filepath.Join(dir, peerBookFile), known: map[paxos.ReplicaID]wire.Identity{},
		conflicts: map[paxos.ReplicaID]string{}}
	data, err := os.ReadFile(b.path)
	if errors.Is(err, os.ErrNotExist) {
		return b, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrIdentity, err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) == 0 || lines[0] != peerBookHeader {
		return nil, fmt.Errorf("%w: %s is not a SofaDB peer identity file", ErrIdentity, b.path)
	}
	for _, line := range lines[1:] {
		var id uint64
		var ident wire.Identity
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == "replica" {
			id, err = strconv.ParseUint(f[1], 10, 16)
			if err == nil {
				ident, err = parseIdentity(f[2])
			}
		} else {
			err = errors.New("want: replica <id> <identity>")
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %s is corrupt at %q: %v", ErrIdentity, b.path, line, err)
		}
		b.known[paxos.ReplicaID(id)] = ident
	}
	return b, nil
}

// errIdentityConflict marks a handshake refused because the peer's identity is not the one known
// for its id.
var errIdentityConflict = errors.New("identity conflict")

// check accepts ident for peer id if it is the one known, or the first one seen (which is then
// remembered, durably, before the connection is trusted). A different one is refused.
func (b *peerBook) check(id paxos.ReplicaID, ident wire.Identity, addr string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	known, ok := b.known[id]
	if ok && known == ident {
		return nil
	}
	if ok {
		err := fmt.Errorf("%w: a process at %s claims to be replica %d with identity %s, but replica %d is %s: "+
			"two processes under one id break the quorum; stop the impostor (if replica %d's data directory was lost, "+
			"it must not rejoin under its old id: its promises are gone)",
			errIdentityConflict, addr, id, identityString(ident), id, identityString(known), id)
		b.conflicts[id] = err.Error()
		return err
	}
	b.known[id] = ident
	if err := b.save(); err != nil {
		delete(b.known, id)
		return fmt.Errorf("%w: cannot remember replica %d's identity: %v", ErrIdentity, id, err)
	}
	return nil
}

// status returns the identity known for id ("" if none yet) and the last conflict seen.
func (b *peerBook) status(id paxos.ReplicaID) (ident, conflict string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if k, ok := b.known[id]; ok {
		ident = identityString(k)
	}
	return ident, b.conflicts[id]
}

func (b *peerBook) save() error {
	var sb strings.Builder
	sb.WriteString(peerBookHeader + "\n")
	ids := make([]paxos.ReplicaID, 0, len(b.known))
	for id := range b.known {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		k := b.known[id]
		fmt.Fprintf(&sb, "replica %d %s\n", id, identityString(k))
	}
	return writeFileAtomic(b.path, []byte(sb.String()))
}

// writeFileAtomic writes data to path through a synced temporary file and a rename, then syncs the
// directory: after a crash path holds the old contents or the new, never a mix.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}
