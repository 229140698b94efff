package onnx

import (
	"fmt"

	"github.com/shears-ml/shears/onnx/onnxpb"
)

// MicrosoftDomain is onnxruntime's contrib operator domain.
const MicrosoftDomain = "com.microsoft"

// contribShapes are the shape functions of onnxruntime's fused transformer operators, as
// onnxruntime's transformer optimizer and GenAI model builder write them, so graphs using them
// can be planned (calibration stages, inspection) as they are. Each returns the outputs' types
// from the inputs' (nil where an input is absent) and the node's attributes.
var contribShapes = map[string]func(n *onnxpb.NodeProto, ins []*TensorType) ([]TensorType, error){
	"SimplifiedLayerNormalization":     normShapes,
	"SkipSimplifiedLayerNormalization": skipNormShapes,
	"SkipLayerNormalization":           skipNormShapes,
	"RotaryEmbedding":                  sameAsFirst,
	"GroupQueryAttention":              gqaShapes,
	"MultiHeadAttention":               mhaShapes,
	"MatMulNBits":                      matMulNBitsShapes,
}

// contribShape reports whether n is a fused operator with a shape function here
// (SimplifiedLayerNormalization is registered by onnxruntime in the default domain too).
func contribShape(n *onnxpb.NodeProto) func(*onnxpb.NodeProto, []*TensorType) ([]TensorType, error) {
	d := n.GetDomain()
	if d == MicrosoftDomain || ((d == "" || d == "ai.onnx") && n.GetOpType() == "SimplifiedLayerNormalization") {
		return contribShapes[n.GetOpType()]
	}
	return nil
}

func sameAsFirst(_ *onnxpb.NodeProto, ins []*TensorType) ([]TensorType, error) {
	if err := need(ins, 1, "fused op"); err != nil {
		return nil, err
	}
	return []TensorType{*ins[0]}, nil
}

// statShape is x's shape with the normalized axes (axis…end) set to 1: mean and inv_std_var.
func statShape(x []int64, axis int64) []int64 {
	if x == nil {
		return nil
	}
	if axis < 0 {
		axis += int64(len(x))
	}
	out := append([]int64{}, x...)
	for i := range out {
		if int64(i) >= axis {
			out[i] = 1
		}
	}
	return out
}

// normShapes: Y like X, then inv_std_var (float) over the normalized axes.
func normShapes(n *onnxpb.NodeProto, ins []*TensorType) ([]TensorType, error) {
	if err := need(ins, 2, n.GetOpType()); err != nil {
		return nil, err
	}
	st := TensorType{Elem: onnxpb.TensorProto_FLOAT, Shape: statShape(ins[0].Shape, attrInt(n, "axis", -1))}
	return []TensorType{*ins[0], st}, nil
}

// skipNormShapes: output, mean, inv_std_var, input + skip (+ bias).
func skipNormShapes(n *onnxpb.NodeProto, ins []*TensorType) ([]TensorType, error) {
	if err := need(ins, 3, n.GetOpType()); err != nil {
		return nil, err
	}
	st := TensorType{Elem: onnxpb.TensorProto_FLOAT, Shape: statShape(ins[0].Shape, -1)}
	return []TensorType{*ins[0], st, st, *ins[0]}, nil
}

// attention output [B, S, heads·head_size] and present [B, kv_heads, past + S, head_size].
func attentionShapes(n *onnxpb.NodeProto, ins []*TensorType, heads, kvHeads int64) ([]TensorType, error) {
	q := ins[0]
	if len(q.Shape) != 3 {
		return nil, fmt.Errorf("%s: query of rank %d, want [batch, sequence, hidden]", n.GetOpType(), len(q.Shape))
	}
	if heads <= 0 || kvHeads <= 0 {
		return nil, fmt.Errorf("%s: num_heads %d, kv heads %d", n.GetOpType(), heads, kvHeads)
	}
	b, s, d := q.Shape[0], q.Shape[1], q.Shape[2]
	packed := len(ins) < 2 || ins[1] == nil // GroupQueryAttention: q, k and v packed in one input
	headSize := int64(-1)
	if d > 0 {
		if packed {
			headSize = d / (heads + 2*kvHeads)
		} else {
			headSize = d / heads
		}
	}
	hidden := int64(-1)
	if headSize > 0 {
		hidden = heads * headSize
	}
	total := int64(-1)
	past := pastInput(n, ins)
	if past != nil && len(past.Shape) == 4 {
		if past.Shape[3] > 0 {
			headSize = past.Shape[3]
		}
		if past.Shape[2] >= 0 && s >= 0 {
			total = past.Shape[2] + s
		}
	} else if past == nil {
		total = s
	}
	present := TensorType{Elem: q.Elem, Shape: []int64{b, kvHeads, total, headSize}}
	return []TensorType{{Elem: q.Elem, Shape: []int64{b, s, hidden}}, present, present}, nil
}

// pastInput is the past key of an attention node (GQA input 3, MHA input 6), nil when absent.
func pastInput(n *onnxpb.NodeProto, ins []*TensorType) *TensorType {
	i := 3
	if n.GetOpType() == "MultiHeadAttention" {
		i = 6
	}
	if i < len(ins) {
		return ins[i]
	}
	return nil
}

func gqaShapes(n *onnxpb.NodeProto, ins []*TensorType) ([]TensorType, error) {
	if err := need(ins, 1, n.GetOpType()); err != nil {
		return nil, err
	}
	return attentionShapes(n, ins, attrInt(n, "num_heads", 0), attrInt(n, "kv_num_heads", 0))
}

func mhaShapes(n *onnxpb.NodeProto, ins []*TensorType) ([]TensorType, error) {
	if err := need(ins, 1, n.GetOpType()); err != nil {
		return nil, err
	}
	h := attrInt(n, "num_heads", 0)
	return attentionShapes(n, ins, h, h)
}

// matMulNBitsShapes: Y = A · dequant(B)ᵀ keeps A's leading dims and has N outputs.
func matMulNBitsShapes(n *onnxpb.NodeProto, ins []*TensorType) ([]TensorType, error) {
	if err := need(ins, 1, n.GetOpType()); err != nil {
		return nil, err
	}
	var sh []int64
	if ins[0].Shape != nil {
		sh = append(append(sh, ins[0].Shape[:max(0, len(ins[0].Shape)-1)]...), attrInt(n, "N", -1))
	}
	return []TensorType{{Elem: ins[0].Elem, Shape: sh}}, nil
}
