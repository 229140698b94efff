package train

import (
	"fmt"
	"math"

	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/runtime"
	"github.com/shears-ml/shears/transform/quant"
	"github.com/shears-ml/shears/transform/trainstep"
)

// Options configure a Runner.
type Options struct {
	Runtime runtime.Options
	AdamW   trainstep.AdamW
	// MaxGradNorm clips the global norm of the accumulated gradients before each update
	// (torch's clip_grad_norm_; 1.0 in the reference). 0 disables clipping.
	MaxGradNorm float64
	// LossScaler configures the dynamic loss scaling of steps with a loss-scale input (a float16
	// backward; trainstep.Step.LossScale). The zero value means DefaultLossScaler.
	LossScaler LossScaler
}

// Runner trains the parameters of one train step. It is not safe for concurrent use.
type Runner struct {
	step  *trainstep.Step
	opts  Options
	sess  *runtime.Session
	bound *runtime.Bound

	ids, labels *runtime.Tensor
	extra       map[string]*runtime.Tensor
	loss        *runtime.Tensor
	params      []*runtime.Tensor // bound inputs, updated in place by Apply
	grads       []*runtime.Tensor // bound outputs of the last run
	acc, m, v   [][]float32
	index       map[string]int
	updates     int // optimizer steps taken
	pending     int // micro-batches accumulated since the last Apply

	scaleT   *runtime.Tensor // the bound loss-scale input (nil without loss scaling)
	scaler   LossScaler
	overflow bool // a gradient of this accumulation was inf or NaN
	skipped  int  // optimizer steps skipped for overflow
	lastSkip bool
}

// New opens st's graph (external data resolves against st.Model.Dir) and binds its tensors.
// Parameters start from their initial values, moments at zero; pass-through inputs start at
// zero (set them with Input).
func New(st *trainstep.Step, o Options) (r *Runner, err error) {
	if st == nil || st.Model == nil {
		return nil, fmt.Errorf("train: no step")
	}
	if o.AdamW == (trainstep.AdamW{}) {
		o.AdamW = trainstep.DefaultAdamW()
	}
	if err := o.AdamW.Validate(); err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	if o.MaxGradNorm < 0 {
		return nil, fmt.Errorf("train: max grad norm %v is negative", o.MaxGradNorm)
	}
	// A QA super-network's kept linears get their float weight here, not from onnxruntime's
	// constant folding (whose intermediates would peak at several times their size).
	if _, err := quant.FoldKept(st.Model); err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	raw, err := st.Model.Marshal()
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	sess, err := runtime.OpenBytes(raw, st.Model.Dir, o.Runtime)
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	r = &Runner{step: st, opts: o, sess: sess, extra: map[string]*runtime.Tensor{}, index: map[string]int{}}
	defer func() {
		if err != nil {
			r.Close()
		}
	}()
	bt := []int64{int64(st.Batch), int64(st.Seq)}
	n := int(bt[0] * bt[1])
	r.ids = runtime.I64(bt, make([]int64, n))
	r.labels = runtime.I64(bt, make([]int64, n))
	r.loss = runtime.F32([]int64{}, make([]float32, 1))
	in := map[string]*runtime.Tensor{st.InputIDs: r.ids, st.Labels: r.labels}
	for _, x := range st.Extra {
		dt, ok := dtypes[x.DType]
		if !ok {
			return nil, fmt.Errorf("train: input %q has type %v, which the runner cannot feed", x.Name, x.DType)
		}
		t, err := runtime.Zeros(dt, x.Dims)
		if err != nil {
			return nil, fmt.Errorf("train: input %q: %w", x.Name, err)
		}
		r.extra[x.Name], in[x.Name] = t, t
	}
	if st.LossScale != "" {
		if r.scaler, err = o.LossScaler.withDefaults(); err != nil {
			return nil, fmt.Errorf("train: %w", err)
		}
		r.scaleT = runtime.F32([]int64{}, []float32{float32(r.scaler.Scale)})
		in[st.LossScale] = r.scaleT
	}
	out := map[string]*runtime.Tensor{st.Loss: r.loss}
	for i, p := range st.Params {
		size := len(p.Init)
		pt := runtime.F32(p.Dims, append([]float32(nil), p.Init...))
		gt := runtime.F32(p.Dims, make([]float32, size))
		r.params, r.grads = append(r.params, pt), append(r.grads, gt)
		r.acc = append(r.acc, make([]float32, size))
		r.m, r.v = append(r.m, make([]float32, size)), append(r.v, make([]float32, size))
		r.index[p.Name] = i
		in[p.Name], out[p.Grad] = pt, gt
	}
	if r.bound, err = sess.Bind(in, out); err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	return r, nil
}

