package trainstep

import (
	"fmt"
	"slices"
	"strings"

	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/transform/autodiff"
	"github.com/shears-ml/shears/transform/decoder"
	"github.com/shears-ml/shears/transform/lower"
	"google.golang.org/protobuf/proto"
)

// Config describes a train step.
type Config struct {
	// Batch and Seq fix the step's input shape [Batch, Seq]; Seq ≥ 2 (one prediction at least).
	Batch, Seq int
	// Trainable names the initializers that become graph inputs and get gradients.
	Trainable []string
	// InputIDs and Logits name the model's token input and logits output (defaults
	// "input_ids" and "logits").
	InputIDs, Logits string
	// InputDims fixes the shape of other model inputs whose dims are symbolic and not named
	// like the token input's (whose batch and sequence symbols become Batch and Seq).
	InputDims map[string][]int64
	// LossOnly skips the backward pass: the step computes the loss alone (its Params have no
	// Grad), e.g. for the finite differences of a gradient check or for evaluation.
	LossOnly bool
	// LossScale adds the loss-scale input (Step.LossScale) even when the backward does not run
	// in float16; Build adds it anyway when it does (see NeedsLossScale).
	LossScale bool
}

// LossScaleName is the scalar float32 input the loss is multiplied by before the backward pass
// of a step with loss scaling: its gradients are scale × the true ones.
const LossScaleName = "loss_scale"

// Param is one trainable tensor of a step: a float32 input of the step graph and its gradient
// output.
type Param struct {
	Name string  // graph input, the initializer's former name
	Dims []int64 // static shape
	Init []float32
	Grad string // graph output holding ∂loss/∂Name
}

// Input is a graph input of the step other than the parameters: the batch, and any input of the
// model passed through unchanged (rank masks, attention masks).
type Input struct {
	Name  string
	DType onnxpb.TensorProto_DataType
	Dims  []int64
}

// Step is a built train-step graph and its interface.
type Step struct {
	// Model is the step graph. Its Dir is the source model's, so external data still resolves;
	// open it with runtime.OpenBytes(bytes, Model.Dir, …) or save it next to the data.
	Model      *onnx.Model
	Batch, Seq int
	// InputIDs, Labels and Loss name the batch inputs and the scalar loss output.
	InputIDs, Labels, Loss string
	// Params are the trainable tensors in Config.Trainable order.
	Params []Param
	// Extra are the pass-through inputs (every model input but the token ids), in graph order.
	Extra []Input
	// LossScale names the loss-scale input when the step has one (mixed precision with a
	// float16 backward): the backward starts from loss × scale so that small float16 gradients
	// do not flush to zero, and the gradient outputs are scaled by it (the caller unscales them
	// in float32 and skips steps whose gradients overflowed). "" when the step has none.
	LossScale string
}

