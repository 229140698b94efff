// Package gradcheck checks autodiff.Backward against central finite differences computed by
// onnxruntime on the same graph. It is the one numeric-gradient harness of the repository: the
// autodiff rule tests, the whole-model tests and `shears gradcheck` (through train.GradCheck)
// use it. It lives under train/, not transform/, because it runs sessions.
//
// For each wrt tensor w and each checked element i it runs the forward graph at w ± eps·e_i and
// compares (L⁺ − L⁻) / 2eps with the analytic gradient from the Backward graph. Errors are
// reported relative to the size of the gradient (max |analytic − numeric| / max |numeric|), so
// elements whose gradient is near zero do not blow the ratio up.
package gradcheck

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand"
	"sort"

	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/runtime"
	"github.com/shears-ml/shears/transform/autodiff"
	"google.golang.org/protobuf/proto"
)

// Options configure Check.
type Options struct {
	// InputDims are the static graph-input shapes (passed to autodiff.Backward).
	InputDims map[string][]int64
	// Eps is the central-difference step (default 1e-6 for float64 tensors, 1e-2 for float32).
	Eps float64
	// MaxSamples bounds the elements checked per wrt tensor (0: all); the sample is random
	// under Seed.
	MaxSamples int
	Seed       int64
}

// Result is the comparison for one wrt tensor.
type Result struct {
	Name      string
	Indices   []int // flat indices of the checked elements
	Analytic  []float64
	Numeric   []float64
	MaxAbsErr float64
	// MaxRelErr is MaxAbsErr / max |Numeric| (MaxAbsErr itself when the gradient is all zero).
	// A NaN anywhere in the analytic or numeric gradient makes it +Inf, so it fails every
	// tolerance.
	MaxRelErr float64
	// Scale is max |Numeric|.
	Scale float64
}

// Failures lists why res does not pass at tol: a relative error that is not ≤ tol (compared
// as !(err <= tol), so NaN fails), or a gradient that is identically zero (the comparison
// would prove nothing). Empty means the check passes.
func Failures(res []Result, tol float64) []string {
	var out []string
	for _, r := range res {
		if !(r.Scale > 0) {
			out = append(out, fmt.Sprintf("%s: the numeric gradient is identically zero; the check proves nothing", r.Name))
		}
		if !(r.MaxRelErr <= tol) {
			out = append(out, fmt.Sprintf("%s: max relative error %.3g, tolerance %.0e (max abs %.3g, scale %.3g)\nanalytic %v\nnumeric  %v",
				r.Name, r.MaxRelErr, tol, r.MaxAbsErr, r.Scale, r.Analytic, r.Numeric))
		}
	}
	return out
}

