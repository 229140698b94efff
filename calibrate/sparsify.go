package calibrate

import (
	"fmt"
	"time"

	"github.com/shears-ml/shears/eval"
	"github.com/shears-ml/shears/internal/progress"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/runtime"
	"github.com/shears-ml/shears/transform/decoder"
	"github.com/shears-ml/shears/transform/layers"
	"github.com/shears-ml/shears/transform/prune"
)

// Options configures Calibrate.
type Options struct {
	OneShot bool            // all statistics from one pass over the dense model (a deviation from Wanda)
	Runtime runtime.Options // session options (device, threads)
	// Progress, when set, is told of each calibration window of each stage (Stage "block N/M",
	// or "one-shot"; Done of Total windows over every stage).
	Progress progress.Func
}

// Stats are Wanda's statistics: for each linear input tensor, the mean over calibration
// windows of Σ_t x[t,i]² (the reference's scaler_row), in float64.
type Stats map[string][]float64

// Timing records where calibration time went.
type Timing struct {
	Build, Session, Run, Mask time.Duration
	Sessions                  int // onnxruntime sessions created
}

// Check validates the configuration against the targets before any work is done.
func Check(targets []layers.Linear, cfg prune.Config) error {
	if err := cfg.Check(); err != nil {
		return err
	}
	names, ins := make([]string, len(targets)), make([]int64, len(targets))
	for i, l := range targets {
		names[i], ins[i] = l.Node, l.In
	}
	return cfg.CheckLayers(names, ins)
}

// Calibrate collects Wanda statistics for the targets from the calibration windows.
func Calibrate(m *onnx.Model, targets []layers.Linear, cfg prune.Config, windows [][]int, o Options) (Stats, Timing, error) {
	var tm Timing
	if err := Check(targets, cfg); err != nil {
		return nil, tm, err
	}
	m, plan, err := stagePlan(m, targets, windows, o.OneShot, &tm)
	if err != nil {
		return nil, tm, err
	}
	stats := Stats{}
	collect := accumulate(stats, float64(len(windows)))
	// Prune each stage's block once its statistics are in: the next stage runs it pruned. The
	// last stage is pruned while the model is written (Transform).
	done := func(s int) (map[string]*onnxpb.TensorProto, error) {
		if s+1 == len(plan.Stages) {
			return nil, nil
		}
		t0 := time.Now()
		defer func() { tm.Mask += time.Since(t0) }()
		pruned := map[string]*onnxpb.TensorProto{}
		for _, l := range plan.Stages[s] {
			t := m.Initializer(l.Weight)
			raw, err := m.RawData(t)
			if err != nil {
				return nil, err
			}
			out, err := Apply(l, t, append([]byte(nil), raw...), stats, cfg)
			if err != nil {
				return nil, err
			}
			pruned[l.Weight] = onnx.NewTensor(l.Weight, onnx.DataType(t), onnx.Dims(t), out)
		}
		return pruned, nil
	}
	if err := runStages(m, plan, windows, o, &tm, collect, done); err != nil {
		return nil, tm, err
	}
	return stats, tm, nil
}

// stagePlan plans the stage graphs on m's train form (transform/decoder): calibration windows
// are fresh, unpadded rows, so the KV cache folds away. It returns the train form, which the
// stages' weight feeds read, and adds the time it took to tm.Build.
func stagePlan(m *onnx.Model, targets []layers.Linear, windows [][]int, oneShot bool, tm *Timing) (*onnx.Model, *prune.Plan, error) {
	if len(windows) == 0 {
		return nil, nil, fmt.Errorf("calibrate: no calibration windows")
	}
	defer func(t0 time.Time) { tm.Build += time.Since(t0) }(time.Now())
	tf, err := decoder.TrainForm(m)
	if err != nil {
		return nil, nil, fmt.Errorf("calibrate: %w", err)
	}
	plan, err := prune.NewPlan(tf, targets, oneShot)
	if err != nil {
		return nil, nil, err
	}
	return tf, plan, nil
}

// accumulate returns a runStages collect that adds each tap value, divided by div, into
// sums[x] (Wanda averages its norms over the windows; GPTQ sums XᵀX, div 1).
func accumulate(sums map[string][]float64, div float64) func(x string, v []float32) {
	return func(x string, v []float32) {
		acc := sums[x]
		if acc == nil {
			acc = make([]float64, len(v))
			sums[x] = acc
		}
		for j, y := range v {
			acc[j] += float64(y) / div
		}
	}
}

