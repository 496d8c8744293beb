package bench

import (
	"fmt"
	"image/color"
	"math"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// This file draws the report's charts with gonum/plot, as PNG and SVG,
// from the SuiteReport alone. Each transport has one colour in every
// chart (transportColor); variants of a transport differ by dash or shade.

// transportColor is the one colour of each transport.
var transportColor = map[string]color.RGBA{
	"ws":      {R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}, // blue
	"sse":     {R: 0xff, G: 0x7f, B: 0x0e, A: 0xff}, // orange
	"stream":  {R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}, // green
	"poll":    {R: 0xd6, G: 0x27, B: 0x28, A: 0xff}, // red
	"history": {R: 0x94, G: 0x67, B: 0xbd, A: 0xff}, // purple
}

func colorOf(transport string) color.RGBA {
	if c, ok := transportColor[transport]; ok {
		return c
	}
	return color.RGBA{A: 0xff}
}

// lighter mixes c with white, for a transport's second figure.
func lighter(c color.RGBA) color.RGBA {
	mix := func(v uint8) uint8 { return uint8((int(v) + 2*255) / 3) }
	return color.RGBA{R: mix(c.R), G: mix(c.G), B: mix(c.B), A: 0xff}
}

// ChartNames are the charts WriteCharts draws, without extension.
var ChartNames = []string{"latency_cdf", "bytes_per_message", "handshakes_requests", "idle_memory", "latency_vs_rate"}

// WriteCharts draws every chart into dir as .png and .svg and returns the
// PNG file names, in report order.
func (r *SuiteReport) WriteCharts(dir string) ([]string, error) {
	draws := map[string]func() (*plot.Plot, error){
		"latency_cdf":         r.chartCDF,
		"bytes_per_message":   r.chartBytes,
		"handshakes_requests": r.chartHandshakes,
		"idle_memory":         r.chartIdle,
		"latency_vs_rate":     r.chartLadder,
	}
	var out []string
	for _, name := range ChartNames {
		p, err := draws[name]()
		if err != nil {
			return out, fmt.Errorf("chart %s: %w", name, err)
		}
		for _, ext := range []string{".png", ".svg"} {
			if err := p.Save(9*vg.Inch, 5*vg.Inch, filepath.Join(dir, name+ext)); err != nil {
				return out, fmt.Errorf("chart %s: %w", name, err)
			}
		}
		out = append(out, name+".png")
	}
	return out, nil
}

func newPlot(title, x, y string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.Title.TextStyle.Font.Size = vg.Points(14)
	p.X.Label.Text = x
	p.Y.Label.Text = y
	p.Legend.Top = true
	p.Legend.Left = true
	p.Add(plotter.NewGrid())
	return p
}

// dashesOf tells variants of one transport apart.
func dashesOf(variant string) []vg.Length {
	switch {
	case strings.Contains(variant, "no keep-alive"), strings.Contains(variant, "write-delay 0)"):
		return []vg.Length{vg.Points(6), vg.Points(3)}
	}
	return nil
}

func (r *SuiteReport) chartCDF() (*plot.Plot, error) {
	p := newPlot("Delivery latency, publish to reader (CDF)", "latency (ms, log scale)", "fraction of deliveries ≤ latency")
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Y.Min, p.Y.Max = 0, 1
	for _, d := range r.Delivery {
		if len(d.CDF) == 0 {
			continue
		}
		pts := make(plotter.XYs, 0, len(d.CDF))
		for _, c := range d.CDF {
			pts = append(pts, plotter.XY{X: max(c.LatencyUS/1e3, 0.001), Y: c.Fraction})
		}
		l, err := plotter.NewLine(pts)
		if err != nil {
			return nil, err
		}
		l.Color = colorOf(d.Transport)
		l.Width = vg.Points(2)
		l.Dashes = dashesOf(d.Variant)
		p.Add(l)
		p.Legend.Add(d.Variant, l)
	}
	// The curves rise from the left: the legend goes bottom right, in
	// room made for it past the slowest delivery.
	p.X.Max *= 5
	p.Legend.Top, p.Legend.Left = false, false
	p.Legend.YOffs = vg.Points(12)
	return p, nil
}

// barPair draws two bars per delivery variant: a transport's colour for
// the first figure and a lighter shade for the second.
func (r *SuiteReport) barPair(title, y, first, second string, get func(Delivery) (float64, float64)) (*plot.Plot, error) {
	p := newPlot(title, "", y)
	var names []string
	w := vg.Points(14)
	n := len(r.Delivery)
	legendDone := map[string]bool{}
	for i, d := range r.Delivery {
		a, b := get(d)
		names = append(names, d.Variant)
		for j, v := range []float64{a, b} {
			vals := make(plotter.Values, n)
			vals[i] = v
			bars, err := plotter.NewBarChart(vals, w)
			if err != nil {
				return nil, err
			}
			c := colorOf(d.Transport)
			if j == 1 {
				c = lighter(c)
			}
			bars.Color = c
			bars.LineStyle.Width = vg.Points(0.5)
			bars.Offset = w * vg.Length(2*j-1) / 2
			p.Add(bars)
			if !legendDone[d.Transport] && j == 0 {
				legendDone[d.Transport] = true
				p.Legend.Add(d.Transport, bars)
			}
		}
	}
	p.NominalX(names...)
	// Room for the outer bars and, above the tallest, for the legend.
	p.X.Min, p.X.Max = -0.7, float64(n)-0.3
	p.Y.Min = 0
	p.Y.Max = p.Y.Max*1.45 + 1
	p.X.Tick.Label.Rotation = math.Pi / 8
	p.X.Tick.Label.XAlign = draw.XRight
	p.X.Tick.Label.YAlign = draw.YTop
	p.Title.Text += fmt.Sprintf("\n(left bar: %s; right, lighter: %s)", first, second)
	return p, nil
}

func (r *SuiteReport) chartBytes() (*plot.Plot, error) {
	return r.barPair("Bytes on the wire per delivered message", "bytes per message (headers and framing included)",
		"hub→reader", "reader→hub",
		func(d Delivery) (float64, float64) { return d.DownBytesPerMsg, d.UpBytesPerMsg })
}

func (r *SuiteReport) chartHandshakes() (*plot.Plot, error) {
	return r.barPair("TCP handshakes and HTTP requests per 1,000 delivered messages", "count per 1,000 messages",
		"TCP handshakes", "HTTP requests",
		func(d Delivery) (float64, float64) { return d.HandshakesPer1000, d.RequestsPer1000 })
}

func (r *SuiteReport) chartIdle() (*plot.Plot, error) {
	p := newPlot("Hub memory per idle subscriber", "", "KiB of resident memory (RSS) per subscriber")
	var names []string
	n := len(r.Idle)
	for i, ic := range r.Idle {
		names = append(names, ic.Transport)
		vals := make(plotter.Values, n)
		vals[i] = max(ic.RSSKiB, 0)
		bars, err := plotter.NewBarChart(vals, vg.Points(30))
		if err != nil {
			return nil, err
		}
		bars.Color = colorOf(ic.Transport)
		p.Add(bars)
	}
	p.NominalX(names...)
	p.X.Min, p.X.Max = -0.7, float64(n)-0.3
	p.Y.Min = 0
	p.Y.Max = p.Y.Max*1.15 + 0.1
	return p, nil
}

func (r *SuiteReport) chartLadder() (*plot.Plot, error) {
	p := newPlot("Latency against publish rate (rate ladder)\n(solid: p99, dashed: p50)", "publications per second (log scale)", "latency (ms, log scale)")
	p.X.Scale, p.Y.Scale = plot.LogScale{}, plot.LogScale{}
	p.X.Tick.Marker, p.Y.Tick.Marker = plot.LogTicks{Prec: -1}, plot.LogTicks{Prec: -1}
	for _, t := range SuiteTransports {
		var p99, p50 plotter.XYs
		for _, s := range r.Ladder {
			if s.Transport == t && s.Error == "" && s.P99US > 0 {
				p99 = append(p99, plotter.XY{X: s.Rate, Y: s.P99US / 1e3})
				p50 = append(p50, plotter.XY{X: s.Rate, Y: max(s.P50US/1e3, 0.001)})
			}
		}
		if len(p99) == 0 {
			continue
		}
		for k, pts := range []plotter.XYs{p99, p50} {
			l, sc, err := plotter.NewLinePoints(pts)
			if err != nil {
				return nil, err
			}
			l.Color, sc.Color = colorOf(t), colorOf(t)
			l.Width = vg.Points(2)
			if k == 1 {
				l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
				l.Width = vg.Points(1)
			}
			p.Add(l, sc)
			if k == 0 {
				p.Legend.Add(t, l, sc)
			}
		}
	}
	// Headroom above the highest line for the legend (the scale is log).
	p.Y.Max *= 6
	return p, nil
}