// Check differentiates loss of m with respect to wrt (initializers or graph inputs) at the
// given feeds (one tensor per graph input; float32 or float64) and compares with finite
// differences. m is not changed.
func Check(m *onnx.Model, loss string, wrt []string, feeds map[string]*runtime.Tensor, opts Options) ([]Result, error) {
	base := &onnx.Model{Proto: proto.Clone(m.Proto).(*onnxpb.ModelProto), Dir: m.Dir}
	feeds, err := promote(base, m, wrt, feeds)
	if err != nil {
		return nil, err
	}
	types, err := autodiff.InferShapes(base, opts.InputDims)
	if err != nil {
		return nil, fmt.Errorf("gradcheck: %w", err)
	}

	fwd := &onnx.Model{Proto: proto.Clone(base.Proto).(*onnxpb.ModelProto), Dir: base.Dir}
	if err := setOutputs(fwd, []string{loss}, types); err != nil {
		return nil, err
	}
	bwd := &onnx.Model{Proto: proto.Clone(base.Proto).(*onnxpb.ModelProto), Dir: base.Dir}
	grads, err := autodiff.Backward(bwd, loss, wrt, autodiff.Options{InputDims: opts.InputDims})
	if err != nil {
		return nil, fmt.Errorf("gradcheck: %w", err)
	}
	outs := []string{loss}
	for _, w := range wrt {
		outs = append(outs, grads[w])
		types[grads[w]] = types[w]
	}
	if err := setOutputs(bwd, outs, types); err != nil {
		return nil, err
	}

	fs, err := open(fwd)
	if err != nil {
		return nil, err
	}
	defer fs.Close()
	bs, err := open(bwd)
	if err != nil {
		return nil, err
	}
	defer bs.Close()

	res, err := bs.Run(feeds, outs)
	if err != nil {
		return nil, fmt.Errorf("gradcheck: backward run: %w", err)
	}
	rng := rand.New(rand.NewSource(opts.Seed))
	lossAt := func() (float64, error) {
		r, err := fs.Run(feeds, []string{loss})
		if err != nil {
			return 0, fmt.Errorf("gradcheck: forward run: %w", err)
		}
		return values(r[loss])[0], nil
	}
	var results []Result
	for _, w := range wrt {
		x := feeds[w]
		an := values(res[grads[w]])
		n := int(x.NumElements())
		if len(an) != n {
			return nil, fmt.Errorf("gradcheck: gradient of %q has %d elements, want %d", w, len(an), n)
		}
		idx := sample(rng, n, opts.MaxSamples)
		eps := opts.Eps
		if eps == 0 {
			eps = 1e-6
			if x.DType == runtime.Float32 {
				eps = 1e-2
			}
		}
		r := Result{Name: w, Indices: idx}
		for _, i := range idx {
			// The step actually taken is measured after storing, since float32 rounds x ± eps.
			orig := get(x, i)
			set(x, i, orig+eps)
			xp := get(x, i)
			lp, err := lossAt()
			if err != nil {
				return nil, err
			}
			set(x, i, orig-eps)
			xm := get(x, i)
			lm, err := lossAt()
			set(x, i, orig)
			if err != nil {
				return nil, err
			}
			num := (lp - lm) / (xp - xm)
			r.Analytic = append(r.Analytic, an[i])
			r.Numeric = append(r.Numeric, num)
			r.MaxAbsErr = worse(r.MaxAbsErr, math.Abs(num-an[i]))
			r.Scale = worse(r.Scale, math.Abs(num))
		}
		r.MaxRelErr = r.MaxAbsErr
		if r.Scale > 0 {
			r.MaxRelErr = notNaN(r.MaxAbsErr / r.Scale)
		}
		results = append(results, r)
	}
	return results, nil
}

// worse is the larger of a and b, with NaN taken as +Inf (math.Max would return NaN, and NaN
// passes every `err > tol` check).
func worse(a, b float64) float64 { return max(notNaN(a), notNaN(b)) }

func notNaN(x float64) float64 {
	if math.IsNaN(x) {
		return math.Inf(1)
	}
	return x
}

// promote turns the wrt initializers into graph inputs fed with their values, so one session
// serves every perturbation; feeds is copied (wrt tensors deep-copied, they get perturbed).
func promote(base, orig *onnx.Model, wrt []string, feeds map[string]*runtime.Tensor) (map[string]*runtime.Tensor, error) {
	out := map[string]*runtime.Tensor{}
	for k, v := range feeds {
		out[k] = v
	}
	g := base.Graph()
	for _, w := range wrt {
		if t, ok := out[w]; ok {
			out[w] = clone(t)
			continue
		}
		k := -1
		for i, t := range g.Initializer {
			if t.GetName() == w {
				k = i
			}
		}
		if k < 0 {
			return nil, fmt.Errorf("gradcheck: wrt %q is neither an initializer nor a fed graph input", w)
		}
		t := g.Initializer[k]
		var rt *runtime.Tensor
		switch onnx.DataType(t) {
		case onnxpb.TensorProto_FLOAT:
			v, err := orig.Float32s(t)
			if err != nil {
				return nil, fmt.Errorf("gradcheck: %w", err)
			}
			rt = runtime.F32(onnx.Dims(t), v)
		case onnxpb.TensorProto_DOUBLE:
			raw, err := orig.RawData(t)
			if err != nil {
				return nil, fmt.Errorf("gradcheck: %w", err)
			}
			v := make([]float64, len(raw)/8)
			for i := range v {
				v[i] = math.Float64frombits(binary.LittleEndian.Uint64(raw[8*i:]))
			}
			rt = runtime.F64(onnx.Dims(t), v)
		default:
			return nil, fmt.Errorf("gradcheck: wrt %q is %s, want float or double", w, onnx.DataType(t))
		}
		g.Initializer = append(g.Initializer[:k], g.Initializer[k+1:]...)
		g.Input = append(g.Input, valueInfo(w, onnx.DataType(t), t.GetDims()))
		out[w] = rt
	}
	return out, nil
}

