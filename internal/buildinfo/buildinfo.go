// Package buildinfo says which build a binary is: every command's -version prints it, so a report,
// a bug or a log line can be traced to a commit.
package buildinfo

import (
	"fmt"
	"runtime/debug"
)

// String is "name <module version> commit <revision>[ (modified)] <go version>", from the
// information the Go toolchain embeds at build time.
func String(name string) string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return name + " (no build information)"
	}
	rev, modified := "unknown", ""
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = " (modified)"
			}
		}
	}
	return fmt.Sprintf("%s %s commit %s%s %s", name, bi.Main.Version, rev, modified, bi.GoVersion)
}
