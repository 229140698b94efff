package lora

import (
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/transform/layers"
)

// Group is one rank choice: the modules of one decoder layer that share a rank mask.
type Group struct {
	Name    string   `json:"name"`       // "layers.0.qkv" (just the kind outside the decoder blocks)
	Kind    string   `json:"kind"`       // "qkv", "up", "up_gate", "down", ...
	Block   int      `json:"block"`      // decoder block, -1 outside
	Mask    string   `json:"mask_input"` // the rank-mask graph input [r_max]
	Modules []string `json:"modules"`    // module names, in graph order
}

// Module is one adapted linear layer.
type Module struct {
	Name   string `json:"name"`   // "model.layers.0.self_attn.q_proj"
	Node   string `json:"node"`   // the base MatMul/Gemm node
	Weight string `json:"weight"` // its (frozen) weight initializer
	Input  string `json:"input"`  // x
	Output string `json:"output"` // y: after Apply, the sum of the base and the adapter
	Role   string `json:"role"`
	Block  int    `json:"block"`
	Group  string `json:"group"`
	In     int64  `json:"in"`
	Out    int64  `json:"out"`
	A      string `json:"a"`                // initializer [in, r_max]
	B      string `json:"b"`                // initializer [r_max, out]
	ANode  string `json:"a_node,omitempty"` // the MatMul(x, A) node (set by Apply)
	// Dropout is the keep-mask input [x's shape] of train graphs with dropout.
	Dropout string `json:"dropout_input"`
	// DType is the type the base linear computes in ("fp16", "bf16"; "" for float32): a
	// weight-only converted base computes in float32, a native one in its low-precision type.
	DType string `json:"dtype,omitempty"`
	// AdapterDType is the type of A and B and of the adapter's arithmetic ("" for float32).
	AdapterDType string `json:"adapter_dtype,omitempty"`
	// AdapterInput is x as the adapter reads it when the adapter's type differs from the
	// linear's: a Cast of Input, shared by the modules reading the same x (set by Apply).
	AdapterInput string `json:"adapter_input,omitempty"`
	// Slice is [lo, hi) of the linear's output features this module adapts, set for the q, k
	// and v modules of a fused qkv linear (Role q, k or v; Out = hi − lo); nil for a whole
	// linear. Fused is then the fused linear's own module name (PEFT exports it as one module).
	Slice []int64 `json:"slice,omitempty"`
	Fused string  `json:"fused,omitempty"`
}

// Params is the module's adapter parameter count at rank r: r·(in + out).
func (m Module) Params(r int) int64 { return int64(r) * (m.In + m.Out) }

// Plan is everything Apply will write, decided up front.
type Plan struct {
	Config  Config // defaults filled in
	Scale   float64
	Groups  []Group
	Modules []Module
	// QuantAware is set when m is a lowered quantized model (quant.Lower): Apply builds the
	// QA-SparsePEFT path for its modules (see qaDelta).
	QuantAware bool
}

// RMax is the plan's largest rank.
func (p *Plan) RMax() int { return p.Config.Ranks[0] }

// Params is the adapter parameter count with every group at rank r.
func (p *Plan) Params(r int) int64 {
	var n int64
	for _, m := range p.Modules {
		n += m.Params(r)
	}
	return n
}