func valueInfo(name string, dt onnxpb.TensorProto_DataType, dims []int64) *onnxpb.ValueInfoProto {
	shape := &onnxpb.TensorShapeProto{Dim: []*onnxpb.TensorShapeProto_Dimension{}}
	for _, d := range dims {
		shape.Dim = append(shape.Dim, &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: d}})
	}
	return &onnxpb.ValueInfoProto{
		Name: proto.String(name),
		Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{TensorType: &onnxpb.TypeProto_Tensor{
			ElemType: proto.Int32(int32(dt)), Shape: shape}}},
	}
}

// setOutputs replaces m's graph outputs by names, typed from types.
func setOutputs(m *onnx.Model, names []string, types map[string]onnx.TensorType) error {
	g := m.Graph()
	g.Output = nil
	for _, n := range names {
		t, ok := types[n]
		if !ok || t.Shape == nil {
			return fmt.Errorf("gradcheck: output %q has no known shape", n)
		}
		g.Output = append(g.Output, valueInfo(n, t.Elem, t.Shape))
	}
	return nil
}

func open(m *onnx.Model) (*runtime.Session, error) {
	data, err := m.Marshal()
	if err != nil {
		return nil, fmt.Errorf("gradcheck: %w", err)
	}
	// Basic optimization only: the extended level fuses Transpose+MatMul into com.microsoft
	// FusedMatMul, which has no float64 kernel, and the check is about the emitted graph.
	s, err := runtime.OpenBytes(data, m.Dir, runtime.Options{Threads: 1, OptLevel: "basic"})
	if err != nil {
		return nil, fmt.Errorf("gradcheck: %w", err)
	}
	return s, nil
}

func sample(rng *rand.Rand, n, k int) []int {
	if k <= 0 || k >= n {
		idx := make([]int, n)
		for i := range idx {
			idx[i] = i
		}
		return idx
	}
	idx := rng.Perm(n)[:k]
	sort.Ints(idx)
	return idx
}

func values(t *runtime.Tensor) []float64 {
	if t.DType == runtime.Float64 {
		return t.F64
	}
	out := make([]float64, len(t.F32))
	for i, v := range t.F32 {
		out[i] = float64(v)
	}
	return out
}

func get(t *runtime.Tensor, i int) float64 {
	if t.DType == runtime.Float64 {
		return t.F64[i]
	}
	return float64(t.F32[i])
}

func set(t *runtime.Tensor, i int, v float64) {
	if t.DType == runtime.Float64 {
		t.F64[i] = v
	} else {
		t.F32[i] = float32(v)
	}
}

func clone(t *runtime.Tensor) *runtime.Tensor {
	c := *t
	c.Shape = append([]int64{}, t.Shape...)
	c.F32 = append([]float32(nil), t.F32...)
	c.F64 = append([]float64(nil), t.F64...)
	c.I64 = append([]int64(nil), t.I64...)
	c.Raw = append([]byte(nil), t.Raw...)
	return &c
}
