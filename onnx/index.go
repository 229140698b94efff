package onnx

import (
	"container/heap"
	"fmt"
	"strconv"

	"github.com/shears-ml/shears/onnx/onnxpb"
)

// Index is a lookup view of one graph: who produces and who consumes each tensor, the
// initializers, graph inputs and outputs by name. It is a snapshot: rebuild it (NewIndex) after
// editing the graph, except for names reserved through UniqueName.
type Index struct {
	Graph        *onnxpb.GraphProto
	Producer     map[string]*onnxpb.NodeProto   // tensor name → the node that outputs it
	Consumers    map[string][]*onnxpb.NodeProto // tensor name → nodes reading it, in graph order
	Initializers map[string]*onnxpb.TensorProto
	Inputs       map[string]*onnxpb.ValueInfoProto // graph inputs
	Outputs      map[string]*onnxpb.ValueInfoProto // graph outputs
	Nodes        map[string]*onnxpb.NodeProto      // by node name (unnamed nodes are absent)

	used map[string]bool // every tensor and node name, plus names handed out by UniqueName
}

// NewIndex indexes g. Subgraph tensors referring to outer names count as consumers by the node
// that owns the subgraph.
func NewIndex(g *onnxpb.GraphProto) *Index {
	ix := &Index{
		Graph:        g,
		Producer:     map[string]*onnxpb.NodeProto{},
		Consumers:    map[string][]*onnxpb.NodeProto{},
		Initializers: map[string]*onnxpb.TensorProto{},
		Inputs:       map[string]*onnxpb.ValueInfoProto{},
		Outputs:      map[string]*onnxpb.ValueInfoProto{},
		Nodes:        map[string]*onnxpb.NodeProto{},
		used:         map[string]bool{},
	}
	for _, t := range g.GetInitializer() {
		ix.Initializers[t.GetName()] = t
		ix.used[t.GetName()] = true
	}
	for _, v := range g.GetInput() {
		ix.Inputs[v.GetName()] = v
		ix.used[v.GetName()] = true
	}
	for _, v := range g.GetOutput() {
		ix.Outputs[v.GetName()] = v
		ix.used[v.GetName()] = true
	}
	for _, v := range g.GetValueInfo() {
		ix.used[v.GetName()] = true
	}
	for _, n := range g.GetNode() {
		if n.GetName() != "" {
			if _, dup := ix.Nodes[n.GetName()]; !dup {
				ix.Nodes[n.GetName()] = n
			}
			ix.used[n.GetName()] = true
		}
		for _, o := range n.GetOutput() {
			if o == "" {
				continue
			}
			if _, dup := ix.Producer[o]; !dup {
				ix.Producer[o] = n
			}
			ix.used[o] = true
		}
		for _, in := range nodeInputs(n) {
			ix.Consumers[in] = append(ix.Consumers[in], n)
			ix.used[in] = true
		}
	}
	return ix
}

