package trainstep

import (
	"fmt"
	"math"

	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
)

// IgnoreIndex is the label value whose position is left out of the loss (PyTorch's default).
const IgnoreIndex = -100

// Default tensor names of the step graph's interface.
const (
	InputIDsName = "input_ids"
	LogitsName   = "logits"
	LabelsName   = "labels"
	LossName     = "loss"
)

// LossNames says where AddCausalLMLoss attaches: the logits it reads and the labels input and
// loss output it adds. Empty fields take the defaults above.
type LossNames struct {
	Logits, Labels, Loss string
}

func (n LossNames) withDefaults() LossNames {
	if n.Logits == "" {
		n.Logits = LogitsName
	}
	if n.Labels == "" {
		n.Labels = LabelsName
	}
	if n.Loss == "" {
		n.Loss = LossName
	}
	return n
}

// AddCausalLMLoss appends the mean next-token cross-entropy to m in place: a new int64 input
// labels [dims of logits but the last] and a scalar output loss of the logits' float type.
// logits[:, t] predicts labels[:, t+1]; labels equal to IgnoreIndex (or outside 0..V−1) are left
// out of the mean; with nothing counted the loss is 0. The logits must be a graph tensor of
// rank 3 whose vocabulary (last) dimension is static, read from the graph's declared outputs or
// value_info. labelDims gives the labels' dims (int64 for fixed, string for symbolic) and is
// copied from the logits when nil.
func AddCausalLMLoss(m *onnx.Model, names LossNames, labelDims ...any) error {
	names = names.withDefaults()
	if m == nil || m.Graph() == nil {
		return fmt.Errorf("trainstep: causal-LM loss: no model")
	}
	if v := opsetOf(m); v < 16 {
		return fmt.Errorf("trainstep: causal-LM loss: the model imports ai.onnx opset %d; need ≥ 16 (axes inputs; ScatterElements with reduction for the gradient)", v)
	}
	vi := valueInfo(m.Graph(), names.Logits)
	if vi == nil {
		return fmt.Errorf("trainstep: causal-LM loss: %q is neither a graph output nor in value_info (declare its type and shape)", names.Logits)
	}
	tt := vi.GetType().GetTensorType()
	dt := onnxpb.TensorProto_DataType(tt.GetElemType())
	if dt != onnxpb.TensorProto_FLOAT && dt != onnxpb.TensorProto_DOUBLE {
		return fmt.Errorf("trainstep: causal-LM loss: logits %q are %v; need float or double", names.Logits, dt)
	}
	dims := tt.GetShape().GetDim()
	if len(dims) != 3 {
		return fmt.Errorf("trainstep: causal-LM loss: logits %q have rank %d; need [batch, sequence, vocab]", names.Logits, len(dims))
	}
	vocab := dims[2].GetDimValue()
	if vocab <= 0 {
		return fmt.Errorf("trainstep: causal-LM loss: logits %q: the vocabulary dimension is not static", names.Logits)
	}
	if labelDims == nil {
		for _, d := range dims[:2] {
			if d.GetDimParam() != "" || d.GetDimValue() <= 0 {
				labelDims = append(labelDims, d.GetDimParam())
			} else {
				labelDims = append(labelDims, d.GetDimValue())
			}
		}
	}

	b := onnx.BuilderFor(m)
	if !b.Has(names.Logits) {
		return fmt.Errorf("trainstep: causal-LM loss: no tensor %q in the graph", names.Logits)
	}
	const p = "/loss"
	consts := map[string]string{}
	c := func(name string, v ...int64) string { // shared int64 [len(v)] constants
		if n, ok := consts[name]; ok {
			return n
		}
		consts[name] = b.Const(p+"/"+name, onnx.Int64Tensor("", []int64{int64(len(v))}, v))
		return consts[name]
	}
	labels := b.Input(names.Labels, onnxpb.TensorProto_INT64, labelDims...)

	// Integer side (no gradient): the next-token target of position t is labels[:, t+1]; the
	// last position gets IgnoreIndex. Shifting the labels rather than slicing the logits avoids
	// copying the [B, T, V] logits (and padding their gradient back).
	next := b.Op("Slice", p+"/shift/Slice", []string{labels, c("one", 1), c("end", math.MaxInt64), c("axis1", 1)})
	ignore := b.Const(p+"/ignore_index", onnx.Int64Tensor("", nil, []int64{IgnoreIndex}))
	target := b.Op("Pad", p+"/shift/Pad", []string{next, c("pads", 0, 0, 0, 1), ignore})
	inRange := b.Op("And", p+"/valid/And", []string{
		b.Op("GreaterOrEqual", p+"/valid/GreaterOrEqual", []string{target, c("zero", 0)}),
		b.Op("Less", p+"/valid/Less", []string{target, c("vocab", vocab)}),
	})
	safe := b.Op("Where", p+"/valid/Where", []string{inRange, target, c("zero", 0)})
	idx := b.Op("Unsqueeze", p+"/Unsqueeze", []string{safe, c("minus_one", -1)})
	valid := b.Op("Cast", p+"/valid/Cast", []string{inRange}, onnx.AttrInt("to", int64(dt)))

	// Float side: −Σ_valid log_softmax(logits)[target] / max(count, 1), the target's
	// log-probability picked with GatherElements (its gradient scatters back; no one-hot).
	all := c("all_axes", 0, 1)
	logp := b.Op("LogSoftmax", p+"/LogSoftmax", []string{names.Logits}, onnx.AttrInt("axis", -1))
	picked := b.Op("GatherElements", p+"/GatherElements", []string{logp, idx}, onnx.AttrInt("axis", -1))
	picked2 := b.Op("Squeeze", p+"/Squeeze", []string{picked, c("minus_one", -1)})
	masked := b.Op("Mul", p+"/Mul", []string{picked2, valid})
	sum := b.Op("ReduceSum", p+"/ReduceSum", []string{masked, all}, onnx.AttrInt("keepdims", 0))
	count := b.Op("ReduceSum", p+"/count/ReduceSum", []string{valid, all}, onnx.AttrInt("keepdims", 0))
	one := b.Const(p+"/one_f", scalar(dt, 1))
	denom := b.Op("Max", p+"/count/Max", []string{count, one})
	neg := b.Op("Neg", p+"/Neg", []string{sum})
	if out := b.OpOut("Div", p+"/Div", []string{neg, denom}, []string{names.Loss}); out == nil && b.Err() == nil {
		return fmt.Errorf("trainstep: causal-LM loss: could not add %q", names.Loss)
	}
	b.Output(names.Loss, dt)
	if err := b.Err(); err != nil {
		return fmt.Errorf("trainstep: causal-LM loss: %w", err)
	}
	return nil
}

// scalar is a rank-0 float or double constant.
func scalar(dt onnxpb.TensorProto_DataType, v float64) *onnxpb.TensorProto {
	if dt == onnxpb.TensorProto_DOUBLE {
		var raw [8]byte
		bits := math.Float64bits(v)
		for i := range raw {
			raw[i] = byte(bits >> (8 * i))
		}
		return onnx.NewTensor("", dt, nil, raw[:])
	}
	return onnx.Float32Tensor("", nil, []float32{float32(v)})
}

// opsetOf is the model's ai.onnx opset version (0 when it imports none).
func opsetOf(m *onnx.Model) int64 {
	v, _ := m.Opset("")
	return v
}

// valueInfo finds name among the graph's outputs, inputs and value_info.
func valueInfo(g *onnxpb.GraphProto, name string) *onnxpb.ValueInfoProto {
	for _, vs := range [][]*onnxpb.ValueInfoProto{g.GetOutput(), g.GetInput(), g.GetValueInfo()} {
		for _, v := range vs {
			if v.GetName() == name {
				return v
			}
		}
	}
	return nil
}
