package prune

import (
	"fmt"
	"sort"

	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/transform/layers"
)

// Plan splits a model into calibration stages, one per decoder block that holds targets, so
// Wanda's statistics can be collected sequentially: stage s's graph runs block s−1 with its
// pruned weights and block s still dense, taps block s's linear inputs, and hands the tensors
// later blocks need (the cut) to stage s+1. Each block therefore runs twice in total and is
// calibrated on the outputs of the already-pruned blocks, exactly as Wanda's loop does.
//
// A node's stage is the largest stage of its producers (a target linear takes its block's
// stage). Nodes that depend on no linear at all (embedding lookups, position tables, masks,
// shape arithmetic) are "free": every stage graph recomputes the ones it needs from the model's
// own inputs instead of passing them along.
type Plan struct {
	m       *onnx.Model
	order   []*onnxpb.NodeProto
	stage   map[*onnxpb.NodeProto]int // -1 = free
	prodOf  map[string]*onnxpb.NodeProto
	types   map[string]onnx.TensorType
	Stages  [][]layers.Linear // targets per stage, in topological order
	Blocks  []int             // the decoder block of each stage (-1 in one-shot mode)
	cut     [][]string        // cut[s]: non-free tensors produced before stage s and consumed at or after s
	inputs  map[string]bool   // the model's own graph inputs
	opset   int64
	targets map[string]layers.Linear // by node name
	// Tap is the statistic each stage graph collects per linear input (default: Wanda's sums
	// of squares).
	Tap TapKind
}

// TapKind is the statistic a stage graph outputs for each target input x (flattened to
// [tokens, in]).
type TapKind int

const (
	// TapSumSquares is Σ_t x[t,i]², one value per input feature (Wanda's norms).
	TapSumSquares TapKind = iota
	// TapGram is XᵀX, [in, in] (GPTQ's Hessian up to the factor 2/T).
	TapGram
)

// NewPlan builds the stage plan. With oneShot every target lands in one stage (all statistics
// from one pass over the dense model, a labelled deviation from Wanda).
func NewPlan(m *onnx.Model, targets []layers.Linear, oneShot bool) (*Plan, error) {
	if len(targets) == 0 {
		return nil, fmt.Errorf("plan calibration: no target linear layers")
	}
	ix := onnx.NewIndex(m.Graph())
	order, err := ix.TopoOrder()
	if err != nil {
		return nil, fmt.Errorf("plan calibration: %w", err)
	}
	types, err := onnx.InferShapes(m, nil)
	if err != nil {
		return nil, fmt.Errorf("plan calibration: %w", err)
	}
	p := &Plan{m: m, order: order, stage: map[*onnxpb.NodeProto]int{}, prodOf: map[string]*onnxpb.NodeProto{},
		types: types, inputs: map[string]bool{}, targets: map[string]layers.Linear{}}
	p.opset, _ = m.Opset("")
	for _, in := range m.Graph().GetInput() {
		p.inputs[in.GetName()] = true
	}
	stageOfBlock := map[int]int{}
	if oneShot {
		p.Blocks = []int{-1}
		p.Stages = [][]layers.Linear{nil}
	} else {
		var blocks []int
		for _, l := range targets {
			if _, ok := stageOfBlock[l.Block]; !ok {
				stageOfBlock[l.Block] = 0
				blocks = append(blocks, l.Block)
			}
		}
		sort.Ints(blocks)
		for s, b := range blocks {
			stageOfBlock[b] = s
		}
		p.Blocks = blocks
		p.Stages = make([][]layers.Linear, len(blocks))
	}
	for _, l := range targets {
		p.targets[l.Node] = l
	}
	for _, n := range order {
		st := -1
		for _, in := range n.GetInput() {
			if pr := p.prodOf[in]; pr != nil && p.stage[pr] > st {
				st = p.stage[pr]
			}
		}
		if l, ok := p.targets[n.GetName()]; ok {
			own := 0
			if !oneShot {
				own = stageOfBlock[l.Block]
			}
			if st > own {
				return nil, fmt.Errorf("plan calibration: linear %s (block %d) depends on a later block's output; blocks are not sequential", l.Node, l.Block)
			}
			st = own
			p.Stages[own] = append(p.Stages[own], l)
		}
		p.stage[n] = st
		for _, o := range n.GetOutput() {
			p.prodOf[o] = n
		}
	}
	// cut[s] for s ≥ 1: non-free tensors produced at a stage < s and consumed at a stage ≥ s.
	p.cut = make([][]string, len(p.Stages)+1)
	lastUse := map[string]int{}
	for _, n := range order {
		for _, in := range n.GetInput() {
			if pr := p.prodOf[in]; pr != nil && p.stage[pr] >= 0 && p.stage[n] > lastUse[in] {
				lastUse[in] = p.stage[n]
			}
		}
	}
	for _, n := range order {
		st := p.stage[n]
		if st < 0 {
			continue
		}
		for _, o := range n.GetOutput() {
			for s := st + 1; s <= lastUse[o] && s < len(p.cut); s++ {
				p.cut[s] = append(p.cut[s], o)
			}
		}
	}
	return p, nil
}