// Build makes the train-step graph of m (left unchanged) for cfg: m's forward pass with the
// trainable initializers turned into inputs, the causal-LM loss on its logits against a new
// labels input, and the gradient of the loss with respect to each trainable tensor as outputs.
// m's own outputs are dropped.
func Build(m *onnx.Model, cfg Config) (*Step, error) {
	if m == nil || m.Graph() == nil {
		return nil, fmt.Errorf("trainstep: build: no model")
	}
	if cfg.Batch < 1 || cfg.Seq < 2 {
		return nil, fmt.Errorf("trainstep: build: need batch ≥ 1 and seq ≥ 2, got %d × %d", cfg.Batch, cfg.Seq)
	}
	if len(cfg.Trainable) == 0 {
		return nil, fmt.Errorf("trainstep: build: no trainable tensors")
	}
	// onnxruntime's fused operators become standard ones autodiff differentiates, or the error
	// says which cannot and what to do (first: the train form folds only a standard cache).
	lowered := &onnx.Model{Proto: proto.Clone(m.Proto).(*onnxpb.ModelProto), Dir: m.Dir}
	if _, err := lower.Lower(lowered); err != nil {
		return nil, fmt.Errorf("trainstep: build: %w", err)
	}
	// A with-past model trains in its train form: no cache, mask and positions of fresh rows.
	m, err := decoder.TrainForm(lowered)
	if err != nil {
		return nil, fmt.Errorf("trainstep: build: %w", err)
	}
	ids, logits := cfg.InputIDs, cfg.Logits
	if ids == "" {
		ids = InputIDsName
	}
	if logits == "" {
		logits = LogitsName
	}
	sm := &onnx.Model{Proto: proto.Clone(m.Proto).(*onnxpb.ModelProto), Dir: m.Dir}
	g := sm.Graph()
	var idsVI *onnxpb.ValueInfoProto
	for _, in := range g.GetInput() {
		if in.GetName() == ids {
			idsVI = in
		}
	}
	if idsVI == nil {
		return nil, fmt.Errorf("trainstep: build: the model has no input %q", ids)
	}
	if valueInfo(g, logits) == nil {
		return nil, fmt.Errorf("trainstep: build: the model has no output %q", logits)
	}

	// Symbolic dims named like the token input's become Batch and Seq everywhere.
	symbols := map[string]int64{}
	if d := idsVI.GetType().GetTensorType().GetShape().GetDim(); len(d) == 2 {
		for i, v := range []int64{int64(cfg.Batch), int64(cfg.Seq)} {
			if p := d[i].GetDimParam(); p != "" {
				symbols[p] = v
			} else if d[i].GetDimValue() > 0 && d[i].GetDimValue() != v {
				return nil, fmt.Errorf("trainstep: build: input %q has static shape %v, the step asks for [%d, %d]",
					ids, dimsOf(idsVI), cfg.Batch, cfg.Seq)
			}
		}
	} else {
		return nil, fmt.Errorf("trainstep: build: input %q has rank %d; need [batch, sequence]", ids, len(d))
	}
	setDims(idsVI, []int64{int64(cfg.Batch), int64(cfg.Seq)})
	// Fix the logits' batch and sequence too, so the loss's labels get static dims.
	if lv := valueInfo(g, logits); lv != nil {
		fixSymbols(lv, symbols)
	}

	st := &Step{Model: sm, Batch: cfg.Batch, Seq: cfg.Seq, InputIDs: ids}
	inputDims := map[string][]int64{ids: {int64(cfg.Batch), int64(cfg.Seq)}}
	for _, in := range g.GetInput() {
		if in.GetName() == ids {
			continue
		}
		if d, ok := cfg.InputDims[in.GetName()]; ok {
			setDims(in, d)
		} else {
			fixSymbols(in, symbols)
		}
		d := dimsOf(in)
		if slices.Contains(d, -1) {
			return nil, fmt.Errorf("trainstep: build: input %q has symbolic dims %v; give them in Config.InputDims", in.GetName(), shapeString(in))
		}
		inputDims[in.GetName()] = d
		st.Extra = append(st.Extra, Input{Name: in.GetName(), DType: onnxpb.TensorProto_DataType(in.GetType().GetTensorType().GetElemType()), Dims: d})
	}

	// Trainable initializers become float32 inputs.
	seen := map[string]bool{}
	for _, name := range cfg.Trainable {
		if seen[name] {
			return nil, fmt.Errorf("trainstep: build: trainable tensor %q listed twice", name)
		}
		seen[name] = true
		k := slices.IndexFunc(g.Initializer, func(t *onnxpb.TensorProto) bool { return t.GetName() == name })
		if k < 0 {
			return nil, fmt.Errorf("trainstep: build: trainable tensor %q is not an initializer of the model", name)
		}
		t := g.Initializer[k]
		dt := onnx.DataType(t)
		if dt != onnxpb.TensorProto_FLOAT && dt != onnxpb.TensorProto_FLOAT16 && dt != onnxpb.TensorProto_BFLOAT16 {
			return nil, fmt.Errorf("trainstep: build: trainable tensor %q is %v; only float32, float16 and bfloat16 parameters are trained", name, dt)
		}
		if dt != onnxpb.TensorProto_FLOAT {
			// Master weights stay float32: the input is float32 and a Cast feeds the graph its
			// own type, so the parameter's gradient comes out in float32 (Cast's VJP).
			castParam(g, name, dt)
		}
		init, err := m.Float32s(m.Initializer(name))
		if err != nil {
			return nil, fmt.Errorf("trainstep: build: reading trainable tensor %q: %w", name, err)
		}
		dims := onnx.Dims(t)
		g.Initializer = slices.Delete(g.Initializer, k, k+1)
		st.Params = append(st.Params, Param{Name: name, Dims: dims, Init: init})
		inputDims[name] = dims
	}
	// The names are taken (their consumers read them), so the inputs are declared directly.
	for _, p := range st.Params {
		g.Input = append(g.Input, floatInput(p.Name, p.Dims))
	}

	names := LossNames{Logits: logits}.withDefaults()
	if err := AddCausalLMLoss(sm, names, int64(cfg.Batch), int64(cfg.Seq)); err != nil {
		return nil, fmt.Errorf("trainstep: build: %w", err)
	}
	st.Labels, st.Loss = names.Labels, names.Loss
	inputDims[names.Labels] = []int64{int64(cfg.Batch), int64(cfg.Seq)}
	// Only the loss stays an output: the logits would be copied back on every step.
	g.Output = slices.DeleteFunc(g.Output, func(v *onnxpb.ValueInfoProto) bool { return v.GetName() != names.Loss })

	if cfg.LossOnly {
		return st, nil
	}
	wrt := make([]string, len(st.Params))
	for i, p := range st.Params {
		wrt[i] = p.Name
	}
	target := names.Loss
	scale := cfg.LossScale
	if !scale {
		if scale, err = NeedsLossScale(sm, inputDims); err != nil {
			return nil, fmt.Errorf("trainstep: build: %w", err)
		}
	}
	if scale {
		b := onnx.BuilderFor(sm)
		st.LossScale = b.Input(LossScaleName, onnxpb.TensorProto_FLOAT)
		inputDims[st.LossScale] = []int64{}
		target = b.Op("Mul", "/loss_scale/Mul", []string{names.Loss, st.LossScale})
		if err := b.Err(); err != nil {
			return nil, fmt.Errorf("trainstep: build: loss scale: %w", err)
		}
	}
	grads, err := autodiff.Backward(sm, target, wrt, autodiff.Options{InputDims: inputDims})
	if err != nil {
		return nil, fmt.Errorf("trainstep: build: %w", err)
	}
	b := onnx.BuilderFor(sm)
	for i := range st.Params {
		p := &st.Params[i]
		gname, ok := grads[p.Name]
		if !ok || gname == "" {
			return nil, fmt.Errorf("trainstep: build: autodiff returned no gradient for %q", p.Name)
		}
		out := b.OpOut("Identity", "/grad/"+p.Name, []string{gname}, []string{p.Name + ".grad"})
		if out == nil {
			break
		}
		p.Grad = out[0]
		b.Output(p.Grad, onnxpb.TensorProto_FLOAT, anyDims(p.Dims)...)
	}
	if err := b.Err(); err != nil {
		return nil, fmt.Errorf("trainstep: build: gradient outputs: %w", err)
	}
	return st, nil
}

