package replica

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sofadb/sofadb/paxos"
)

// TestShellStopsWhenAServerGoroutineFails (issue 10, item 5): the process shell's goroutines run
// under one errgroup, so when the HTTP server stops serving on its own the replica stops with that
// error, instead of running on with an API nobody can reach.
func TestShellStopsWhenAServerGoroutineFails(t *testing.T) {
	free := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}
	s, err := testServer(t, func(c *Config) {
		addrs := func() map[paxos.ReplicaID]string {
			return map[paxos.ReplicaID]string{1: free(), 2: "127.0.0.1:2", 3: "127.0.0.1:3"}
		}
		c.PeerAddrs, c.ClientAddrs, c.HTTPAddrs = addrs(), addrs(), addrs()
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(context.Background()) }()
	deadline := time.Now().Add(5 * time.Second)
	for s.published.Load() == nil { // the loop is running
		if time.Now().After(deadline) {
			t.Fatal("the replica never started its loop")
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.httpLn.Close() // the HTTP server's Serve returns an error that is not a shutdown
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "http server") {
			t.Fatalf("Run returned %v, want the HTTP server's failure", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the replica kept running after its HTTP server failed")
	}
}
