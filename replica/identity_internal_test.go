package replica

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sofadb/sofadb/wire"
)

// TestIdentityIsKeptAndOwned: the identity is created once and read back the same; a data
// directory created for replica 1 is refused as replica 2's; a damaged file is a clear error.
func TestIdentityIsKeptAndOwned(t *testing.T) {
	dir := t.TempDir()
	a, err := loadIdentity(dir, 1)
	if err != nil {
		t.Fatal(err)
	}
	b, err := loadIdentity(dir, 1)
	if err != nil || a != b || a == (wire.Identity{}) {
		t.Fatalf("identity reloaded as %x (%v), created as %x", b, err, a)
	}
	if other, _ := loadIdentity(t.TempDir(), 1); other == a {
		t.Fatal("two data directories got one identity")
	}
	if _, err := loadIdentity(dir, 2); !errors.Is(err, ErrIdentity) || !strings.Contains(err.Error(), "belongs to replica 1, not 2") {
		t.Fatalf("replica 1's directory opened as replica 2: err = %v", err)
	}
	for name, body := range map[string]string{
		"empty":     "",
		"foreign":   "hello\n",
		"bad id":    identityHeader + "\nreplica x\nidentity 00\n",
		"short hex": identityHeader + "\nreplica 1\nidentity 0011\n",
	} {
		d := t.TempDir()
		if err := os.WriteFile(filepath.Join(d, identityFile), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := loadIdentity(d, 1); !errors.Is(err, ErrIdentity) {
			t.Errorf("%s identity file: err = %v, want ErrIdentity", name, err)
		}
	}
}

// TestPeerBookRemembersAcrossRestarts: the first identity seen for an id is kept, durably; after a
// reopen another one is still refused as a conflict, and the known one accepted.
func TestPeerBookRemembersAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	real, impostor := wire.Identity{1}, wire.Identity{2}
	b, err := openPeerBook(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.check(1, real, "a"); err != nil {
		t.Fatal(err)
	}
	if err := b.check(3, wire.Identity{3}, "c"); err != nil {
		t.Fatal(err)
	}
	b, err = openPeerBook(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.check(1, impostor, "b"); !errors.Is(err, errIdentityConflict) {
		t.Fatalf("after a reopen, a second identity for replica 1: err = %v, want a conflict", err)
	}
	if err := b.check(1, real, "a"); err != nil {
		t.Fatalf("the known identity refused: %v", err)
	}
	if _, conflict := b.status(1); !strings.Contains(conflict, "claims to be replica 1") {
		t.Errorf("status conflict %q", conflict)
	}
	if err := os.WriteFile(filepath.Join(dir, peerBookFile), []byte(peerBookHeader+"\nreplica 1 zz\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := openPeerBook(dir); !errors.Is(err, ErrIdentity) {
		t.Errorf("corrupt peer book: err = %v, want ErrIdentity", err)
	}
}
