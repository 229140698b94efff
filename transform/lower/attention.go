package lower

import (
	"fmt"
	"math"

	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
)

// ints is an int64 [len(v)] constant.
func (e *emitter) ints(v ...int64) string {
	name := e.ix.UniqueName(fmt.Sprintf("%s/ints", e.prefix))
	e.consts = append(e.consts, onnx.Int64Tensor(name, []int64{int64(len(v))}, v))
	return name
}

// int0 is an int64 scalar constant.
func (e *emitter) int0(v int64) string {
	name := e.ix.UniqueName(fmt.Sprintf("%s/int", e.prefix))
	e.consts = append(e.consts, onnx.Int64Tensor(name, nil, []int64{v}))
	return name
}

func (e *emitter) slice(x string, start, end, axis int64) string {
	return e.op1("Slice", []string{x, e.ints(start), e.ints(end), e.ints(axis)})
}

func (e *emitter) unsqueeze(x string, axes ...int64) string {
	return e.op1("Unsqueeze", []string{x, e.ints(axes...)})
}

// attrSet reports whether an attribute is set to something other than its neutral value.
func attrSet(n *onnxpb.NodeProto, name string, neutral float64) bool {
	for _, a := range n.GetAttribute() {
		if a.GetName() != name {
			continue
		}
		switch a.GetType() {
		case onnxpb.AttributeProto_FLOAT:
			return float64(a.GetF()) != neutral
		case onnxpb.AttributeProto_INT:
			return float64(a.GetI()) != neutral
		}
		return true
	}
	return false
}

func input(n *onnxpb.NodeProto, i int) string {
	if i < len(n.GetInput()) {
		return n.GetInput()[i]
	}
	return ""
}

// rotary: com.microsoft RotaryEmbedding(input, position_ids, cos_cache, sin_cache) on a
// [batch, sequence, heads·head_size] input (num_heads set) with position ids [batch, sequence]
// and full rotation: each head's (2j, 2j+1) pairs (interleaved) or (j, j + half) halves are
// rotated by the cached cos/sin at the token's position.
func rotary(e *emitter, n *onnxpb.NodeProto) error {
	heads := attrI(n, "num_heads", 0)
	if heads <= 0 {
		return fmt.Errorf("only the 3-D form [batch, sequence, hidden] with num_heads is lowered")
	}
	for _, a := range []string{"is_packed_batching"} {
		if attrSet(n, a, 0) {
			return fmt.Errorf("attribute %s is not lowered", a)
		}
	}
	if attrSet(n, "scale", 1) {
		return fmt.Errorf("attribute scale ≠ 1 is not lowered")
	}
	x, pos, cosC, sinC := input(n, 0), input(n, 1), input(n, 2), input(n, 3)
	t := e.ix.Initializers[cosC]
	if t == nil || len(t.GetDims()) != 2 {
		return fmt.Errorf("cos_cache must be a [max_position, rotary_dim/2] initializer")
	}
	half := t.GetDims()[1]
	if rd := attrI(n, "rotary_embedding_dim", 0); rd != 0 && rd != 2*half {
		return fmt.Errorf("partial rotation (rotary_embedding_dim %d of %d) is not lowered", rd, 2*half)
	}
	xr := e.op1("Reshape", []string{x, e.ints(0, 0, heads, 2*half)}) // [B, S, N, H]
	cos := e.unsqueeze(e.op1("Gather", []string{cosC, pos}), 2)      // [B, S, 1, half]
	sin := e.unsqueeze(e.op1("Gather", []string{sinC, pos}), 2)
	var o string
	if attrI(n, "interleaved", 0) != 0 {
		xp := e.op1("Reshape", []string{xr, e.ints(0, 0, 0, half, 2)})
		x0, x1 := e.slice(xp, 0, 1, 4), e.slice(xp, 1, 2, 4)
		c, s := e.unsqueeze(cos, 4), e.unsqueeze(sin, 4)
		o0 := e.op1("Sub", []string{e.op1("Mul", []string{x0, c}), e.op1("Mul", []string{x1, s})})
		o1 := e.op1("Add", []string{e.op1("Mul", []string{x0, s}), e.op1("Mul", []string{x1, c})})
		o = e.op1("Concat", []string{o0, o1}, onnx.AttrInt("axis", 4))
	} else {
		x1, x2 := e.slice(xr, 0, half, 3), e.slice(xr, half, 2*half, 3)
		o0 := e.op1("Sub", []string{e.op1("Mul", []string{x1, cos}), e.op1("Mul", []string{x2, sin})})
		o1 := e.op1("Add", []string{e.op1("Mul", []string{x2, cos}), e.op1("Mul", []string{x1, sin})})
		o = e.op1("Concat", []string{o0, o1}, onnx.AttrInt("axis", 3))
	}
	e.op("Reshape", []string{o, e.op1("Shape", []string{x})}, []string{output(n, 0)})
	return nil
}

