package report

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// WriteManifest writes manifest.json into dir.
func WriteManifest(dir string, m Manifest) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "manifest.json"), append(b, '\n'), 0o644)
}

// WriteIndex writes root/README.md: every report under root (a directory holding manifest.json),
// newest first, with its headline numbers. Reports that do not load are listed with the reason.
func WriteIndex(root string) error {
	entries, err := os.ReadDir(root)
	if err != nil {
		return err
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() {
			if _, err := os.Stat(filepath.Join(root, e.Name(), "manifest.json")); err == nil {
				names = append(names, e.Name())
			}
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(names)))
	var b strings.Builder
	b.WriteString("# Benchmark reports\n\n")
	b.WriteString("Each directory is one `sofabench` run on the machine its manifest names: `make bench` writes the default suite, `make bench-full` the full one. " +
		"Every figure is open loop and comes from the raw files beside it; `make report DIR=<dir>` regenerates a report from them. " +
		"This index is generated too (`sofabench` rewrites it after every run).\n\n")
	for _, name := range names {
		d, err := Load(filepath.Join(root, name))
		if err != nil {
			fmt.Fprintf(&b, "## [%s](%s/README.md)\n\n- could not be read: %v\n\n", name, name, err)
			continue
		}
		m := d.Manifest
		fmt.Fprintf(&b, "## [%s](%s/README.md)\n\n%s suite, commit %s%s, %s; %s\n\n", name, name, m.Suite, shortCommit(m.Commit), dirty(m.Dirty), m.StartedUTC, machineLine(m))
		for _, l := range headlines(d) {
			b.WriteString(l + "\n")
		}
		b.WriteString("\n")
	}
	return os.WriteFile(filepath.Join(root, "README.md"), []byte(b.String()), 0o644)
}
