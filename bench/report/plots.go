package report

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"
)

// plotRef is a plot written into the report, and the section it belongs to.
type plotRef struct {
	group, title, file string
}

const (
	plotW = 8 * vg.Inch
	plotH = 4.5 * vg.Inch
)

func writePlots(d *Data) ([]plotRef, error) {
	dir := filepath.Join(d.Dir, "plots")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var refs []plotRef
	add := func(group, title, name string, save func(path string) error) error {
		if save == nil {
			return nil
		}
		if err := safeSave(save, filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("report: plot %s: %w", name, err)
		}
		refs = append(refs, plotRef{group: group, title: title, file: "plots/" + name})
		return nil
	}
	steps := []struct {
		group, title, name string
		save               func(string) error
	}{
		{"leader-stable", "Throughput against latency (p50 dashed, p99 solid)", "hockey-stick.svg", hockeyPlot(d)},
		{"leader-stable", "Latency percentile spectrum near half of saturation", "spectrum.svg", spectrumPlot(d)},
		{"leader-stable", "Records per fsync (group commit) against offered load", "records-per-fsync.svg", fsyncPlot(d)},
		{"contended", "Contended proposers at the same offered load", "contended.svg", contendedPlot(d)},
	}
	for _, s := range steps {
		if err := add(s.group, s.title, s.name, s.save); err != nil {
			return nil, err
		}
	}
	for _, s := range d.Scenarios {
		for _, r := range s.Runs {
			if r.Failover != nil {
				name := fmt.Sprintf("failover-%s.svg", s.Rec.Scenario.Name)
				what := "Failover timeline: "
				if r.Failover.Shape != "" {
					what = "Network fault timeline: "
				}
				if err := add(s.Rec.Scenario.Group, what+s.Rec.Scenario.Name+" (first repeat)", name, timelinePlot(s, r)); err != nil {
					return nil, err
				}
				break
			}
		}
	}
	return refs, nil
}

// safeSave turns a panic inside gonum/plot (it panics on, say, a non-positive value on a log axis)
// into an error naming the plot, so one bad figure cannot take the whole report down.
func safeSave(save func(string) error, path string) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("drawing panicked: %v", r)
		}
	}()
	return save(path)
}

func newPlot(title, x, y string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = x
	p.Y.Label.Text = y
	p.Legend.Top, p.Legend.Left = true, true
	p.Legend.XOffs, p.Legend.YOffs = vg.Points(8), -vg.Points(4)
	p.Legend.Padding = vg.Points(2)
	p.Add(plotter.NewGrid())
	p.Y.Tick.Marker = plainTicks{} // log-scale plots set their own
	return p
}

// plainTicks are gonum's default ticks labelled with at most four significant digits ("2500", not
// "2500.00").
type plainTicks struct{}

func (plainTicks) Ticks(min, max float64) []plot.Tick {
	ticks := plot.DefaultTicks{}.Ticks(min, max)
	for i := range ticks {
		if ticks[i].Label != "" {
			ticks[i].Label = strconv.FormatFloat(ticks[i].Value, 'f', -1, 64)
			if len(ticks[i].Label) > 8 {
				ticks[i].Label = strconv.FormatFloat(ticks[i].Value, 'g', 4, 64)
			}
		}
	}
	return ticks
}

func save(p *plot.Plot) func(string) error {
	return func(path string) error { return p.Save(plotW, plotH, path) }
}

// curve scenarios: those with at least two runs at different rates.
func curves(d *Data) []*Scenario {
	var out []*Scenario
	for _, s := range d.Scenarios {
		g := s.Rec.Scenario.Group
		plan := s.Rec.Scenario.Rate.Plan
		if (g != "leader-stable" && g != "etcd") || len(s.Runs) < 2 || len(s.Rec.Scenario.Faults) > 0 || (plan != "search" && plan != "list") {
			continue
		}
		out = append(out, s)
	}
	return out
}