// runStages runs the plan's stage graphs over the windows in order. Each tap's value (per
// linear input x, per window) goes to collect; after a stage's windows, done(s) returns the
// stage's transformed weights (pruned, or quantized and dequantized), which every later stage
// graph runs with, so each block is calibrated on the outputs of the blocks already transformed.
func runStages(m *onnx.Model, plan *prune.Plan, windows [][]int, o Options, tm *Timing,
	collect func(x string, v []float32), done func(s int) (map[string]*onnxpb.TensorProto, error)) error {
	cut := make([]map[string]*runtime.Tensor, len(windows))
	for i := range cut {
		cut[i] = map[string]*runtime.Tensor{}
	}
	var replaced map[string]*onnxpb.TensorProto
	// Stages whose canonical graphs are identical (alike decoder blocks) share one session; the
	// blocks' weights are fed as inputs. A transformer gets three sessions per run, whatever its
	// depth: stage 0, stage 1 (which recomputes the embedding for block 0) and the rest.
	var sess *runtime.Session
	var sessKey string
	defer func() {
		if sess != nil {
			sess.Close()
		}
	}()
	for s := range plan.Stages {
		t0 := time.Now()
		sg, err := plan.StageGraph(s, replaced)
		if err != nil {
			return err
		}
		cg, err := plan.Canonical(sg)
		if err != nil {
			return err
		}
		weights, err := weightFeeds(m, cg)
		if err != nil {
			return err
		}
		tm.Build += time.Since(t0)
		if sess == nil || cg.Key != sessKey {
			t0 = time.Now()
			if sess != nil {
				sess.Close()
			}
			if sess, err = runtime.OpenBytes([]byte(cg.Key), m.Dir, o.Runtime); err != nil {
				return fmt.Errorf("calibration stage %d: %w", s, err)
			}
			sessKey = cg.Key
			tm.Session += time.Since(t0)
			tm.Sessions++
		}
		t0 = time.Now()
		var outs []string
		for _, t := range sg.Produces {
			outs = append(outs, cg.Name[t])
		}
		tapOf := map[string]string{} // canonical tap output → linear input
		for x, tap := range sg.Taps {
			outs = append(outs, cg.Name[tap])
			tapOf[cg.Name[tap]] = x
		}
		for i, w := range windows {
			carried := map[string]*runtime.Tensor{}
			for name, t := range cut[i] {
				carried[cg.Name[name]] = t
			}
			for name, t := range weights {
				carried[name] = t
			}
			feeds, err := eval.Feeds(sess.Inputs(), [][]int{w}, carried)
			if err != nil {
				return fmt.Errorf("calibration stage %d: %w", s, err)
			}
			res, err := sess.Run(feeds, outs)
			if err != nil {
				return fmt.Errorf("calibration stage %d, window %d: %w", s, i, err)
			}
			for tap, x := range tapOf {
				collect(x, res[tap].F32)
			}
			next := map[string]*runtime.Tensor{}
			for _, t := range plan.Cut(s) {
				if r, ok := res[cg.Name[t]]; ok {
					next[t] = r
				} else if c, ok := cut[i][t]; ok {
					next[t] = c
				}
			}
			cut[i] = next
			if o.Progress != nil {
				label := fmt.Sprintf("block %d/%d", s+1, len(plan.Stages))
				if plan.Blocks[s] < 0 {
					label = "one-shot"
				}
				o.Progress(progress.Event{Stage: label, Done: s*len(windows) + i + 1, Total: len(plan.Stages) * len(windows)})
			}
		}
		tm.Run += time.Since(t0)
		if replaced, err = done(s); err != nil {
			return err
		}
	}
	return nil
}

// weightFeeds reads the weights a canonical stage graph takes as inputs (the model's, or pruned
// copies held inline) into tensors of their own type.
func weightFeeds(m *onnx.Model, cg *prune.Canonical) (map[string]*runtime.Tensor, error) {
	feeds := map[string]*runtime.Tensor{}
	for _, w := range cg.Weights {
		raw, err := m.RawData(w.Tensor)
		if err != nil {
			return nil, err
		}
		dt := onnx.DataType(w.Tensor)
		if dt == onnxpb.TensorProto_FLOAT {
			v, err := onnx.DecodeFloats(dt, raw)
			if err != nil {
				return nil, fmt.Errorf("weight %s: %w", w.Tensor.GetName(), err)
			}
			feeds[w.Name] = runtime.F32(onnx.Dims(w.Tensor), v)
			continue
		}
		feeds[w.Name] = runtime.RawTensor(runtime.DType(dt), onnx.Dims(w.Tensor), append([]byte(nil), raw...))
	}
	return feeds, nil
}

// Apply prunes one linear's raw weight bytes in place (any float dtype) and returns them.
func Apply(l layers.Linear, t *onnxpb.TensorProto, raw []byte, stats Stats, cfg prune.Config) ([]byte, error) {
	dt := onnx.DataType(t)
	vals, err := onnx.DecodeFloats(dt, raw)
	if err != nil {
		return nil, fmt.Errorf("prune %s (%s): %w", l.Node, l.Weight, err)
	}
	var norms []float64
	if cfg.Method == prune.Wanda {
		norms = stats[l.Input]
		if norms == nil {
			return nil, fmt.Errorf("prune %s: no calibration statistics for its input %s", l.Node, l.Input)
		}
	}
	idx, err := prune.Mask(vals, prune.Weight{In: int(l.In), Out: int(l.Out), Transposed: l.Transposed}, norms, cfg)
	if err != nil {
		return nil, fmt.Errorf("prune %s: %w", l.Node, err)
	}
	prune.ZeroElements(raw, onnx.ElemSize(dt), idx)
	return raw, nil
}

// Touches reports, for SaveOptions.Touches, the weights Transform prunes: every other tensor
// is written as it is (by a file-to-file copy when it is external).
func Touches(targets []layers.Linear) func(string) bool {
	w := map[string]bool{}
	for _, l := range targets {
		w[l.Weight] = true
	}
	return func(name string) bool { return w[name] }
}

// Transform returns a SaveOptions.Transform that prunes the targets' weights as they stream
// to disk and passes every other tensor through unchanged.
func Transform(targets []layers.Linear, stats Stats, cfg prune.Config) func(string, *onnxpb.TensorProto, []byte) ([]byte, error) {
	byWeight := map[string]layers.Linear{}
	for _, l := range targets {
		byWeight[l.Weight] = l
	}
	return func(name string, t *onnxpb.TensorProto, raw []byte) ([]byte, error) {
		l, ok := byWeight[name]
		if !ok {
			return raw, nil
		}
		return Apply(l, t, append([]byte(nil), raw...), stats, cfg)
	}
}