func anyDims(d []int64) []any {
	out := make([]any, len(d))
	for i, v := range d {
		out[i] = v
	}
	return out
}

// dimsOf is a value's shape with −1 for symbolic or unknown dims.
func dimsOf(v *onnxpb.ValueInfoProto) []int64 {
	var out []int64
	for _, d := range v.GetType().GetTensorType().GetShape().GetDim() {
		if dv, ok := d.Value.(*onnxpb.TensorShapeProto_Dimension_DimValue); ok {
			out = append(out, dv.DimValue)
		} else {
			out = append(out, -1)
		}
	}
	return out
}

func shapeString(v *onnxpb.ValueInfoProto) []string {
	var out []string
	for _, d := range v.GetType().GetTensorType().GetShape().GetDim() {
		if p := d.GetDimParam(); p != "" {
			out = append(out, p)
		} else if d.Value != nil {
			out = append(out, fmt.Sprint(d.GetDimValue()))
		} else {
			out = append(out, "?")
		}
	}
	return out
}

// setDims replaces a value's shape with static dims.
func setDims(v *onnxpb.ValueInfoProto, dims []int64) {
	tt := v.GetType().GetTensorType()
	if tt == nil {
		return
	}
	sh := &onnxpb.TensorShapeProto{}
	for _, d := range dims {
		sh.Dim = append(sh.Dim, &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: d}})
	}
	tt.Shape = sh
}

// fixSymbols replaces the symbolic dims found in symbols by their values.
func fixSymbols(v *onnxpb.ValueInfoProto, symbols map[string]int64) {
	for _, d := range v.GetType().GetTensorType().GetShape().GetDim() {
		if val, ok := symbols[d.GetDimParam()]; ok {
			d.Value = &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: val}
		}
	}
}

// floatInput declares a float32 tensor of static shape.
func floatInput(name string, dims []int64) *onnxpb.ValueInfoProto {
	v := &onnxpb.ValueInfoProto{Name: proto.String(name), Type: &onnxpb.TypeProto{
		Value: &onnxpb.TypeProto_TensorType{TensorType: &onnxpb.TypeProto_Tensor{ElemType: proto.Int32(int32(onnxpb.TensorProto_FLOAT))}}}}
	setDims(v, dims)
	return v
}

// castParam makes every reader of the initializer name read Cast(name, dt) instead, so that
// name can become a float32 input (master weights) of a graph that computes in dt.
func castParam(g *onnxpb.GraphProto, name string, dt onnxpb.TensorProto_DataType) {
	cast := name + "/" + strings.ToLower(dt.String())
	for _, n := range g.GetNode() {
		for i, in := range n.GetInput() {
			if in == name {
				n.Input[i] = cast
			}
		}
	}
	for _, o := range g.GetOutput() {
		if o.GetName() == name {
			o.Name = proto.String(cast)
		}
	}
	to := onnx.AttrInt("to", int64(dt))
	g.Node = append([]*onnxpb.NodeProto{{OpType: proto.String("Cast"), Name: proto.String("/param_cast/" + name),
		Input: []string{name}, Output: []string{cast}, Attribute: []*onnxpb.AttributeProto{to}}}, g.Node...)
}

// NeedsLossScale reports whether m's backward would run in float16: some MatMul or Gemm
// computes in float16 (a natively converted base; bfloat16 has float32's range and needs none,
// and a weight-only base computes in float32). dims fixes the inputs' shapes.
func NeedsLossScale(m *onnx.Model, dims map[string][]int64) (bool, error) {
	linear := false
	for _, n := range m.Graph().GetNode() {
		if op := n.GetOpType(); op == "MatMul" || op == "Gemm" {
			linear = true
			break
		}
	}
	if !linear {
		return false, nil
	}
	types, err := autodiff.InferShapes(m, dims)
	if err != nil {
		return false, err
	}
	for _, n := range m.Graph().GetNode() {
		if op := n.GetOpType(); (op == "MatMul" || op == "Gemm") && len(n.GetOutput()) > 0 &&
			types[n.GetOutput()[0]].Elem == onnxpb.TensorProto_FLOAT16 {
			return true, nil
		}
	}
	return false, nil
}