// NewPlan chooses the modules among targets (from layers.Find/Select) whose role is in
// cfg.Targets, groups them per decoder layer, and names the new tensors and inputs. Names that
// already exist in m get a numeric suffix. m is only read.
func NewPlan(m *onnx.Model, targets []layers.Linear, cfg Config) (*Plan, error) {
	cfg = cfg.withDefaults()
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if m == nil || m.Graph() == nil {
		return nil, fmt.Errorf("lora: plan: no model graph")
	}
	if _, err := ReadConfig(m); err == nil {
		return nil, fmt.Errorf("lora: plan: %s already has LoRA adapters (metadata %q); adapt the base model", name(m), MetaKey)
	}
	cfg.Targets = fuseQKV(cfg.Targets, targets)
	kinds, err := parseGroups(cfg.Groups, cfg.Targets)
	if err != nil {
		return nil, err
	}
	kindOf := map[string]string{}
	for _, k := range kinds {
		for _, r := range k.Roles {
			kindOf[r] = k.Name
		}
	}
	ix := onnx.NewIndex(m.Graph())
	taken := func(n string) bool {
		return ix.Inputs[n] != nil || ix.Initializers[n] != nil || ix.Producer[n] != nil || ix.Nodes[n] != nil
	}
	used := map[string]bool{}
	unique := func(n string) string {
		c := n
		for k := 1; taken(c) || used[c]; k++ {
			c = fmt.Sprintf("%s_%d", n, k)
		}
		used[c] = true
		return c
	}

	p := &Plan{Config: cfg, Scale: cfg.Alpha / float64(cfg.Ranks[0])}
	if qa, err := lowered(m); err != nil {
		return nil, err
	} else if len(qa) > 0 {
		p.QuantAware = true
	}
	rMax := int64(cfg.Ranks[0])
	matched := map[string]int{}
	present := map[string]bool{}
	groupIdx := map[string]int{}
	for _, l := range targets {
		present[l.Role] = true
		kind, ok := kindOf[l.Role]
		if !ok {
			continue
		}
		matched[l.Role]++
		if n := ix.Producer[l.Output]; n == nil || n.GetName() != l.Node {
			return nil, fmt.Errorf("lora: plan: linear %s: its output %q is not produced by it in this model (a stale layer list?)", l.Node, l.Output)
		}
		if w := ix.Initializers[l.Weight]; w == nil || typeName(onnx.DataType(w)) == "" {
			return nil, fmt.Errorf("lora: plan: linear %s: weight %s is not a float32, float16 or bfloat16 initializer", l.Node, l.Weight)
		}
		cdt := computeType(ix, ix.Producer[l.Output])
		if typeName(cdt) == "" {
			return nil, fmt.Errorf("lora: plan: linear %s computes in %s; adapters need float32, float16 or bfloat16", l.Node, cdt)
		}
		adt := onnxpb.TensorProto_FLOAT
		if cfg.AdapterDType == AdapterBase {
			adt = cdt
		}
		if rMax > l.In || rMax > l.Out {
			return nil, fmt.Errorf("lora: plan: r_max %d exceeds min(in, out) = min(%d, %d) of linear %s (%s); choose smaller --ranks",
				rMax, l.In, l.Out, l.Node, l.Role)
		}
		gname := kind
		if l.Block >= 0 {
			gname = fmt.Sprintf("layers.%d.%s", l.Block, kind)
		}
		gi, ok := groupIdx[gname]
		if !ok {
			gi = len(p.Groups)
			groupIdx[gname] = gi
			p.Groups = append(p.Groups, Group{Name: gname, Kind: kind, Block: l.Block, Mask: unique("lora_rank_mask." + gname)})
		}
		parts := []qkvSlice{{Role: l.Role, Lo: 0, Hi: l.Out}}
		if l.Role == "qkv" {
			if parts, err = qkvSlices(ix, m, l); err != nil {
				return nil, fmt.Errorf("lora: plan: %w", err)
			}
		}
		base := moduleName(l)
		for _, sl := range parts {
			name := base
			mod := Module{Node: l.Node, Weight: l.Weight, Input: l.Input, Output: l.Output, Role: sl.Role, Block: l.Block,
				Group: gname, In: l.In, Out: sl.Hi - sl.Lo, DType: dtypeField(cdt), AdapterDType: dtypeField(adt)}
			if l.Role == "qkv" {
				name, mod.Slice, mod.Fused = base+"."+sl.Role, []int64{sl.Lo, sl.Hi}, base
				if rMax > mod.Out {
					return nil, fmt.Errorf("lora: plan: r_max %d exceeds the %s slice's %d outputs of fused linear %s; choose smaller --ranks",
						rMax, sl.Role, mod.Out, l.Node)
				}
			}
			mod.Name = unique(name)
			mod.A, mod.B, mod.Dropout = unique(mod.Name+".lora_A"), unique(mod.Name+".lora_B"), unique("lora_dropout_keep."+mod.Name)
			p.Groups[gi].Modules = append(p.Groups[gi].Modules, mod.Name)
			p.Modules = append(p.Modules, mod)
		}
	}
	for _, t := range cfg.Targets {
		if matched[t] == 0 {
			var have []string
			for r := range present {
				have = append(have, r)
			}
			sort.Strings(have)
			return nil, fmt.Errorf("lora: plan: target role %q matches none of the %d candidate linear layers (roles present: %s)",
				t, len(targets), strings.Join(have, ","))
		}
	}
	sort.SliceStable(p.Groups, func(i, j int) bool {
		a, b := p.Groups[i], p.Groups[j]
		if a.Block != b.Block {
			return a.Block < b.Block
		}
		return kindRank(kinds, a.Kind) < kindRank(kinds, b.Kind)
	})
	return p, nil
}

// fuseQKV replaces the targets q, k and v by "qkv" when the model has one fused qkv linear per
// block (GPT-2's c_attn, NeoX's query_key_value, Phi's qkv_proj) and no separate q, k or v:
// there, q+k+v is that one linear, so the default targets (q k v up down, what "shears adapt"
// and recipes pass when none are given) mean the same layers in every family. Targets naming
// only some of q, k, v are left as they are (a fused linear cannot adapt q alone).
func fuseQKV(roles []string, ls []layers.Linear) []string {
	present := map[string]bool{}
	for _, l := range ls {
		present[l.Role] = true
	}
	if !present["qkv"] || present["q"] || present["k"] || present["v"] ||
		!slices.Contains(roles, "q") || !slices.Contains(roles, "k") || !slices.Contains(roles, "v") || slices.Contains(roles, "qkv") {
		return roles
	}
	var out []string
	for _, r := range roles {
		switch r {
		case "q":
			out = append(out, "qkv")
		case "k", "v":
		default:
			out = append(out, r)
		}
	}
	return out
}