var dtypes = map[onnxpb.TensorProto_DataType]runtime.DType{
	onnxpb.TensorProto_FLOAT: runtime.Float32, onnxpb.TensorProto_INT64: runtime.Int64, onnxpb.TensorProto_DOUBLE: runtime.Float64,
}

// Close releases the session. It is idempotent.
func (r *Runner) Close() error {
	if r == nil || r.sess == nil {
		return nil
	}
	err := r.sess.Close()
	r.sess, r.bound = nil, nil
	return err
}

// Input is the bound tensor of a pass-through input (e.g. a rank mask): change its contents in
// place before Accumulate, never its slice.
func (r *Runner) Input(name string) (*runtime.Tensor, error) {
	t, ok := r.extra[name]
	if !ok {
		return nil, fmt.Errorf("train: the step has no pass-through input %q", name)
	}
	return t, nil
}

// Accumulate runs the step on one micro-batch of ids and labels (each Batch × Seq, row-major),
// adds scale × its gradients to the accumulators, and returns its loss (unscaled).
func (r *Runner) Accumulate(ids, labels []int64, scale float64) (float64, error) {
	if r.bound == nil {
		return 0, fmt.Errorf("train: runner is closed")
	}
	n := len(r.ids.I64)
	if len(ids) != n || len(labels) != n {
		return 0, fmt.Errorf("train: batch has %d ids and %d labels; the step takes %d × %d = %d",
			len(ids), len(labels), r.step.Batch, r.step.Seq, n)
	}
	copy(r.ids.I64, ids)
	copy(r.labels.I64, labels)
	if r.scaleT != nil {
		r.scaleT.F32[0] = float32(r.scaler.Scale)
		scale /= r.scaler.Scale // unscale in float32 as the gradients are accumulated
	}
	if err := r.bound.Run(); err != nil {
		return 0, fmt.Errorf("train: %w", err)
	}
	s := float32(scale)
	for i, g := range r.grads {
		a := r.acc[i]
		if r.scaleT != nil && !finite(g.F32) {
			r.overflow = true
		}
		for k, x := range g.F32 {
			a[k] += s * x
		}
	}
	r.pending++
	return float64(r.loss.F32[0]), nil
}

func finite(v []float32) bool {
	for _, x := range v {
		if x-x != 0 { // NaN or ±Inf
			return false
		}
	}
	return true
}

