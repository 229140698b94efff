package onnx

import (
	"errors"
	"fmt"

	"github.com/shears-ml/shears/onnx/onnxpb"
)

// Validate checks the structural rules every pass relies on and returns all problems found,
// joined: an ai.onnx opset import; non-empty op types; unique output names; every node input
// produced (graph input, initializer, node output, or "" for an omitted optional input),
// subgraphs included; no cycles; initializer byte lengths matching dims; graph outputs produced.
// It reads no external data.
func Validate(m *Model) error {
	if m == nil || m.Proto == nil {
		return fmt.Errorf("onnx: validate: no model")
	}
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf("onnx: validate: "+format, a...)) }
	if _, ok := m.Opset(""); !ok {
		add("model imports no ai.onnx opset")
	}
	g := m.Proto.GetGraph()
	if g == nil {
		add("model has no graph")
		return errors.Join(errs...)
	}
	validateGraph(g, nil, "", add)
	return errors.Join(errs...)
}

// validateGraph checks g; outer holds the names visible from enclosing graphs, where is a
// prefix naming the subgraph in messages.
func validateGraph(g *onnxpb.GraphProto, outer map[string]bool, where string, add func(string, ...any)) {
	defined := map[string]bool{}
	for k := range outer {
		defined[k] = true
	}
	local := map[string]string{} // name → what defines it in this graph
	define := func(name, what string) {
		if prev, ok := local[name]; ok {
			add("%s%s: %q is already defined by %s", where, what, name, prev)
		}
		local[name] = what
		defined[name] = true
	}
	for _, v := range g.GetInput() {
		define(v.GetName(), "graph input")
	}
	for _, t := range g.GetInitializer() {
		if _, isInput := local[t.GetName()]; isInput && local[t.GetName()] == "graph input" {
			defined[t.GetName()] = true // IR < 4 style: initializers listed as inputs too
		} else {
			define(t.GetName(), "initializer")
		}
		if err := checkTensorLength(t); err != nil {
			add("%sinitializer: %v", where, err)
		}
	}
	for _, n := range g.GetNode() {
		for _, o := range n.GetOutput() {
			if o != "" {
				define(o, "node "+nodeLabel(n))
			}
		}
	}
	if _, err := NewIndex(g).TopoOrder(); err != nil {
		add("%s%v", where, err)
	}
	for _, n := range g.GetNode() {
		if n.GetOpType() == "" {
			add("%snode %s: empty op type", where, nodeLabel(n))
		}
		for _, in := range n.GetInput() {
			if in != "" && !defined[in] {
				add("%snode %s: input %q is not produced by any node, graph input or initializer", where, nodeLabel(n), in)
			}
		}
		for _, a := range n.GetAttribute() {
			if t := a.GetT(); t != nil {
				if err := checkTensorLength(t); err != nil {
					add("%snode %s: attribute %q: %v", where, nodeLabel(n), a.GetName(), err)
				}
			}
			sub := fmt.Sprintf("%ssubgraph %q of node %s: ", where, a.GetName(), nodeLabel(n))
			if a.GetG() != nil {
				validateGraph(a.GetG(), defined, sub, add)
			}
			for _, sg := range a.GetGraphs() {
				validateGraph(sg, defined, sub, add)
			}
		}
	}
	for _, v := range g.GetOutput() {
		if !defined[v.GetName()] {
			add("%sgraph output %q is not produced by any node, graph input or initializer", where, v.GetName())
		}
	}
}

// checkTensorLength checks that a tensor's stored data fits its dims and type, without reading
// external data (whose declared length is checked instead).
func checkTensorLength(t *onnxpb.TensorProto) error {
	if DataType(t) == onnxpb.TensorProto_STRING {
		if n := NumElements(t.GetDims()); n != int64(len(t.GetStringData())) {
			return fmt.Errorf("tensor %q: %d strings for dims %v", t.GetName(), len(t.GetStringData()), t.GetDims())
		}
		return nil
	}
	want, err := tensorByteLen(t)
	if err != nil {
		return err
	}
	if isExternal(t) {
		r, err := parseExternal(t)
		if err != nil {
			return err
		}
		if r.length >= 0 && r.length != want {
			return fmt.Errorf("tensor %q: external data length %d does not match dims %v of %s (%d bytes)",
				t.GetName(), r.length, t.GetDims(), DataType(t), want)
		}
		return nil
	}
	_, err = inlineRaw(t, want)
	return err
}