// hockeyPlot: achieved throughput against p50 and p99, log latency axis; SofaDB and etcd together.
func hockeyPlot(d *Data) func(string) error {
	ss := curves(d)
	if len(ss) == 0 {
		return nil
	}
	p := newPlot("Open-loop throughput against latency: p99 solid, p50 dashed", "achieved throughput (ops/s, log scale)", "latency (ms, log scale)")
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	// Log throughput too: lease reads reach 100k ops/s and more, where writes stop near 10k, and on
	// a linear axis every write curve was squeezed into the left tenth.
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	maxY, minX, maxX := 1.0, math.Inf(1), 1.0
	for i, s := range ss {
		var p50, p99 plotter.XYs
		for _, r := range sortedRuns(s) {
			if r.Sum == nil || r.Sum.All == nil || r.Sum.All.P99Ns <= 0 {
				continue
			}
			p50 = append(p50, plotter.XY{X: r.Sum.CompletedOpsPerSec, Y: float64(r.Sum.All.P50Ns) / 1e6})
			p99 = append(p99, plotter.XY{X: r.Sum.CompletedOpsPerSec, Y: float64(r.Sum.All.P99Ns) / 1e6})
			maxY = math.Max(maxY, float64(r.Sum.All.P99Ns)/1e6)
			minX, maxX = math.Min(minX, r.Sum.CompletedOpsPerSec), math.Max(maxX, r.Sum.CompletedOpsPerSec)
		}
		if len(p99) == 0 {
			continue
		}
		c := plotutil.Color(i)
		l99, pts, _ := plotter.NewLinePoints(p99)
		l99.Color, pts.Color, pts.Shape = c, c, plotutil.Shape(i)
		l50, _ := plotter.NewLine(p50)
		l50.Color, l50.Dashes = c, []vg.Length{vg.Points(4), vg.Points(3)}
		p.Add(l99, pts, l50)
		p.Legend.Add(s.Rec.Scenario.Name, l99, pts)
	}
	p.Y.Max = maxY * 30 // room above the curves for the legend
	if minX > 0 && !math.IsInf(minX, 1) {
		p.X.Min, p.X.Max = minX/1.3, maxX*1.3 // room for the last tick label
	}
	return save(p)
}

