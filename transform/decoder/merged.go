package decoder

import (
	"fmt"
	"slices"
	"strconv"

	"github.com/shears-ml/shears/lm"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"google.golang.org/protobuf/proto"
)

// UseCacheBranch is the boolean [1] input of optimum's merged decoder
// (decoder_model_merged.onnx): true runs the with-past branch, false the no-cache one.
const UseCacheBranch = lm.UseCacheBranch

// mergedIf returns the index of the If node that switches on use_cache_branch, or -1.
func mergedIf(g *onnxpb.GraphProto) int {
	for k, n := range g.GetNode() {
		if n.GetOpType() == "If" && n.GetDomain() == "" && len(n.Input) == 1 && n.Input[0] == UseCacheBranch {
			return k
		}
	}
	return -1
}

// IsMerged reports whether m is a merged decoder: an If on the use_cache_branch input.
func IsMerged(m *onnx.Model) bool { return m != nil && m.Graph() != nil && mergedIf(m.Graph()) >= 0 }

// Specialise returns m with its merged-decoder If replaced by one branch, inlined into the main
// graph (the with-past branch when cache, the no-cache one otherwise); use_cache_branch leaves
// the inputs when nothing else reads it. The branches read the main graph's weights by name, so
// the result shares them. Branch tensors whose names the main graph already uses are renamed;
// m is not modified.
func Specialise(m *onnx.Model, cache bool) (*onnx.Model, error) {
	if !IsMerged(m) {
		return nil, fmt.Errorf("decoder: specialise: not a merged decoder (no If on %q)", UseCacheBranch)
	}
	out := &onnx.Model{Proto: proto.Clone(m.Proto).(*onnxpb.ModelProto), Dir: m.Dir, Path: m.Path}
	g := out.Graph()
	k := mergedIf(g)
	ifn := g.Node[k]
	want := map[bool]string{true: "then_branch", false: "else_branch"}[cache]
	var br *onnxpb.GraphProto
	for _, a := range ifn.Attribute {
		if a.GetName() == want {
			br = a.G
		}
	}
	if br == nil {
		return nil, fmt.Errorf("decoder: specialise: If %q has no %s", ifn.GetName(), want)
	}
	if len(br.Output) != len(ifn.Output) {
		return nil, fmt.Errorf("decoder: specialise: If %q has %d outputs, its %s %d", ifn.GetName(), len(ifn.Output), want, len(br.Output))
	}
	used := map[string]bool{}
	for _, n := range g.Node {
		if n == ifn {
			continue
		}
		for _, o := range n.Output {
			used[o] = true
		}
		used[n.GetName()] = true
	}
	for _, t := range g.Initializer {
		used[t.GetName()] = true
	}
	for _, v := range g.Input {
		used[v.GetName()] = true
	}
	rename := map[string]string{}
	fresh := func(name string) string {
		for i := 1; ; i++ {
			c := name + "_" + want + strconv.Itoa(i)
			if !used[c] {
				used[c] = true
				return c
			}
		}
	}
	produced := map[string]bool{}
	for _, n := range br.Node {
		for _, o := range n.Output {
			produced[o] = true
		}
	}
	for i, o := range br.Output {
		if produced[o.GetName()] {
			rename[o.GetName()] = ifn.Output[i]
		}
	}
	for _, n := range br.Node {
		for _, o := range n.Output {
			if _, ok := rename[o]; !ok && o != "" && used[o] {
				rename[o] = fresh(o)
			}
		}
	}
	for _, t := range br.Initializer {
		if used[t.GetName()] {
			rename[t.GetName()] = fresh(t.GetName())
		}
	}
	re := func(s string) string {
		if r, ok := rename[s]; ok {
			return r
		}
		return s
	}
	nodes := make([]*onnxpb.NodeProto, 0, len(br.Node)+len(br.Output))
	for _, n := range br.Node {
		for i := range n.Input {
			n.Input[i] = re(n.Input[i])
		}
		for i := range n.Output {
			n.Output[i] = re(n.Output[i])
		}
		nodes = append(nodes, n)
	}
	// A branch output that is an outer name or a branch initializer is copied out.
	for i, o := range br.Output {
		if !produced[o.GetName()] {
			nodes = append(nodes, &onnxpb.NodeProto{OpType: proto.String("Identity"), Name: proto.String(fresh("/shears/decoder/" + want + "/Identity")),
				Input: []string{re(o.GetName())}, Output: []string{ifn.Output[i]}})
		}
	}
	for _, t := range br.Initializer {
		t.Name = proto.String(re(t.GetName()))
		g.Initializer = append(g.Initializer, t)
	}
	for _, v := range br.ValueInfo {
		v.Name = proto.String(re(v.GetName()))
		g.ValueInfo = append(g.ValueInfo, v)
	}
	g.Node = slices.Concat(g.Node[:k], nodes, g.Node[k+1:])
	read := false
	for _, n := range g.Node {
		if slices.Contains(n.Input, UseCacheBranch) {
			read = true
		}
	}
	if !read {
		g.Input = slices.DeleteFunc(g.Input, func(v *onnxpb.ValueInfoProto) bool { return v.GetName() == UseCacheBranch })
	}
	return out, nil
}