// Apply clips the accumulated gradients to MaxGradNorm, takes one AdamW step with learning
// rate lr, and zeroes the accumulators. It returns the gradients' global norm before clipping.
// With loss scaling, an accumulation whose scaled gradients overflowed is skipped instead: no
// update, the scale halves, the norm returned is +Inf and LastSkipped is true.
func (r *Runner) Apply(lr float64) (float64, error) {
	if r.pending == 0 {
		return 0, fmt.Errorf("train: apply without an accumulated micro-batch")
	}
	if !(lr >= 0) || math.IsInf(lr, 0) {
		return 0, fmt.Errorf("train: learning rate %v is not a finite non-negative number", lr)
	}
	r.lastSkip = false
	if r.scaleT != nil {
		skip := r.scaler.Update(r.overflow)
		r.overflow = false
		if skip {
			// The scaled float16 backward overflowed: this step's gradients are garbage. Skip
			// the update (parameters and moments untouched) with a halved scale for the next.
			r.skipped++
			r.lastSkip = true
			r.ZeroGrad()
			return math.Inf(1), nil
		}
	}
	norm := r.GradNorm()
	if math.IsNaN(norm) || math.IsInf(norm, 0) {
		return norm, fmt.Errorf("train: gradient norm is %v after %d updates; parameters left unchanged", norm, r.updates)
	}
	if c := r.opts.MaxGradNorm; c > 0 {
		if coef := c / (norm + 1e-6); coef < 1 {
			for _, a := range r.acc {
				for k := range a {
					a[k] *= float32(coef)
				}
			}
		}
	}
	r.updates++
	for i, p := range r.params {
		AdamWUpdate(r.opts.AdamW, p.F32, r.acc[i], r.m[i], r.v[i], lr, r.updates)
	}
	r.ZeroGrad()
	return norm, nil
}

// Step is Accumulate with scale 1 followed by Apply: one micro-batch per update.
func (r *Runner) Step(ids, labels []int64, lr float64) (float64, error) {
	loss, err := r.Accumulate(ids, labels, 1)
	if err != nil {
		return 0, err
	}
	if _, err := r.Apply(lr); err != nil {
		return loss, err
	}
	return loss, nil
}

// GradNorm is the global L2 norm of the accumulated gradients, computed in float64.
func (r *Runner) GradNorm() float64 {
	var s float64
	for _, a := range r.acc {
		for _, x := range a {
			s += float64(x) * float64(x)
		}
	}
	return math.Sqrt(s)
}

// ZeroGrad clears the accumulators.
func (r *Runner) ZeroGrad() {
	for _, a := range r.acc {
		clear(a)
	}
	r.pending = 0
	r.overflow = false
}

// LossScaling reports whether the step scales its loss (a float16 backward).
func (r *Runner) LossScaling() bool { return r.scaleT != nil }

// Scaler returns the loss scaler's state (meaningful when LossScaling).
func (r *Runner) Scaler() LossScaler { return r.scaler }

// SetScaler restores a loss scaler's state (from a checkpoint).
func (r *Runner) SetScaler(s LossScaler) error {
	s, err := s.withDefaults()
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	r.scaler = s
	return nil
}

// Overflowed reports whether a gradient accumulated since the last Apply or ZeroGrad held an
// inf or NaN (loss scaling only).
func (r *Runner) Overflowed() bool { return r.overflow }

// Skipped is the number of optimizer steps skipped because the scaled gradients overflowed;
// LastSkipped says whether the last Apply was one of them.
func (r *Runner) Skipped() int      { return r.skipped }
func (r *Runner) LastSkipped() bool { return r.lastSkip }

// Updates is the number of optimizer steps taken.
func (r *Runner) Updates() int { return r.updates }

// Param returns the live values of a parameter (the slice bound to the session: read it, or
// write it between steps to set the parameter).
func (r *Runner) Param(name string) ([]float32, error) {
	i, ok := r.index[name]
	if !ok {
		return nil, fmt.Errorf("train: no parameter %q", name)
	}
	return r.params[i].F32, nil
}

// Grad returns the accumulated gradient of a parameter (live; cleared by Apply and ZeroGrad).
func (r *Runner) Grad(name string) ([]float32, error) {
	i, ok := r.index[name]
	if !ok {
		return nil, fmt.Errorf("train: no parameter %q", name)
	}
	return r.acc[i], nil
}

// Moments returns the AdamW moments m and v of a parameter (live).
func (r *Runner) Moments(name string) (m, v []float32, err error) {
	i, ok := r.index[name]
	if !ok {
		return nil, nil, fmt.Errorf("train: no parameter %q", name)
	}
	return r.m[i], r.v[i], nil
}
