package cluster_test

import (
	"fmt"
	"log"
	"time"

	"github.com/sofadb/sofadb/bench/cluster"
)

// Start a 3-replica cluster, crash its leader, and bring it back. (Not run as a test: it has no
// output to check; TestLauncherLifecycle covers the same steps.)
func ExampleStart() {
	c, err := cluster.Start(cluster.Options{N: 3, Flags: []string{"-fsync=false"}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	leader, err := c.WaitLeader(10 * time.Second)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("binary protocol at", c.ClientAddr(leader), "HTTP at", c.HTTPAddr(leader))
	c.Kill(leader)                            // SIGKILL
	next, _ := c.WaitLeader(10 * time.Second) // a survivor takes over
	c.Restart(leader)                         // same ports and data directory
	sts, _ := c.WaitConverged(10 * time.Second)
	fmt.Println("leader", next, "applied", sts[0].Applied, "digest", sts[0].Digest)
}