// heads reshapes [B, S, n·H] to [B, n, S, H].
func (e *emitter) heads(x string, n, h int64) string {
	r := e.op1("Reshape", []string{x, e.ints(0, 0, n, h)})
	return e.op1("Transpose", []string{r}, onnx.AttrInts("perm", 0, 2, 1, 3))
}

// attention writes softmax(q·kᵀ·scale, masked)·v for q [B, N, S, H], k and v [B, KV, T, H]
// (KV divides N: each group of N/KV query heads reads one kv head) as [B, S, N·H] into out.
// allowed is a bool mask broadcasting to [B, N, S, T].
func (e *emitter) attention(q, k, v string, n, kv, h int64, scale float32, allowed, out string) {
	if kv != n {
		rep := n / kv
		for _, p := range []*string{&k, &v} {
			u := e.unsqueeze(*p, 2)
			x := e.op1("Expand", []string{u, e.ints(1, 1, rep, 1, 1)})
			*p = e.op1("Reshape", []string{x, e.ints(0, n, -1, h)})
		}
	}
	kt := e.op1("Transpose", []string{k}, onnx.AttrInts("perm", 0, 1, 3, 2))
	s := e.op1("Mul", []string{e.op1("MatMul", []string{q, kt}), e.scalar(scale)})
	if allowed != "" {
		s = e.op1("Where", []string{allowed, s, e.scalar(-1e9)})
	}
	p := e.op1("Softmax", []string{s}, onnx.AttrInt("axis", -1))
	o := e.op1("Transpose", []string{e.op1("MatMul", []string{p, v})}, onnx.AttrInts("perm", 0, 2, 1, 3))
	e.op("Reshape", []string{o, e.ints(0, 0, n*h)}, []string{out})
}

// causal is the bool [S, T] mask of queries at positions T−S…T−1 over keys 0…T−1.
func (e *emitter) causal(q, k string) string {
	s := e.op1("Gather", []string{e.op1("Shape", []string{q}), e.int0(2)}, onnx.AttrInt("axis", 0))
	t := e.op1("Gather", []string{e.op1("Shape", []string{k}), e.int0(2)}, onnx.AttrInt("axis", 0))
	qpos := e.unsqueeze(e.op1("Range", []string{e.op1("Sub", []string{t, s}), t, e.int0(1)}), 1)
	kpos := e.unsqueeze(e.op1("Range", []string{e.int0(0), t, e.int0(1)}), 0)
	return e.op1("LessOrEqual", []string{kpos, qpos})
}

// keyPositions is Range(0, T) for k [B, KV, T, H], shaped [1, 1, 1, T].
func (e *emitter) keyPositions(k string) string {
	t := e.op1("Gather", []string{e.op1("Shape", []string{k}), e.int0(2)}, onnx.AttrInt("axis", 0))
	return e.unsqueeze(e.op1("Range", []string{e.int0(0), t, e.int0(1)}), 0, 1, 2)
}

// withPast concatenates a past [B, KV, P, H] before x along the sequence (x when absent) and
// writes the result to the present output name when there is one.
func (e *emitter) withPast(past, x, present string) string {
	if past == "" {
		if present != "" {
			return e.op("Identity", []string{x}, []string{present})[0]
		}
		return x
	}
	return e.op("Concat", []string{past, x}, []string{present}, onnx.AttrInt("axis", 2))[0]
}

func headScale(n *onnxpb.NodeProto, h int64) float32 {
	if s := attrF(n, "scale", 0); s != 0 {
		return s
	}
	return float32(1 / math.Sqrt(float64(h)))
}

// gqa: com.microsoft GroupQueryAttention(query, key, value, past_key, past_value, seqlens_k,
// total_sequence_length) → output, present_key, present_value with separate q, k, v, causal
// attention over past + new, keys after seqlens_k[b] masked, no rotary inside.
func gqa(e *emitter, n *onnxpb.NodeProto) error {
	for _, a := range []struct {
		name    string
		neutral float64
	}{{"do_rotary", 0}, {"softcap", 0}, {"local_window_size", -1}, {"smooth_softmax", 0}, {"qk_output", 0}} {
		if attrSet(n, a.name, a.neutral) {
			return fmt.Errorf("attribute %s is not lowered", a.name)
		}
	}
	if input(n, 1) == "" {
		return fmt.Errorf("packed q, k, v (no key input) is not lowered")
	}
	if input(n, 9) != "" || input(n, 10) != "" {
		return fmt.Errorf("position ids or attention bias inputs are not lowered")
	}
	heads, kvHeads := attrI(n, "num_heads", 0), attrI(n, "kv_num_heads", 0)
	if heads <= 0 || kvHeads <= 0 || heads%kvHeads != 0 {
		return fmt.Errorf("num_heads %d, kv_num_heads %d", heads, kvHeads)
	}
	h, err := e.headSizeOr(n, input(n, 3), heads)
	if err != nil {
		return err
	}
	q := e.heads(input(n, 0), heads, h)
	k := e.withPast(input(n, 3), e.heads(input(n, 1), kvHeads, h), output(n, 1))
	v := e.withPast(input(n, 4), e.heads(input(n, 2), kvHeads, h), output(n, 2))
	allowed := e.causal(q, k)
	if sl := input(n, 5); sl != "" {
		// key j of row b is real when j ≤ seqlens_k[b] (the row's total length − 1).
		last := e.op1("Reshape", []string{e.op1("Cast", []string{sl}, onnx.AttrInt("to", int64(onnxpb.TensorProto_INT64))), e.ints(-1, 1, 1, 1)})
		valid := e.op1("LessOrEqual", []string{e.keyPositions(k), last})
		allowed = e.op1("And", []string{allowed, valid})
	}
	e.attention(q, k, v, heads, kvHeads, h, headScale(n, h), allowed, output(n, 0))
	return nil
}

