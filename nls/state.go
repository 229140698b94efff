package nls

import (
	"fmt"
	"time"
)

// State is the resumable state of a run: the trainable parameters with their AdamW moments, the
// counters and, for mixed precision, the loss scaler. The data order, the ranks and the dropout
// masks are functions of (seed, position), so nothing else is needed to resume exactly.
type State struct {
	Steps   int           // optimizer steps done
	Elapsed time.Duration // training time before this point
	Tokens  int64         // non-pad tokens processed
	Params  []Param
	// Scaling is true when the step graphs scale the loss (a float16 backward); then LossScale,
	// ScaleGood (good steps since the last change) and Skipped (overflowed steps) are the
	// scaler's state.
	Scaling   bool
	LossScale float64
	ScaleGood int
	Skipped   int
}

// Param is one trainable tensor (an adapter's A or B, under its initializer name, ONNX layout)
// and its AdamW moments. In a State the slices are the trainer's own: read them before the next
// step.
type Param struct {
	Name  string
	Dims  []int64
	Value []float32
	M, V  []float32
}

// state is the trainer's current state with the given counters.
func (e *engine) state(steps int, elapsed time.Duration, tokens int64) State {
	s := State{Steps: steps, Elapsed: elapsed, Tokens: tokens, Scaling: e.scaling}
	if e.scaling {
		s.LossScale, s.ScaleGood, s.Skipped = e.scaler.Scale, e.scaler.Good, e.skipped
	}
	for _, p := range e.params {
		s.Params = append(s.Params, Param{Name: p.name, Dims: p.dims, Value: p.value, M: p.m, V: p.v})
	}
	return s
}

// restore copies s into the engine; every parameter must be present with its size.
func (e *engine) restore(s State) error {
	if s.Steps < 0 {
		return fmt.Errorf("nls: resume: bad step counter %d", s.Steps)
	}
	if s.Scaling {
		if !(s.LossScale > 0) || s.ScaleGood < 0 || s.Skipped < 0 {
			return fmt.Errorf("nls: resume: bad loss-scaler state %v, %d, %d", s.LossScale, s.ScaleGood, s.Skipped)
		}
		e.scaler.Scale, e.scaler.Good, e.skipped = s.LossScale, s.ScaleGood, s.Skipped
	}
	byName := map[string]Param{}
	for _, p := range s.Params {
		byName[p.Name] = p
	}
	for _, p := range e.params {
		q, ok := byName[p.name]
		if !ok {
			return fmt.Errorf("nls: resume: the checkpoint has no tensor %q", p.name)
		}
		for _, x := range []struct {
			what     string
			src, dst []float32
		}{{"", q.Value, p.value}, {" (AdamW m)", q.M, p.m}, {" (AdamW v)", q.V, p.v}} {
			if len(x.src) != len(x.dst) {
				return fmt.Errorf("nls: resume: tensor %q%s has %d values, the super-network's has %d", p.name, x.what, len(x.src), len(x.dst))
			}
			copy(x.dst, x.src)
		}
		p.version++
	}
	return nil
}
