package pipeline

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image/color"
	"math"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/shears-ml/shears/nls"
	"github.com/shears-ml/shears/onnx"
)

// PlotSearch draws a search as a PNG at path (written atomically): every evaluated
// configuration as metric against active adapter parameters, evolution's Pareto front
// highlighted, hill-climbing's path drawn move by move, the heuristic and the chosen
// configuration marked.
func PlotSearch(path, title string, r *nls.SearchResult) error {
	if len(r.Evaluations) == 0 {
		return fmt.Errorf("plot %s: no evaluations to draw", path)
	}
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "active adapter parameters"
	p.Y.Label.Text = r.Metric.Name
	p.Add(plotter.NewGrid())
	xy := func(evs []nls.Evaluation) plotter.XYs {
		out := make(plotter.XYs, len(evs))
		for i, e := range evs {
			out[i] = plotter.XY{X: float64(e.Params), Y: e.Value}
		}
		return out
	}
	fail := func(err error) error { return fmt.Errorf("plot %s: %w", path, err) }
	all, err := plotter.NewScatter(xy(r.Evaluations))
	if err != nil {
		return fail(err)
	}
	all.GlyphStyle = draw.GlyphStyle{Shape: draw.CircleGlyph{}, Radius: vg.Points(2), Color: color.Gray{Y: 150}}
	p.Add(all)
	p.Legend.Add(fmt.Sprintf("evaluated (%d)", len(r.Evaluations)), all)
	line := func(evs []nls.Evaluation, c color.Color, label string) error {
		l, s, err := plotter.NewLinePoints(xy(evs))
		if err != nil {
			return fail(err)
		}
		l.Color, l.Width = c, vg.Points(1.2)
		s.GlyphStyle = draw.GlyphStyle{Shape: draw.CircleGlyph{}, Radius: vg.Points(3), Color: c}
		p.Add(l, s)
		p.Legend.Add(label, l, s)
		return nil
	}
	if len(r.Front) > 0 {
		if err := line(r.Front, colorRed, fmt.Sprintf("Pareto front (%d)", len(r.Front))); err != nil {
			return err
		}
	}
	if len(r.Path) > 1 {
		if err := line(r.Path, color.RGBA{R: 30, G: 80, B: 200, A: 255}, fmt.Sprintf("hill-climbing path (%d moves)", len(r.Path)-1)); err != nil {
			return err
		}
	}
	mark := func(e nls.Evaluation, shape draw.GlyphDrawer, c color.Color, label string) error {
		s, err := plotter.NewScatter(xy([]nls.Evaluation{e}))
		if err != nil {
			return fail(err)
		}
		s.GlyphStyle = draw.GlyphStyle{Shape: shape, Radius: vg.Points(5), Color: c}
		p.Add(s)
		p.Legend.Add(label, s)
		return nil
	}
	if r.Heuristic.RankMap != nil {
		if err := mark(r.Heuristic, draw.TriangleGlyph{}, color.RGBA{G: 140, A: 255}, "heuristic"); err != nil {
			return err
		}
	}
	if err := mark(r.Best, draw.RingGlyph{}, color.Black, fmt.Sprintf("chosen (%s %.4g)", r.Metric.Name, r.Best.Value)); err != nil {
		return err
	}
	// Margins keep the extreme points off the frame; the headroom at the top holds the legend.
	x0, x1, y0, y1 := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	for _, e := range r.Evaluations {
		x0, x1 = min(x0, float64(e.Params)), max(x1, float64(e.Params))
		y0, y1 = min(y0, e.Value), max(y1, e.Value)
	}
	dx, dy := max(x1-x0, 0.1*math.Abs(x1), 1), max(y1-y0, 0.1*math.Abs(y1), 1e-3)
	p.X.Min, p.X.Max = x0-0.05*dx, x1+0.05*dx
	p.Y.Min, p.Y.Max = y0-0.05*dy, y1+0.45*dy
	p.Legend.Top = true
	wt, err := p.WriterTo(8*vg.Inch, 5*vg.Inch, "png")
	if err != nil {
		return fail(err)
	}
	var buf bytes.Buffer
	if _, err := wt.WriteTo(&buf); err != nil {
		return fail(err)
	}
	return onnx.WriteFileAtomic(path, buf.Bytes())
}

// WriteSearchLog writes every evaluation as one JSON line (search.jsonl), atomically.
func WriteSearchLog(path string, evs []nls.Evaluation) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for _, e := range evs {
		if err := enc.Encode(e); err != nil {
			return fmt.Errorf("search log %s: %w", path, err)
		}
	}
	return onnx.WriteFileAtomic(path, buf.Bytes())
}
