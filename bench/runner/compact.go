package runner

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/sofadb/sofadb/loadgen/lincheck"
)

// CompletionsFile is what a run with faults keeps of its history: one row per call, gzipped, with
// the operation, its send time as microseconds after the previous row's send time (the first row:
// after the run's zero), its completion minus its send time in microseconds, and its outcome class.
// Deltas and microseconds make it compress four times better than nanosecond timestamps. The failover
// figures need nothing else, and the full history.jsonl (keys, values, reads' outputs) of a 10 s
// run at 3,000 ops/s is 4.8 MB: too much to publish 25 times over.
const CompletionsFile = "completions.csv.gz"

// CompactHistories replaces every history.jsonl under dir by a completions.csv.gz; it returns how
// many it converted. Calls that completed more than a second before the run's first fault are left
// out (server.json beside the history names the faults): the failover figures look at the kill and
// after, and the timeline before it is in timeseries.csv.
func CompactHistories(dir string) (int, error) {
	n := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "history.jsonl" {
			return err
		}
		from := int64(0)
		var srv ServerRecord
		if b, err := os.ReadFile(filepath.Join(filepath.Dir(path), "server.json")); err == nil && json.Unmarshal(b, &srv) == nil && len(srv.Faults) > 0 {
			from = srv.Faults[0].AtNs - int64(time.Second)
		}
		if err := compactHistory(path, filepath.Join(filepath.Dir(path), CompletionsFile), from); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		n++
		return os.Remove(path)
	})
	return n, err
}

func compactHistory(src, dst string, fromNs int64) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst + ".tmp")
	if err != nil {
		return err
	}
	defer out.Close()
	zw := gzip.NewWriter(out)
	w := bufio.NewWriter(zw)
	w.WriteString("op,call_delta_us,service_us,class\n")
	recs, err := lincheck.Read(in) // the load generator's own reader of history.jsonl
	if err != nil {
		return err
	}
	var prev int64
	for _, h := range recs {
		if h.ReturnNs < fromNs {
			continue
		}
		call, ret := h.CallNs/1000, h.ReturnNs/1000
		w.WriteString(h.Op + "," + strconv.FormatInt(call-prev, 10) + "," + strconv.FormatInt(ret-call, 10) + "," + h.Class + "\n")
		prev = call
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Rename(dst+".tmp", dst)
}