// Merge builds optimum's merged decoder from a with-past model and its no-cache form (NoCache,
// or optimum's decoder_model.onnx): one If on a new use_cache_branch input whose then_branch is
// the with-past graph and else_branch the no-cache one, both reading one set of weights from
// the main graph. Initializers of the same name must be the same tensor (name, type, dims and
// data or external location); the interface is the with-past model's plus use_cache_branch.
func Merge(withPast, noCache *onnx.Model) (*onnx.Model, error) {
	if withPast == nil || withPast.Graph() == nil || noCache == nil || noCache.Graph() == nil {
		return nil, fmt.Errorf("decoder: merge: no model")
	}
	wg, ng := withPast.Graph(), noCache.Graph()
	if len(wg.Output) != len(ng.Output) {
		return nil, fmt.Errorf("decoder: merge: the with-past model has %d outputs, the no-cache one %d", len(wg.Output), len(ng.Output))
	}
	for i := range wg.Output {
		if wg.Output[i].GetName() != ng.Output[i].GetName() {
			return nil, fmt.Errorf("decoder: merge: output %d is %q with past and %q without", i, wg.Output[i].GetName(), ng.Output[i].GetName())
		}
	}
	mp := proto.Clone(withPast.Proto).(*onnxpb.ModelProto)
	g := mp.Graph
	inits := map[string]*onnxpb.TensorProto{}
	for _, t := range g.Initializer {
		inits[t.GetName()] = t
	}
	for _, t := range ng.Initializer {
		if have, ok := inits[t.GetName()]; ok {
			if !proto.Equal(have, t) {
				return nil, fmt.Errorf("decoder: merge: initializer %q differs between the two models (weights must be shared)", t.GetName())
			}
			continue
		}
		c := proto.Clone(t).(*onnxpb.TensorProto)
		g.Initializer = append(g.Initializer, c)
		inits[c.GetName()] = c
	}
	outer := map[string]bool{}
	for _, v := range g.Input {
		outer[v.GetName()] = true
	}
	for name := range inits {
		outer[name] = true
	}
	for _, v := range g.Output {
		outer[v.GetName()] = true
	}
	outer[UseCacheBranch] = true
	branch := func(src *onnxpb.GraphProto, name string) *onnxpb.GraphProto {
		b := &onnxpb.GraphProto{Name: proto.String(name)}
		rename := map[string]string{}
		for _, n := range src.Node {
			for _, o := range n.Output {
				if outer[o] {
					rename[o] = o + "_" + name
				}
			}
		}
		re := func(s string) string {
			if r, ok := rename[s]; ok {
				return r
			}
			return s
		}
		for _, n := range src.Node {
			c := proto.Clone(n).(*onnxpb.NodeProto)
			for i := range c.Input {
				c.Input[i] = re(c.Input[i])
			}
			for i := range c.Output {
				c.Output[i] = re(c.Output[i])
			}
			b.Node = append(b.Node, c)
		}
		for _, o := range src.Output {
			c := proto.Clone(o).(*onnxpb.ValueInfoProto)
			c.Name = proto.String(re(o.GetName()))
			b.Output = append(b.Output, c)
		}
		return b
	}
	then, els := branch(wg, "with_past"), branch(ng, "no_cache")
	var outs []string
	for _, o := range g.Output {
		outs = append(outs, o.GetName())
	}
	g.Node = []*onnxpb.NodeProto{{
		OpType: proto.String("If"), Name: proto.String("optimum::if"), Input: []string{UseCacheBranch}, Output: outs,
		Attribute: []*onnxpb.AttributeProto{
			{Name: proto.String("then_branch"), Type: onnxpb.AttributeProto_GRAPH.Enum(), G: then},
			{Name: proto.String("else_branch"), Type: onnxpb.AttributeProto_GRAPH.Enum(), G: els},
		},
	}}
	g.ValueInfo = nil
	g.Input = append(g.Input, &onnxpb.ValueInfoProto{Name: proto.String(UseCacheBranch), Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
		TensorType: &onnxpb.TypeProto_Tensor{ElemType: proto.Int32(int32(onnxpb.TensorProto_BOOL)),
			Shape: &onnxpb.TensorShapeProto{Dim: []*onnxpb.TensorShapeProto_Dimension{{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: 1}}}}}}}})
	return &onnx.Model{Proto: mp, Dir: withPast.Dir}, nil
}

// EachBranch runs a pass written for plain graphs on a merged decoder: f sees each branch
// specialised into a plain graph (the with-past one first, cache = true) and the two results
// are merged again (Merge), so both branches are kept and the weights stay one copy. f must
// name what it adds and compute what it changes the same way in both branches — as passes that
// name their tensors after the weights they touch do; Merge refuses a weight that differs. A
// model that is not merged goes to f as it is (cache = true).
func EachBranch(m *onnx.Model, f func(branch *onnx.Model, cache bool) (*onnx.Model, error)) (*onnx.Model, error) {
	if !IsMerged(m) {
		return f(m, true)
	}
	var out [2]*onnx.Model
	for i, cache := range []bool{true, false} {
		b, err := Specialise(m, cache)
		if err != nil {
			return nil, err
		}
		if out[i], err = f(b, cache); err != nil {
			return nil, err
		}
	}
	// The no-cache result keeps the past inputs Specialise left declared; Merge takes the
	// with-past result's interface.
	mg, err := Merge(out[0], out[1])
	if err != nil {
		return nil, err
	}
	mg.Path = m.Path
	return mg, nil
}

// Branch returns the plain graph passes that only read a model should see: the with-past
// branch of a merged decoder, m itself otherwise.
func Branch(m *onnx.Model) (*onnx.Model, error) {
	if !IsMerged(m) {
		return m, nil
	}
	return Specialise(m, true)
}