func kindRank(kinds []groupKind, name string) int {
	for i, k := range kinds {
		if k.Name == name {
			return i
		}
	}
	return len(kinds)
}

// moduleName gives a PEFT-like module name: the weight's name without ".weight" when it has
// one (model.layers.0.self_attn.q_proj), else the node's path without the op
// (/layers.0/wq/MatMul → layers.0.wq).
func moduleName(l layers.Linear) string {
	if s, ok := strings.CutSuffix(l.Weight, ".weight"); ok && s != "" && !strings.Contains(s, "::") {
		return s
	}
	n := strings.Trim(l.Node, "/")
	if dir, base := path.Split(n); dir != "" && (strings.HasPrefix(base, "MatMul") || strings.HasPrefix(base, "Gemm")) {
		n = strings.Trim(dir, "/")
	}
	n = strings.ReplaceAll(n, "/", ".")
	if n == "" {
		n = strings.NewReplacer("::", ".", "/", ".").Replace(l.Weight)
	}
	return n
}

// String prints the plan: one line per group with its mask input, one per module with its
// shapes and new tensors. Stable, for golden tests and "shears adapt --plan".
func (p *Plan) String() string {
	var sb strings.Builder
	r := p.RMax()
	fmt.Fprintf(&sb, "lora plan: %d modules in %d groups; ranks %v, alpha %g, scale %g; targets %s\n",
		len(p.Modules), len(p.Groups), p.Config.Ranks, p.Config.Alpha, p.Scale, strings.Join(p.Config.Targets, ","))
	fmt.Fprintf(&sb, "adapter parameters: %d at r=%d, %d at r=%d, %d at r=%d\n",
		p.Params(r), r, p.Params(HeuristicRank(p.Config.Ranks)), HeuristicRank(p.Config.Ranks),
		p.Params(p.Config.Ranks[len(p.Config.Ranks)-1]), p.Config.Ranks[len(p.Config.Ranks)-1])
	mods := map[string]Module{}
	for _, m := range p.Modules {
		mods[m.Name] = m
	}
	for _, g := range p.Groups {
		fmt.Fprintf(&sb, "group %s: mask %s [%d]\n", g.Name, g.Mask, r)
		for _, n := range g.Modules {
			m := mods[n]
			slice := ""
			if m.Slice != nil {
				slice = fmt.Sprintf(" outputs [%d:%d]", m.Slice[0], m.Slice[1])
			}
			fmt.Fprintf(&sb, "  %-5s %s (%s)%s %d→%d: A %s [%d,%d], B %s [%d,%d], keep %s\n",
				m.Role, m.Node, m.Weight, slice, m.In, m.Out, m.A, m.In, r, m.B, r, m.Out, m.Dropout)
		}
	}
	return sb.String()
}

// typeName is the short name of a float type adapters work with ("" for any other type).
func typeName(dt onnxpb.TensorProto_DataType) string {
	switch dt {
	case onnxpb.TensorProto_FLOAT:
		return "fp32"
	case onnxpb.TensorProto_FLOAT16:
		return "fp16"
	case onnxpb.TensorProto_BFLOAT16:
		return "bf16"
	}
	return ""
}

// dtypeField is a Module dtype field: "" for float32 (so float32 metadata is unchanged).
func dtypeField(dt onnxpb.TensorProto_DataType) string {
	if dt == onnxpb.TensorProto_FLOAT {
		return ""
	}
	return typeName(dt)
}

// parseType reads a Module dtype field ("" is float32).
func parseType(s string) onnxpb.TensorProto_DataType {
	switch s {
	case "fp16":
		return onnxpb.TensorProto_FLOAT16
	case "bf16":
		return onnxpb.TensorProto_BFLOAT16
	}
	return onnxpb.TensorProto_FLOAT
}

// Types returns the module's compute and adapter types.
func (m Module) Types() (compute, adapter onnxpb.TensorProto_DataType) {
	return parseType(m.DType), parseType(m.AdapterDType)
}

// computeType is the type a linear node computes in: the type of its weight operand as the node
// reads it, following Transpose/Identity back to a Cast (its "to") or the initializer.
func computeType(ix *onnx.Index, n *onnxpb.NodeProto) onnxpb.TensorProto_DataType {
	if n == nil || len(n.GetInput()) < 2 {
		return onnxpb.TensorProto_FLOAT
	}
	name := n.GetInput()[1]
	for hop := 0; hop < 8; hop++ {
		if t := ix.Initializers[name]; t != nil {
			return onnx.DataType(t)
		}
		p := ix.Producer[name]
		if p == nil || len(p.GetInput()) == 0 {
			break
		}
		switch p.GetOpType() {
		case "Cast":
			for _, a := range p.GetAttribute() {
				if a.GetName() == "to" {
					return onnxpb.TensorProto_DataType(a.GetI())
				}
			}
		case "Transpose", "Identity":
			name = p.GetInput()[0]
			continue
		}
		break
	}
	return onnxpb.TensorProto_FLOAT
}
