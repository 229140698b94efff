package layers

import (
	"github.com/shears-ml/shears/lm"
	"github.com/shears-ml/shears/onnx/onnxpb"
)

// Embedding is a Gather node reading a rank-2 float table from an initializer.
type Embedding struct {
	Node, Table string
}

// Embeddings lists the graph's embedding lookups in graph order: every Gather of a rank-2
// initializer, except the RoPE caches a with-past graph gathers by position_ids (narrower than
// the token embedding): those are buffers, not parameters. A learned position embedding as wide
// as the token embedding (GPT-2's wpe) is an embedding.
func Embeddings(g *onnxpb.GraphProto) []Embedding {
	inits := map[string]*onnxpb.TensorProto{}
	for _, t := range g.GetInitializer() {
		inits[t.GetName()] = t
	}
	table := func(n *onnxpb.NodeProto) *onnxpb.TensorProto {
		if n.GetOpType() != "Gather" || n.GetDomain() != "" || len(n.GetInput()) < 2 {
			return nil
		}
		if t := inits[n.GetInput()[0]]; t != nil && len(t.GetDims()) == 2 {
			return t
		}
		return nil
	}
	width := int64(-1)
	for _, n := range g.GetNode() {
		if t := table(n); t != nil && n.GetInput()[1] == lm.InputIDs {
			width = t.GetDims()[1]
		}
	}
	var out []Embedding
	for _, n := range g.GetNode() {
		t := table(n)
		if t == nil || (n.GetInput()[1] == lm.PositionIDs && width > 0 && t.GetDims()[1] != width) {
			continue
		}
		out = append(out, Embedding{Node: n.GetName(), Table: t.GetName()})
	}
	return out
}