// headSizeOr reads the head size from the past input's static last dim, else the query's
// static width (value info, or the weight of the projection that makes it) / heads.
func (e *emitter) headSizeOr(n *onnxpb.NodeProto, past string, heads int64) (int64, error) {
	if vi, ok := e.ix.Inputs[past]; ok {
		if d := vi.GetType().GetTensorType().GetShape().GetDim(); len(d) == 4 && d[3].GetDimValue() > 0 {
			return d[3].GetDimValue(), nil
		}
	}
	if d := e.staticLastDim(input(n, 0)); d > 0 && d%heads == 0 {
		return d / heads, nil
	}
	if w := e.weightWidth(input(n, 0)); w > 0 && w%heads == 0 {
		return w / heads, nil
	}
	return 0, fmt.Errorf("the head size is not known statically (no static past head dim or query width)")
}

// staticLastDim is the static last dim of a value from the graph's value info, or 0.
func (e *emitter) staticLastDim(name string) int64 {
	for _, vs := range [][]*onnxpb.ValueInfoProto{e.ix.Graph.GetValueInfo(), e.ix.Graph.GetInput()} {
		for _, v := range vs {
			if v.GetName() != name {
				continue
			}
			d := v.GetType().GetTensorType().GetShape().GetDim()
			if len(d) > 0 && d[len(d)-1].GetDimValue() > 0 {
				return d[len(d)-1].GetDimValue()
			}
		}
	}
	return 0
}

// weightWidth follows name back through rotary embeddings and shape-keeping operators to a
// MatMul with a constant rank-2 weight and returns its output width, or 0.
func (e *emitter) weightWidth(name string) int64 {
	for hop := 0; hop < 8; hop++ {
		p := e.ix.Producer[name]
		if p == nil || len(p.GetInput()) == 0 {
			return 0
		}
		if p.GetOpType() == "MatMul" && len(p.GetInput()) == 2 {
			if w := e.ix.Initializers[p.GetInput()[1]]; w != nil && len(w.GetDims()) == 2 {
				return w.GetDims()[1]
			}
			return 0
		}
		name = p.GetInput()[0]
	}
	return 0
}

// mha: com.microsoft MultiHeadAttention(query, key, value, bias, key_padding_mask,
// attention_bias, past_key, past_value) → output, present_key, present_value with 3-D q, k, v,
// no bias, an optional [batch, total] key padding mask, causal when unidirectional.
func mha(e *emitter, n *onnxpb.NodeProto) error {
	if input(n, 3) != "" || input(n, 5) != "" {
		return fmt.Errorf("bias and attention_bias inputs are not lowered")
	}
	if input(n, 1) == "" || input(n, 2) == "" {
		return fmt.Errorf("packed q, k, v is not lowered")
	}
	heads := attrI(n, "num_heads", 0)
	if heads <= 0 {
		return fmt.Errorf("num_heads %d", heads)
	}
	h, err := e.headSizeOr(n, input(n, 6), heads)
	if err != nil {
		return err
	}
	q := e.heads(input(n, 0), heads, h)
	k := e.withPast(input(n, 6), e.heads(input(n, 1), heads, h), output(n, 1))
	v := e.withPast(input(n, 7), e.heads(input(n, 2), heads, h), output(n, 2))
	allowed := ""
	if attrI(n, "unidirectional", 0) != 0 {
		allowed = e.causal(q, k)
	}
	if m := input(n, 4); m != "" {
		valid := e.op1("Cast", []string{e.unsqueeze(m, 1, 2)}, onnx.AttrInt("to", int64(onnxpb.TensorProto_BOOL)))
		if allowed == "" {
			allowed = valid
		} else {
			allowed = e.op1("And", []string{allowed, valid})
		}
	}
	e.attention(q, k, v, heads, heads, h, headScale(n, h), allowed, output(n, 0))
	return nil
}
