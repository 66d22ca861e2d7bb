package loadgen

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
	"github.com/sofadb/sofadb/kv"
)

// Result file names inside --out.
const (
	SummaryFile    = "summary.json"
	IntervalsFile  = "intervals.hlog"
	TimeseriesFile = "timeseries.csv"
	HistoryFile    = "history.jsonl"
)

// hgrmTicksPerHalf is the percentile resolution of the .hgrm files, the value the HdrHistogram
// plotter and wrk2 use.
const hgrmTicksPerHalf = 5

// outputs are the files written while the run goes on; only the collector writes them.
type outputs struct {
	hlog, csv *os.File
	hlogW     *bufio.Writer
	csvW      *bufio.Writer
	lw        *hdr.HistogramLogWriter
	empty     *hdr.Histogram // stands in for an operation with no sample in an interval
}

// timeseriesHeader names the columns of timeseries.csv: one row per interval; counts are calls
// completed in the interval (sent: handed to the target), durations in ns over all operations.
var timeseriesHeader = "t_s,phase,interval_s,target_ops_per_sec,sent,ok,not_found,timeout,not_leader," +
	"connection,busy,unavailable,rejected,server,p50_ns,p90_ns,p99_ns,p999_ns,max_ns,service_p50_ns," +
	"service_p99_ns,error_p99_ns,lag_p50_ns,lag_p99_ns,lag_max_ns,inflight,inflight_limit_hits\n"

func (r *run) openOutputs() error {
	if r.cfg.OutDir == "" {
		return nil
	}
	if err := os.MkdirAll(r.cfg.OutDir, 0o755); err != nil {
		return fmt.Errorf("loadgen: output directory: %w", err)
	}
	if err := removeStaleResults(r.cfg.OutDir); err != nil {
		return err
	}
	o := &outputs{empty: newHist()}
	var err error
	if o.hlog, err = os.Create(filepath.Join(r.cfg.OutDir, IntervalsFile)); err != nil {
		return fmt.Errorf("loadgen: %w", err)
	}
	if o.csv, err = os.Create(filepath.Join(r.cfg.OutDir, TimeseriesFile)); err != nil {
		o.hlog.Close()
		return fmt.Errorf("loadgen: %w", err)
	}
	o.hlogW, o.csvW = bufio.NewWriter(o.hlog), bufio.NewWriter(o.csv)
	o.lw = hdr.NewHistogramLogWriter(o.hlogW)
	o.csvW.WriteString(timeseriesHeader)
	r.out = o
	if r.cfg.History {
		f, err := os.Create(filepath.Join(r.cfg.OutDir, HistoryFile))
		if err != nil {
			return fmt.Errorf("loadgen: %w", err)
		}
		r.history = &historyFile{f: f}
	}
	return nil
}

// removeStaleResults deletes the result files an earlier run left in dir, so that a file this run
// does not write (history.jsonl without --history, errors-put.hgrm without errors) cannot be
// mistaken for one of its results. Only the generator's own file names are touched.
func removeStaleResults(dir string) error {
	hgrms, err := filepath.Glob(filepath.Join(dir, "*.hgrm"))
	if err != nil {
		return fmt.Errorf("loadgen: %w", err)
	}
	for _, name := range append(hgrms, filepath.Join(dir, SummaryFile), filepath.Join(dir, IntervalsFile),
		filepath.Join(dir, TimeseriesFile), filepath.Join(dir, HistoryFile)) {
		if err := os.Remove(name); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("loadgen: %w", err)
		}
	}
	return nil
}

// writeLogHeader starts the interval log once the run's zero is known. Interval lines carry times
// relative to the base time, which is the run's zero on a whole second, so they read back exactly.
func (r *run) writeLogHeader() {
	if r.out == nil {
		return
	}
	ms := r.wallStart.UnixMilli()
	lw := r.out.lw
	lw.OutputLogFormatVersion()
	lw.OutputComment("[loadgen: values in ns, interval max in ms; tags latency-<op>, service-<op>, errors-<op>, lag]")
	lw.OutputComment("[command: " + r.manifest().Command + "]")
	lw.OutputStartTime(ms)
	lw.OutputBaseTime(ms)
	lw.SetBaseTime(ms)
	lw.OutputLegend()
}

func (r *run) closeOutputs() {
	if r.out != nil {
		r.out.hlogW.Flush()
		r.out.csvW.Flush()
		r.out.hlog.Close()
		r.out.csv.Close()
	}
	if r.history != nil {
		r.history.f.Close()
	}
}

// usedOps lists the operations the workload issues, by index, so that every interval has a line
// for each of them even when it saw no sample (a gap in a log reads as a missing interval).
func (r *run) usedOps() []int {
	var ops []int
	if r.cfg.Workload.Mix.ReadFraction < 1 {
		ops = append(ops, int(kv.OpPut)-1)
	}
	if r.cfg.Workload.Mix.ReadFraction > 0 {
		ops = append(ops, int(kv.OpGet)-1)
	}
	return ops
}

