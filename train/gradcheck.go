package train

import (
	"fmt"
	"math/rand/v2"

	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/runtime"
	"github.com/shears-ml/shears/train/gradcheck"
	"github.com/shears-ml/shears/transform/autodiff"
	"github.com/shears-ml/shears/transform/trainstep"
)

// GradCheckOptions configure GradCheck.
type GradCheckOptions struct {
	Batch, Seq int
	// IDs is the batch (Batch × Seq, row-major); labels are the ids themselves, as in training.
	// Nil draws uniform random ids from the vocabulary with Seed.
	IDs []int64
	// Samples is the number of coordinates checked per tensor (all when the tensor is smaller).
	Samples int
	Seed    uint64
	// Eps is the central-difference step (0: gradcheck's default, 1e-6 in float64, 1e-2 in float32).
	Eps float64
	// Float32 runs the check on the float32 graph instead of a float64 copy (for graphs with
	// ops onnxruntime lacks in float64; then the tolerance must be loose, see GradCheckTolerance).
	Float32 bool
}

// GradCheckTolerance is the default pass mark on the maximum relative error: the whole-model
// row of gradcheck's tolerance table (gradcheck.TolModel64 or TolModel32, derived there).
func GradCheckTolerance(float32Graph bool) float64 {
	if float32Graph {
		return gradcheck.TolModel32
	}
	return gradcheck.TolModel64
}

// TensorErr is the largest relative error among a tensor's checked coordinates.
type TensorErr struct {
	Name      string  `json:"name"`
	MaxRelErr float64 `json:"max_rel_err"`
	Checked   int     `json:"checked"`
}

// GradCheckReport is the result of GradCheck.
type GradCheckReport struct {
	Tensors   []TensorErr `json:"tensors"`
	MaxRelErr float64     `json:"max_rel_err"`
	DType     string      `json:"dtype"`
}

// GradCheck checks the gradients of m's causal-LM loss with respect to the named initializers
// against central finite differences, with the repository's one numeric-gradient harness
// (train/gradcheck) run on the loss graph of the train step (trainstep.Build with
// LossOnly), converted to float64 unless o.Float32. It runs on the CPU. It returns the report
// and the full float32 train step of the same configuration (for saving).
func GradCheck(m *onnx.Model, names []string, o GradCheckOptions) (*GradCheckReport, *trainstep.Step, error) {
	if o.Samples <= 0 {
		o.Samples = 16
	}
	cfg := trainstep.Config{Batch: o.Batch, Seq: o.Seq, Trainable: names}
	st, err := trainstep.Build(m, cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("gradcheck: %w", err)
	}
	cfg.LossOnly = true
	ls, err := trainstep.Build(m, cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("gradcheck: %w", err)
	}
	if len(ls.Extra) > 0 {
		return nil, nil, fmt.Errorf("gradcheck: the model has inputs besides %q (%s, …); only token-id models are checked", ls.InputIDs, ls.Extra[0].Name)
	}
	n := o.Batch * o.Seq
	ids := o.IDs
	if ids == nil {
		vocab, err := vocabOf(m)
		if err != nil {
			return nil, nil, fmt.Errorf("gradcheck: %w", err)
		}
		rng := rand.New(rand.NewPCG(o.Seed, 0x9e3779b97f4a7c15))
		ids = make([]int64, n)
		for i := range ids {
			ids[i] = rng.Int64N(vocab)
		}
	} else if len(ids) != n {
		return nil, nil, fmt.Errorf("gradcheck: %d ids given for a %d × %d batch", len(ids), o.Batch, o.Seq)
	}
	lossModel, dtype := ls.Model, "float32"
	if !o.Float32 {
		if lossModel, err = autodiff.ToFloat64(ls.Model); err != nil {
			return nil, nil, fmt.Errorf("gradcheck: %w", err)
		}
		dtype = "float64"
	}
	bt := []int64{int64(o.Batch), int64(o.Seq)}
	feeds := map[string]*runtime.Tensor{ls.InputIDs: runtime.I64(bt, ids), ls.Labels: runtime.I64(bt, ids)}
	dims := map[string][]int64{ls.InputIDs: bt, ls.Labels: bt}
	for _, p := range ls.Params {
		dims[p.Name] = p.Dims
		if o.Float32 {
			feeds[p.Name] = runtime.F32(p.Dims, append([]float32(nil), p.Init...))
			continue
		}
		v := make([]float64, len(p.Init))
		for i, x := range p.Init {
			v[i] = float64(x)
		}
		feeds[p.Name] = runtime.F64(p.Dims, v)
	}
	res, err := gradcheck.Check(lossModel, ls.Loss, names, feeds,
		gradcheck.Options{InputDims: dims, Eps: o.Eps, MaxSamples: o.Samples, Seed: int64(o.Seed)})
	if err != nil {
		return nil, nil, err
	}
	rep := &GradCheckReport{DType: dtype}
	for _, r := range res {
		// r.MaxRelErr is +Inf, never NaN, when a gradient is NaN (gradcheck maps it).
		rep.Tensors = append(rep.Tensors, TensorErr{Name: r.Name, MaxRelErr: r.MaxRelErr, Checked: len(r.Indices)})
		rep.MaxRelErr = max(rep.MaxRelErr, r.MaxRelErr)
	}
	return rep, st, nil
}

// vocabOf is the static last dim of the model's logits output.
func vocabOf(m *onnx.Model) (int64, error) {
	for _, o := range m.Graph().GetOutput() {
		if o.GetName() != trainstep.LogitsName {
			continue
		}
		d := o.GetType().GetTensorType().GetShape().GetDim()
		if len(d) == 3 && d[2].GetDimValue() > 0 {
			return d[2].GetDimValue(), nil
		}
	}
	return 0, fmt.Errorf("the model has no %q output with a static vocabulary dimension", trainstep.LogitsName)
}
