package onnx

import "github.com/shears-ml/shears/onnx/onnxpb"

// FindNode returns the first node of g, or of the subgraphs its nodes hold (an If's branches,
// as in optimum's merged decoder; Loop and Scan bodies), for which match is true, depth first;
// nil when there is none. For questions about what a model contains anywhere, where a walk of
// the main graph alone would miss a merged decoder's nodes.
func FindNode(g *onnxpb.GraphProto, match func(*onnxpb.NodeProto) bool) *onnxpb.NodeProto {
	for _, n := range g.GetNode() {
		if match(n) {
			return n
		}
		for _, a := range n.GetAttribute() {
			if sg := a.GetG(); sg != nil {
				if f := FindNode(sg, match); f != nil {
					return f
				}
			}
			for _, sg := range a.GetGraphs() {
				if f := FindNode(sg, match); f != nil {
					return f
				}
			}
		}
	}
	return nil
}