// nodeInputs lists the distinct non-empty names n reads: its inputs and the outer-scope names
// its subgraphs use.
func nodeInputs(n *onnxpb.NodeProto) []string {
	var out []string
	seen := map[string]bool{}
	add := func(s string) {
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	for _, in := range n.GetInput() {
		add(in)
	}
	for _, a := range n.GetAttribute() {
		if a.GetG() != nil {
			for _, s := range outerNames(a.GetG()) {
				add(s)
			}
		}
		for _, sg := range a.GetGraphs() {
			for _, s := range outerNames(sg) {
				add(s)
			}
		}
	}
	return out
}

// outerNames lists the names g's nodes read that g itself does not define.
func outerNames(g *onnxpb.GraphProto) []string {
	def := map[string]bool{}
	for _, t := range g.GetInitializer() {
		def[t.GetName()] = true
	}
	for _, v := range g.GetInput() {
		def[v.GetName()] = true
	}
	for _, n := range g.GetNode() {
		for _, o := range n.GetOutput() {
			def[o] = true
		}
	}
	var out []string
	for _, n := range g.GetNode() {
		for _, in := range nodeInputs(n) {
			if !def[in] {
				out = append(out, in)
			}
		}
	}
	return out
}

// TopoOrder returns the nodes in a topological order that keeps the file order wherever the
// dependencies allow (a graph already sorted comes back unchanged). A cycle is an error naming
// a node on it.
func (ix *Index) TopoOrder() ([]*onnxpb.NodeProto, error) {
	nodes := ix.Graph.GetNode()
	pos := make(map[*onnxpb.NodeProto]int, len(nodes))
	for i, n := range nodes {
		pos[n] = i
	}
	indeg := make([]int, len(nodes))
	succ := make([][]int, len(nodes))
	for i, n := range nodes {
		for _, in := range nodeInputs(n) {
			if p, ok := ix.Producer[in]; ok {
				j := pos[p]
				succ[j] = append(succ[j], i)
				indeg[i]++
			}
		}
	}
	ready := &intHeap{}
	for i := range nodes {
		if indeg[i] == 0 {
			heap.Push(ready, i)
		}
	}
	order := make([]*onnxpb.NodeProto, 0, len(nodes))
	for ready.Len() > 0 {
		i := heap.Pop(ready).(int)
		order = append(order, nodes[i])
		for _, j := range succ[i] {
			if indeg[j]--; indeg[j] == 0 {
				heap.Push(ready, j)
			}
		}
	}
	if len(order) == len(nodes) {
		return order, nil
	}
	// Walk producers among the unsorted nodes until one repeats: that node is on a cycle.
	var start int
	for i := range nodes {
		if indeg[i] > 0 {
			start = i
			break
		}
	}
	seen := map[int]bool{}
	cur := start
	for !seen[cur] {
		seen[cur] = true
		for _, in := range nodeInputs(nodes[cur]) {
			if p, ok := ix.Producer[in]; ok && indeg[pos[p]] > 0 {
				cur = pos[p]
				break
			}
		}
	}
	return nil, fmt.Errorf("onnx: graph has a cycle through node %s", nodeLabel(nodes[cur]))
}

type intHeap []int

func (h intHeap) Len() int           { return len(h) }
func (h intHeap) Less(i, j int) bool { return h[i] < h[j] }
func (h intHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *intHeap) Push(x any)        { *h = append(*h, x.(int)) }
func (h *intHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// nodeLabel names a node for error messages: "name" (OpType).
func nodeLabel(n *onnxpb.NodeProto) string {
	return fmt.Sprintf("%q (%s)", n.GetName(), n.GetOpType())
}

// UniqueName reserves and returns base, or base_N with the smallest N ≥ 1 that no tensor, node
// or earlier UniqueName result uses.
func (ix *Index) UniqueName(base string) string {
	name := base
	for i := 1; ix.used[name]; i++ {
		name = base + "_" + strconv.Itoa(i)
	}
	ix.used[name] = true
	return name
}

// ConstantValue returns the constant tensor named name: an initializer, or the value of the
// Constant node producing it (value, or value_float(s)/value_int(s) turned into a tensor).
// It returns nil for anything computed at run time.
func (ix *Index) ConstantValue(name string) *onnxpb.TensorProto {
	if t, ok := ix.Initializers[name]; ok {
		return t
	}
	n, ok := ix.Producer[name]
	if !ok || n.GetOpType() != "Constant" || (n.GetDomain() != "" && n.GetDomain() != "ai.onnx") {
		return nil
	}
	return constantNodeValue(n)
}

// constantNodeValue is the tensor a Constant node outputs, or nil for forms not supported here
// (sparse_value, strings).
func constantNodeValue(n *onnxpb.NodeProto) *onnxpb.TensorProto {
	name := ""
	if len(n.GetOutput()) > 0 {
		name = n.GetOutput()[0]
	}
	for _, a := range n.GetAttribute() {
		switch a.GetName() {
		case "value":
			return a.GetT()
		case "value_float":
			return Float32Tensor(name, nil, []float32{a.GetF()})
		case "value_floats":
			return Float32Tensor(name, []int64{int64(len(a.GetFloats()))}, a.GetFloats())
		case "value_int":
			return Int64Tensor(name, nil, []int64{a.GetI()})
		case "value_ints":
			return Int64Tensor(name, []int64{int64(len(a.GetInts()))}, a.GetInts())
		}
	}
	return nil
}