// Cut is the set of tensors stage s's graph needs from earlier stages (empty for s = 0).
func (p *Plan) Cut(s int) []string {
	if s <= 0 || s >= len(p.cut) {
		return nil
	}
	return p.cut[s]
}

// StageGraph is one calibration graph.
type StageGraph struct {
	Model *onnx.Model
	// Taps maps each distinct target input tensor to the graph output holding its statistic
	// (Plan.Tap): Σ x_i² over all leading axes (one value per input feature) or XᵀX, float32.
	Taps map[string]string
	// Inputs are the graph's inputs: the model's own inputs it needs and Cut(s−1).
	Inputs []string
	// Produces are the tensors of Cut(s) computed here (outputs); the rest of Cut(s) are
	// inputs passed through unchanged.
	Produces []string
}

// StageGraph builds stage s's graph. pruned replaces the stored weights of already-pruned
// linears (the block of stage s−1) by name; everything else references the model's own
// initializers (external data stays external, relative to the model's folder).
func (p *Plan) StageGraph(s int, pruned map[string]*onnxpb.TensorProto) (*StageGraph, error) {
	if s < 0 || s >= len(p.Stages) {
		return nil, fmt.Errorf("stage %d out of range [0, %d)", s, len(p.Stages))
	}
	sg := &StageGraph{Taps: map[string]string{}}
	g := &onnxpb.GraphProto{Name: strPtr(fmt.Sprintf("shears_calibration_stage_%d", s))}
	// Inputs: Cut(s−1). Wanted outputs: the taps of stage s and the part of Cut(s) that this
	// graph computes (with stage s−1's pruned weights) for stage s+1.
	cutIn := map[string]bool{}
	for _, t := range p.Cut(s - 1) {
		cutIn[t] = true
	}
	var want []string
	// The last stage computes its cut too, though nothing reads it: that keeps its graph the
	// same as the stages before it, so they can share one session (see Canonical).
	for _, t := range p.Cut(s) {
		if !cutIn[t] {
			want = append(want, t)
			sg.Produces = append(sg.Produces, t)
		}
	}
	var tapInputs []string
	tapIn := map[string]int64{} // input features, from the weight (the activation's shape may be symbolic)
	seenTap := map[string]bool{}
	for _, l := range p.Stages[s] {
		if !seenTap[l.Input] {
			seenTap[l.Input] = true
			tapInputs = append(tapInputs, l.Input)
			tapIn[l.Input] = l.In
			want = append(want, l.Input)
		}
	}
	// Keep the nodes the wanted tensors need, stopping at cut inputs.
	keep := map[*onnxpb.NodeProto]bool{}
	stack := append([]string(nil), want...)
	seen := map[string]bool{}
	for len(stack) > 0 {
		t := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[t] || cutIn[t] {
			continue
		}
		seen[t] = true
		n := p.prodOf[t]
		if n == nil || keep[n] {
			continue
		}
		if st := p.stage[n]; st >= 0 && st < s-1 {
			return nil, fmt.Errorf("stage %d: tensor %s from stage %d is not in the cut", s, t, st)
		}
		keep[n] = true
		stack = append(stack, n.GetInput()...)
	}
	inits := map[string]bool{}
	for _, n := range p.order {
		if !keep[n] {
			continue
		}
		g.Node = append(g.Node, n)
		for _, in := range n.GetInput() {
			if in == "" || p.prodOf[in] != nil && !cutIn[in] || inits[in] {
				continue
			}
			if t := p.m.Initializer(in); t != nil {
				inits[in] = true
				if r, ok := pruned[in]; ok {
					t = r
				}
				g.Initializer = append(g.Initializer, t)
			}
		}
	}
	// Graph inputs: the model's inputs that kept nodes read, then the cut.
	used := map[string]bool{}
	for _, n := range g.Node {
		for _, in := range n.GetInput() {
			used[in] = true
		}
	}
	for _, t := range want {
		used[t] = true
	}
	for _, in := range p.m.Graph().GetInput() {
		if used[in.GetName()] && !inits[in.GetName()] {
			g.Input = append(g.Input, in)
			sg.Inputs = append(sg.Inputs, in.GetName())
		}
	}
	for _, t := range p.Cut(s - 1) {
		if !used[t] {
			continue
		}
		vi, err := p.valueInfo(t)
		if err != nil {
			return nil, err
		}
		g.Input = append(g.Input, vi)
		sg.Inputs = append(sg.Inputs, t)
	}
	for _, t := range sg.Produces {
		vi, err := p.valueInfo(t)
		if err != nil {
			return nil, err
		}
		g.Output = append(g.Output, vi)
	}
	mp := &onnxpb.ModelProto{IrVersion: p.m.Proto.IrVersion, OpsetImport: p.m.Proto.GetOpsetImport(), Graph: g,
		ProducerName: strPtr("shears")}
	sm := &onnx.Model{Proto: mp, Dir: p.m.Dir}
	bb := onnx.BuilderFor(sm)
	for k, x := range tapInputs {
		tt, ok := p.types[x]
		if !ok {
			return nil, fmt.Errorf("stage %d: no type known for linear input %s", s, x)
		}
		in := tapIn[x]
		flat := bb.Op("Reshape", fmt.Sprintf("/shears/tap_%d/Reshape", k), []string{x, bb.Const(fmt.Sprintf("shears_tap_%d_shape", k), onnx.Int64Tensor("", []int64{2}, []int64{-1, in}))})
		if tt.Elem != onnxpb.TensorProto_FLOAT {
			flat = bb.Op("Cast", fmt.Sprintf("/shears/tap_%d/Cast", k), []string{flat}, onnx.AttrInt("to", int64(onnxpb.TensorProto_FLOAT)))
		}
		tap := fmt.Sprintf("shears_tap_%d", k)
		if p.Tap == TapGram {
			tr := bb.Op("Transpose", fmt.Sprintf("/shears/tap_%d/Transpose", k), []string{flat}, onnx.AttrInts("perm", 1, 0))
			bb.OpOut("MatMul", fmt.Sprintf("/shears/tap_%d/MatMul", k), []string{tr, flat}, []string{tap})
			sg.Taps[x] = bb.Output(tap, onnxpb.TensorProto_FLOAT, in, in)
			continue
		}
		node := fmt.Sprintf("/shears/tap_%d/ReduceSumSquare", k)
		if p.opset >= 18 {
			bb.OpOut("ReduceSumSquare", node, []string{flat, bb.Const(fmt.Sprintf("shears_tap_%d_axes", k), onnx.Int64Tensor("", []int64{1}, []int64{0}))}, []string{tap}, onnx.AttrInt("keepdims", 0))
		} else {
			bb.OpOut("ReduceSumSquare", node, []string{flat}, []string{tap}, onnx.AttrInts("axes", 0), onnx.AttrInt("keepdims", 0))
		}
		out := bb.Output(tap, onnxpb.TensorProto_FLOAT, in)
		sg.Taps[x] = out
	}
	if err := bb.Err(); err != nil {
		return nil, fmt.Errorf("stage %d: %w", s, err)
	}
	sg.Model = sm
	return sg, nil
}

func (p *Plan) valueInfo(name string) (*onnxpb.ValueInfoProto, error) {
	tt, ok := p.types[name]
	if !ok || tt.Elem == onnxpb.TensorProto_UNDEFINED {
		return nil, fmt.Errorf("calibration cut: no type known for tensor %s", name)
	}
	return &onnxpb.ValueInfoProto{Name: strPtr(name), Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
		TensorType: &onnxpb.TypeProto_Tensor{ElemType: int32Ptr(int32(tt.Elem))}}}}, nil
}

func strPtr(s string) *string { return &s }
func int32Ptr(v int32) *int32 { return &v }