func sortedRuns(s *Scenario) []*Run {
	out := append([]*Run(nil), s.Runs...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j].Rec.Rate < out[i].Rec.Rate {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// spectrumPlot: latency by percentile on a 1/(1-p) axis (the HdrHistogram plotter's view), for the
// sustained run nearest half of each curve scenario's saturation.
func spectrumPlot(d *Data) func(string) error {
	p := newPlot("Latency by percentile", "percentile", "latency (ms, log scale)")
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = percentileTicks{}
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	n, maxY := 0, 1.0
	for i, s := range curves(d) {
		r := halfLoad(s)
		if r == nil || len(r.Spectrum) < 2 {
			continue
		}
		var xy plotter.XYs
		for _, pt := range r.Spectrum {
			if pt.X >= 1 && pt.Y > 0 {
				xy = append(xy, plotter.XY{X: pt.X, Y: pt.Y})
				maxY = math.Max(maxY, pt.Y)
			}
		}
		l, _ := plotter.NewLine(xy)
		l.Color, l.Width = plotutil.Color(i), vg.Points(1.5)
		p.Add(l)
		p.Legend.Add(fmt.Sprintf("%s at %s ops/s", s.Rec.Scenario.Name, num(r.Rec.Rate)), l)
		n++
	}
	if n == 0 {
		return nil
	}
	p.Y.Max = maxY * 12 // room above the curves for the legend
	return save(p)
}

// percentileTicks labels a 1/(1-p) axis with the percentiles themselves.
type percentileTicks struct{}

func (percentileTicks) Ticks(min, max float64) []plot.Tick {
	var ts []plot.Tick
	for _, q := range []struct {
		x     float64
		label string
	}{{1, "0%"}, {2, "50%"}, {10, "90%"}, {100, "99%"}, {1000, "99.9%"}, {1e4, "99.99%"}, {1e5, "99.999%"}} {
		if q.x >= min && q.x <= max {
			ts = append(ts, plot.Tick{Value: q.x, Label: q.label})
		}
	}
	return ts
}

// fsyncPlot: records per fsync against offered rate, for SofaDB curve scenarios.
func fsyncPlot(d *Data) func(string) error {
	p := newPlot("Group commit: records per fsync", "offered load (ops/s, log scale)", "records per fsync (all replicas)")
	p.X.Scale = plot.LogScale{} // as the throughput plot: reads reach 100k ops/s, writes 10k
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	n, maxY, minX, maxX := 0, 0.0, math.Inf(1), 1.0
	for i, s := range curves(d) {
		if s.Rec.Scenario.System != "sofadb" {
			continue
		}
		var xy plotter.XYs
		for _, r := range sortedRuns(s) {
			if r.Sum == nil {
				continue
			}
			if v := serverOf(r).recordsPerFsync; v > 0 {
				xy = append(xy, plotter.XY{X: r.Rec.Rate, Y: v})
				maxY = math.Max(maxY, v)
				minX, maxX = math.Min(minX, r.Rec.Rate), math.Max(maxX, r.Rec.Rate)
			}
		}
		if len(xy) == 0 {
			continue
		}
		l, pts, _ := plotter.NewLinePoints(xy)
		l.Color, pts.Color, pts.Shape = plotutil.Color(i), plotutil.Color(i), plotutil.Shape(i)
		p.Add(l, pts)
		p.Legend.Add(s.Rec.Scenario.Name, l, pts)
		n++
	}
	if n == 0 {
		return nil
	}
	p.Y.Min, p.Y.Max = 0, maxY*1.6 // room above the curves for the legend
	p.X.Min, p.X.Max = minX/1.3, maxX*1.3
	p.Y.Tick.Marker = plot.TickerFunc(func(min, max float64) []plot.Tick {
		ticks := plot.DefaultTicks{}.Ticks(min, max)
		for i := range ticks {
			if ticks[i].Label != "" {
				ticks[i].Label = fmt.Sprintf("%.3g", ticks[i].Value)
			}
		}
		return ticks
	})
	return save(p)
}

// contendedPlot: throughput and preempted ballots per second for each contended scenario.
func contendedPlot(d *Data) func(string) error {
	var names []string
	var done, preempted plotter.Values
	for _, s := range d.Scenarios {
		if s.Rec.Scenario.Group != "contended" || len(s.Runs) == 0 || s.Runs[0].Sum == nil {
			continue
		}
		r := s.Runs[0]
		names = append(names, strings.TrimPrefix(s.Rec.Scenario.Name, "contended-"))
		done = append(done, r.Sum.CompletedOpsPerSec)
		preempted = append(preempted, serverOf(r).preemptedPerS)
	}
	if len(names) == 0 {
		return nil
	}
	p := newPlot("Contended proposers, same offered load", "", "per second")
	w := vg.Points(18)
	b1, _ := plotter.NewBarChart(done, w)
	b1.Color, b1.Offset = plotutil.Color(0), -w/2
	b2, _ := plotter.NewBarChart(preempted, w)
	b2.Color, b2.Offset = plotutil.Color(1), w/2
	p.Add(b1, b2)
	p.Legend.Add("completed ops/s", b1)
	p.Legend.Add("preempted ballots/s", b2)
	p.NominalX(names...)
	top := 0.0
	for i := range done {
		top = math.Max(top, math.Max(done[i], preempted[i]))
	}
	p.Y.Min, p.Y.Max = 0, top*1.3 // room for the legend above the bars
	p.X.Min, p.X.Max = -0.7, float64(len(names))-0.3
	return save(p)
}

// timelinePlot: throughput and p99 per interval, one above the other, kill and restart marked.
func timelinePlot(s *Scenario, r *Run) func(string) error {
	if len(r.Series) == 0 {
		return nil
	}
	var thr, failed plotter.XYs
	var p99 []plotter.XYs // one segment per run of intervals with completions: a gap is no data, not a line
	maxThr, maxP99 := 1.0, 1.0
	gap := true
	for _, iv := range r.Series {
		if iv.LengthS <= 0 {
			continue
		}
		x := iv.StartS + iv.LengthS/2
		t, e := float64(iv.OK)/iv.LengthS, float64(iv.Errors)/iv.LengthS
		thr = append(thr, plotter.XY{X: x, Y: t})
		failed = append(failed, plotter.XY{X: x, Y: e})
		maxThr = math.Max(maxThr, math.Max(t, e))
		if iv.OK == 0 {
			gap = true
			continue
		}
		if gap {
			p99, gap = append(p99, nil), false
		}
		v := float64(iv.P99Ns) / 1e6
		p99[len(p99)-1] = append(p99[len(p99)-1], plotter.XY{X: x, Y: v})
		maxP99 = math.Max(maxP99, v)
	}
	title := fmt.Sprintf("%s: leader killed at %.1f s", s.Rec.Scenario.Name, r.Failover.KillAtS)
	if r.Failover.Shape != "" {
		title = fmt.Sprintf("%s: %s at %.1f s", s.Rec.Scenario.Name, r.Failover.Shape, r.Failover.KillAtS)
	}
	if r.Failover.RestartAtS > 0 {
		title += fmt.Sprintf(", %s at %.1f s", map[bool]string{true: "healed", false: "restarted"}[r.Failover.Shape != ""], r.Failover.RestartAtS)
	}
	top := newPlot(title, "", "operations per second")
	bottom := newPlot("", "time since the run's start (s)", "p99 latency per interval (ms)")
	lt, _ := plotter.NewLine(thr)
	lt.Color, lt.Width = plotutil.Color(0), vg.Points(1.5)
	lf, _ := plotter.NewLine(failed)
	lf.Color = color.RGBA{R: 230, G: 140, A: 255} // orange: green marks the restart
	top.Add(lt, lf)
	var lp *plotter.Line
	for _, seg := range p99 {
		l, pts, _ := plotter.NewLinePoints(seg)
		l.Color, pts.Color, pts.Shape = plotutil.Color(2), plotutil.Color(2), draw.CircleGlyph{}
		pts.Radius = vg.Points(1.5)
		bottom.Add(l, pts)
		lp = l
	}
	top.Y.Min, top.Y.Max = 0, maxThr*1.45
	bottom.Y.Min, bottom.Y.Max = 0, maxP99*1.45
	mark := func(p *plot.Plot, x, ymax float64, label string, c color.Color, legend bool) {
		if x <= 0 {
			return
		}
		l, _ := plotter.NewLine(plotter.XYs{{X: x, Y: 0}, {X: x, Y: ymax}})
		l.Color, l.Dashes = c, []vg.Length{vg.Points(3), vg.Points(2)}
		p.Add(l)
		if legend {
			p.Legend.Add(label, l)
		}
	}
	for _, p := range []*plot.Plot{top, bottom} {
		ymax := p.Y.Max
		legend := map[string]bool{}
		for _, f := range r.Srv.Faults { // every fault of the schedule, each kind once in the legend
			label, c := f.Action, color.Color(color.RGBA{R: 200, A: 255})
			switch f.Action {
			case "kill":
				label = "kill (SIGKILL)"
			case "net":
				label = "net: " + f.Shape
				if f.Shape == "isolate-hub" {
					c = color.RGBA{R: 120, B: 200, A: 255}
				}
			case "restart", "resume", "heal":
				c = color.RGBA{G: 140, A: 255}
			}
			mark(p, float64(f.AtNs)/1e9, ymax, label, c, p == top && !legend[label])
			legend[label] = true
		}
	}
	top.Legend.Add("completed", lt)
	top.Legend.Add("failed or timed out", lf)
	if lp != nil {
		bottom.Legend.Add("p99 of the requests completed in the interval (no point: none completed)", lp)
	}
	bottom.X.Min, top.X.Min = 0, 0
	return func(path string) error {
		c := vgsvg.New(plotW, 2*plotH*0.8)
		dc := draw.New(c)
		plots := [][]*plot.Plot{{top}, {bottom}}
		cs := plot.Align(plots, draw.Tiles{Rows: 2, Cols: 1, PadY: vg.Points(10), PadTop: vg.Points(6), PadRight: vg.Points(14), PadBottom: vg.Points(4), PadLeft: vg.Points(4)}, dc)
		top.Draw(cs[0][0])
		bottom.Draw(cs[1][0])
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		if _, err := c.WriteTo(f); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}
}