// emitInterval writes one interval to intervals.hlog and timeseries.csv.
func (r *run) emitInterval(startNs, endNs int64, iv *recSet, hits int64) {
	if r.out == nil {
		return
	}
	startMs := r.wallStart.UnixMilli() + (startNs-r.t0Ns)/1e6
	endMs := r.wallStart.UnixMilli() + (endNs-r.t0Ns)/1e6
	for _, i := range r.usedOps() {
		o := &iv.ops[i]
		r.logHist("latency-"+opNames[i], o.lat, startMs, endMs)
		r.logHist("service-"+opNames[i], o.svc, startMs, endMs)
		if o.errLat != nil && o.errLat.TotalCount() > 0 {
			r.logHist("errors-"+opNames[i], o.errLat, startMs, endMs)
		}
	}
	r.logHist("lag", iv.lag, startMs, endMs)
	r.out.hlogW.Flush()
	r.out.csvW.WriteString(r.csvRow(startNs, endNs, iv, hits))
	r.out.csvW.Flush()
}

func (r *run) logHist(tag string, h *hdr.Histogram, startMs, endMs int64) {
	if h == nil {
		h = r.out.empty
	}
	h.SetTag(tag)
	h.SetStartTimeMs(startMs)
	h.SetEndTimeMs(endMs)
	r.out.lw.OutputIntervalHistogram(h)
}

func (r *run) csvRow(startNs, endNs int64, iv *recSet, hits int64) string {
	var issued int64
	var class [numClasses]int64
	svc, errLat := (*hdr.Histogram)(nil), (*hdr.Histogram)(nil)
	for i := range iv.ops {
		o := &iv.ops[i]
		issued += o.issued
		for k, n := range o.class {
			class[k] += n
		}
		mergeHist(&svc, o.svc)
		mergeHist(&errLat, o.errLat)
	}
	lat, s, e, lag := distOf(iv.allLatency()), distOf(svc), distOf(errLat), distOf(iv.lag)
	target := r.cfg.RateOpsPerSec
	if startNs >= r.measureToNs {
		target = 0
	}
	b := strconv.AppendFloat(nil, float64(startNs-r.t0Ns)/1e9, 'f', 3, 64)
	b = append(b, ',')
	b = append(b, r.phaseOf(startNs)...)
	b = append(b, ',')
	b = strconv.AppendFloat(b, float64(endNs-startNs)/1e9, 'f', 3, 64)
	b = append(b, ',')
	b = strconv.AppendFloat(b, target, 'f', -1, 64)
	for _, v := range append([]int64{issued}, class[:]...) {
		b = append(b, ',')
		b = strconv.AppendInt(b, v, 10)
	}
	for _, v := range []int64{lat.P50Ns, lat.P90Ns, lat.P99Ns, lat.P999Ns, lat.MaxNs, s.P50Ns, s.P99Ns,
		e.P99Ns, lag.P50Ns, lag.P99Ns, lag.MaxNs, r.inflight.Load(), hits} {
		b = append(b, ',')
		b = strconv.AppendInt(b, v, 10)
	}
	return string(append(b, '\n'))
}

// writeResults writes summary.json and the percentile distributions of the measured window.
func (r *run) writeResults(s *Summary) error {
	if r.cfg.OutDir == "" {
		return nil
	}
	js, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("loadgen: summary: %w", err)
	}
	errs := []error{os.WriteFile(filepath.Join(r.cfg.OutDir, SummaryFile), append(js, '\n'), 0o644)}
	all := opStats{}
	for i := range r.total.ops {
		o := &r.total.ops[i]
		if o.issued == 0 {
			continue
		}
		errs = append(errs, r.writeHgrm("latency-"+opNames[i], o.lat), r.writeHgrm("service-"+opNames[i], o.svc))
		if o.errLat != nil && o.errLat.TotalCount() > 0 {
			errs = append(errs, r.writeHgrm("errors-"+opNames[i], o.errLat))
		}
		mergeHist(&all.lat, o.lat)
		mergeHist(&all.svc, o.svc)
	}
	errs = append(errs, r.writeHgrm("latency-all", all.lat), r.writeHgrm("service-all", all.svc),
		r.writeHgrm("lag", r.total.lag))
	return errors.Join(errs...)
}

// writeHgrm writes one histogram in the HdrHistogram plotter's format, values in milliseconds.
func (r *run) writeHgrm(name string, h *hdr.Histogram) error {
	if h == nil {
		h = newHist()
	}
	f, err := os.Create(filepath.Join(r.cfg.OutDir, name+".hgrm"))
	if err != nil {
		return fmt.Errorf("loadgen: %w", err)
	}
	w := bufio.NewWriter(f)
	_, err = h.PercentilesPrint(w, hgrmTicksPerHalf, 1e6)
	return errors.Join(err, w.Flush(), f.Close())
}
