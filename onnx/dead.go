package onnx

import (
	"slices"

	"github.com/shears-ml/shears/onnx/onnxpb"
)

// RemoveDead deletes from g the nodes none of whose outputs reach a graph output, then the
// initializers and value_info nothing reads or produces any more, and returns the names of
// the graph inputs no node reads (the caller decides whether they stay: they are interface).
// Subgraphs count their outer-scope reads as their node's.
func RemoveDead(g *onnxpb.GraphProto) []string {
	ix := NewIndex(g)
	live := map[string]bool{}
	var stack []string
	for _, o := range g.GetOutput() {
		stack = append(stack, o.GetName())
	}
	keep := map[*onnxpb.NodeProto]bool{}
	for len(stack) > 0 {
		t := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if live[t] {
			continue
		}
		live[t] = true
		p := ix.Producer[t]
		if p == nil || keep[p] {
			continue
		}
		keep[p] = true
		stack = append(stack, nodeInputs(p)...)
	}
	g.Node = slices.DeleteFunc(g.Node, func(n *onnxpb.NodeProto) bool { return !keep[n] })
	g.Initializer = slices.DeleteFunc(g.Initializer, func(t *onnxpb.TensorProto) bool { return !live[t.GetName()] })
	g.ValueInfo = slices.DeleteFunc(g.ValueInfo, func(v *onnxpb.ValueInfoProto) bool { return !live[v.GetName()] })
	var unread []string
	for _, in := range g.GetInput() {
		if !live[in.GetName()] {
			unread = append(unread, in.GetName())
		}
	}
	return unread
}

// SubgraphNode returns the first node of g with a subgraph attribute (If, Loop, Scan), or nil:
// passes that rewrite nodes of the main graph only check it to refuse what they would miss.
func SubgraphNode(g *onnxpb.GraphProto) *onnxpb.NodeProto {
	for _, n := range g.GetNode() {
		for _, a := range n.GetAttribute() {
			if a.GetG() != nil || len(a.GetGraphs()) > 0 {
				return n
			}
		}
	}
	return nil
}
