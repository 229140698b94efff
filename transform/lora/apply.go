package lora

import (
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"path"
	"strings"

	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"google.golang.org/protobuf/proto"
)

// ApplyOptions controls Apply.
type ApplyOptions struct {
	// Train adds the dropout keep-mask inputs (when Config.Dropout > 0), as AddDropout does.
	Train bool
}

// Apply returns a copy of m with the plan's adapters inserted; m is not modified (the copy
// shares nothing with it; external-data tensors keep their references and m's folder).
func Apply(m *onnx.Model, p *Plan, opts ApplyOptions) (*onnx.Model, error) {
	if m == nil || m.Proto == nil || m.Graph() == nil {
		return nil, fmt.Errorf("lora: apply: no model graph")
	}
	if p == nil || len(p.Modules) == 0 {
		return nil, fmt.Errorf("lora: apply: empty plan")
	}
	if _, err := ReadConfig(m); err == nil {
		return nil, fmt.Errorf("lora: apply: %s already has LoRA adapters (metadata %q)", name(m), MetaKey)
	}
	out := &onnx.Model{Proto: proto.Clone(m.Proto).(*onnxpb.ModelProto), Dir: m.Dir}
	g := out.Graph()
	ix := onnx.NewIndex(g)
	rMax := int64(p.RMax())
	fusedDone := map[string]bool{}
	for _, mod := range p.Modules {
		if mod.Slice != nil {
			if fusedDone[mod.Output] {
				continue
			}
			fusedDone[mod.Output] = true
			if err := checkTiling(p.Modules, mod.Output); err != nil {
				return nil, fmt.Errorf("lora: apply: %w", err)
			}
		}
		n := ix.Producer[mod.Output]
		if n == nil || n.GetName() != mod.Node || len(n.GetInput()) == 0 || n.GetInput()[0] != mod.Input {
			return nil, fmt.Errorf("lora: apply: module %s: node %s with input %s and output %s not found (plan made for another model?)",
				mod.Name, mod.Node, mod.Input, mod.Output)
		}
	}

	qa, err := lowered(m)
	if err != nil {
		return nil, fmt.Errorf("lora: apply: %w", err)
	}
	b := onnx.BuilderFor(out)
	opset, _ := out.Opset("")
	meta := p.meta()
	meta.QuantAware = len(qa) > 0
	scale := b.Const("lora_scale", onnx.Float32Tensor("", nil, []float32{float32(p.Scale)}))
	scaled := map[string]string{} // group name → scale·mask
	for _, gr := range p.Groups {
		if got := b.Input(gr.Mask, onnxpb.TensorProto_FLOAT, rMax); got != gr.Mask {
			return nil, fmt.Errorf("lora: apply: rank-mask input %s: %w", gr.Mask, errOr(b.Err(), "name taken"))
		}
		scaled[gr.Name] = b.Op("Mul", "/lora/"+gr.Name+"/scaled_mask", []string{gr.Mask, scale})
	}
	// scaledAs is a group's scale·mask in the adapter's type: the mask inputs stay float32 (the
	// trainer and the search feed float32), cast once per group and type.
	scaledAs := func(group string, dt onnxpb.TensorProto_DataType) string {
		if dt == onnxpb.TensorProto_FLOAT {
			return scaled[group]
		}
		k := group + "/" + typeName(dt)
		if _, ok := scaled[k]; !ok {
			scaled[k] = b.Op("Cast", "/lora/"+group+"/scaled_mask_"+typeName(dt), []string{scaled[group]}, onnx.AttrInt("to", int64(dt)))
		}
		return scaled[k]
	}
	// Where the adapter's type differs from the linear's, x is cast once per input tensor (q, k
	// and v read the same x: one Cast, not three) and the delta is cast back before the Add.
	castX := map[string]string{}
	zeros := map[onnxpb.TensorProto_DataType]string{} // the scalar 0 sparse adapters compare W with
	type swap struct{ base, add string }
	var swaps []swap
	// The q, k, v slice deltas of a fused linear, in slice order, joined by one Concat.
	fused := map[string][]string{}
	var fusedOrder []string
	for i, mod := range meta.Modules {
		cdt, adt := mod.Types()
		a := b.Const(mod.A, typedTensor(adt, []int64{mod.In, rMax}, initA(p.Config.Seed, mod.Name, mod.In, rMax)))
		bb := b.Const(mod.B, typedTensor(adt, []int64{rMax, mod.Out}, make([]float32, rMax*mod.Out)))
		if b.Err() == nil && (a != mod.A || bb != mod.B) {
			return nil, fmt.Errorf("lora: apply: module %s: initializer names %s, %s are taken (plan made for another model?)", mod.Name, mod.A, mod.B)
		}
		pre := nodePrefix(mod)
		if mod.Slice != nil {
			pre += "/" + mod.Role
		}
		x := mod.Input
		if adt != cdt {
			k := x + "/" + typeName(adt)
			if _, ok := castX[k]; !ok {
				castX[k] = b.Op("Cast", pre+"/lora_input/Cast", []string{x}, onnx.AttrInt("to", int64(adt)))
			}
			x = castX[k]
			meta.Modules[i].AdapterInput = x
		}
		sm := scaledAs(mod.Group, adt)
		var xa, d string
		if r, ok := qa[mod.Node]; ok {
			if err := checkQA(mod, r, p.Config.SparseAdapter); err != nil {
				return nil, fmt.Errorf("lora: apply: %w", err)
			}
			if _, ok := zeros[cdt]; !ok {
				zeros[cdt] = b.Const("lora_zero", typedTensor(cdt, nil, []float32{0}))
			}
			d = qaDelta(b, opset, ix.Producer[mod.Output], mod, x, a, bb, sm, zeros[cdt], r)
			xa = d
		} else if p.Config.SparseAdapter {
			if _, ok := zeros[cdt]; !ok {
				zeros[cdt] = b.Const("lora_zero", typedTensor(cdt, nil, []float32{0}))
			}
			d = sparseDelta(b, ix.Producer[mod.Output], mod, pre, x, a, bb, sm, zeros[cdt], adt)
			xa = d
		} else {
			xa = b.Op("MatMul", pre+"/lora_A/MatMul", []string{x, a})
			xm := b.Op("Mul", pre+"/lora_mask/Mul", []string{xa, sm})
			d = b.Op("MatMul", pre+"/lora_B/MatMul", []string{xm, bb})
		}
		if adt != cdt {
			d = b.Op("Cast", pre+"/lora_delta/Cast", []string{d}, onnx.AttrInt("to", int64(cdt)))
		}
		meta.Modules[i].ANode = strings.TrimSuffix(xa, "_output_0")
		if mod.Slice != nil {
			if fused[mod.Output] == nil {
				fusedOrder = append(fusedOrder, mod.Output)
			}
			fused[mod.Output] = append(fused[mod.Output], d)
			continue
		}
		sum := b.Op("Add", pre+"/lora_Add", []string{mod.Output, d})
		swaps = append(swaps, swap{mod.Output, strings.TrimSuffix(sum, "_output_0")})
	}
	for _, y := range fusedOrder {
		var first Module
		for _, mod := range meta.Modules {
			if mod.Output == y {
				first = mod
				break
			}
		}
		pre := nodePrefix(first)
		d := b.Op("Concat", pre+"/lora_qkv/Concat", fused[y], onnx.AttrInt("axis", -1))
		sum := b.Op("Add", pre+"/lora_Add", []string{y, d})
		swaps = append(swaps, swap{y, strings.TrimSuffix(sum, "_output_0")})
	}
	if err := b.Err(); err != nil {
		return nil, fmt.Errorf("lora: apply: %w", err)
	}
	// The Add was built reading the base output; now it takes over that name, so every
	// consumer (and a graph output) reads base + adapter, and the base node gets a new name.
	ix = onnx.NewIndex(g)
	for _, s := range swaps {
		base := ix.Producer[s.base]
		add := ix.Nodes[s.add]
		fresh := ix.UniqueName(s.base + "_base")
		base.Output[0] = fresh
		add.Input[0] = fresh
		add.Output[0] = s.base
	}
	if err := sortNodes(g); err != nil {
		return nil, fmt.Errorf("lora: apply: %w", err)
	}
	if err := writeMeta(out, meta); err != nil {
		return nil, err
	}
	if err := keepUnadapted(out, qa, meta); err != nil {
		return nil, fmt.Errorf("lora: apply: %w", err)
	}
	if opts.Train && p.Config.Dropout > 0 {
		if err := AddDropout(out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// checkTiling checks that the slice modules of the fused output y are in slice order and tile
// its features from 0 without gaps (the Concat of their deltas must line up with y).
func checkTiling(mods []Module, y string) error {
	next := int64(0)
	for _, m := range mods {
		if m.Output != y {
			continue
		}
		if m.Slice == nil || len(m.Slice) != 2 || m.Slice[0] != next || m.Slice[1]-m.Slice[0] != m.Out {
			return fmt.Errorf("module %s: slice %v of fused output %s does not follow the previous slice (ending at %d)", m.Name, m.Slice, y, next)
		}
		next = m.Slice[1]
	}
	return nil
}

// typedTensor is an unnamed tensor of type dt (float32, float16 or bfloat16) holding v.
func typedTensor(dt onnxpb.TensorProto_DataType, dims []int64, v []float32) *onnxpb.TensorProto {
	if dt == onnxpb.TensorProto_FLOAT {
		return onnx.Float32Tensor("", dims, v)
	}
	t := onnx.NewTensor("", dt, dims, nil)
	if err := onnx.SetFloat32s(t, v); err != nil { // cannot fail: dt is a half type, len(v) fits dims
		return onnx.Float32Tensor("", dims, v)
	}
	return t
}

func errOr(err error, s string) error {
	if err != nil {
		return err
	}
	return fmt.Errorf("%s", s)
}

// nodePrefix is the folder of the module's base node ("/model/layers.0/self_attn/q_proj"),
// under which the adapter's nodes are named.
func nodePrefix(mod Module) string {
	if strings.HasPrefix(mod.Node, "/") {
		if d := path.Dir(mod.Node); d != "/" && d != "." {
			return d
		}
	}
	return "/" + strings.ReplaceAll(mod.Name, ".", "/")
}

// sortNodes puts g's nodes in topological order (new nodes were appended at the end).
func sortNodes(g *onnxpb.GraphProto) error {
	order, err := onnx.NewIndex(g).TopoOrder()
	if err != nil {
		return err
	}
	g.Node = order
	return nil
}

// initA draws A [in, rMax] from U(−1/√in, +1/√in), PEFT's kaiming_uniform(a=√5) on its
// [r, in] tensor, from a generator seeded by (seed, module name).
func initA(seed uint64, module string, in, rMax int64) []float32 {
	h := fnv.New64a()
	h.Write([]byte(module))
	rng := rand.New(rand.NewPCG(seed, h.Sum64()))
	bound := 1 / math.Sqrt(float64(in))
	v := make([]float32, in*rMax)
	for i := range v {
		v[i] = float32((2*rng.Float64() - 1) * bound)
	}
	return v
}
