package pipeline

import (
	"bytes"
	"fmt"
	"image/color"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	"github.com/shears-ml/shears/nls"
	"github.com/shears-ml/shears/onnx"
)

// PlotLoss draws the training curve of recs (loss per optimizer step and its moving average
// over ~5% of the run) as a PNG at path, written atomically.
func PlotLoss(path, title string, recs []nls.StepRecord) error {
	if len(recs) == 0 {
		return fmt.Errorf("plot %s: no steps to draw", path)
	}
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "optimizer step"
	p.Y.Label.Text = "training loss (mean over the step's micro-batches)"
	p.Add(plotter.NewGrid())
	raw := make(plotter.XYs, len(recs))
	for i, r := range recs {
		raw[i] = plotter.XY{X: float64(r.Step), Y: r.Loss}
	}
	l, err := plotter.NewLine(raw)
	if err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	l.Width = vg.Points(0.5)
	l.Color = color.Gray{Y: 120}
	p.Add(l)
	p.Legend.Add("loss", l)
	if w := max(1, len(recs)/20); w > 1 {
		avg := make(plotter.XYs, len(recs))
		var sum float64
		for i, r := range recs {
			sum += r.Loss
			if i >= w {
				sum -= recs[i-w].Loss
			}
			avg[i] = plotter.XY{X: float64(r.Step), Y: sum / float64(min(i+1, w))}
		}
		a, err := plotter.NewLine(avg)
		if err != nil {
			return fmt.Errorf("plot %s: %w", path, err)
		}
		a.Width = vg.Points(2)
		a.Color = colorRed
		p.Add(a)
		p.Legend.Add(fmt.Sprintf("moving average (%d steps)", w), a)
	}
	p.Legend.Top = true
	wt, err := p.WriterTo(8*vg.Inch, 4.5*vg.Inch, "png")
	if err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	var buf bytes.Buffer
	if _, err := wt.WriteTo(&buf); err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	return onnx.WriteFileAtomic(path, buf.Bytes())
}

var colorRed = color.RGBA{R: 200, G: 30, B: 30, A: 255}
