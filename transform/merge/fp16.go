package merge

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"google.golang.org/protobuf/proto"
)

// ToFloat16 returns a copy of m whose float32 matrices (initializers of rank ≥ 2: the linear
// weights, embeddings, tables) are stored as float16, each followed by a Cast back to float32
// that takes over its name. The computation, the inputs and the outputs stay float32, so the
// file halves while onnxruntime's CPU provider, which lacks float16 kernels for much of a
// transformer, still runs it (it folds the Casts at load). Vectors and scalars (norm weights,
// epsilons) stay float32: they are tiny and an epsilon may not survive float16; so do tensors
// with a value beyond float16's range (±65504), such as a causal mask of −1e9, which would turn
// into −inf and NaN. Exact zeros stay zeros, so sparsity is kept. m is not modified.
func ToFloat16(m *onnx.Model) (*onnx.Model, error) {
	if m == nil || m.Graph() == nil {
		return nil, fmt.Errorf("merge: fp16: no model graph")
	}
	out := &onnx.Model{Proto: proto.Clone(m.Proto).(*onnxpb.ModelProto), Dir: m.Dir, Path: m.Path}
	g := out.Graph()
	ix := onnx.NewIndex(g)
	var casts []*onnxpb.NodeProto
	for i, t := range g.Initializer {
		if onnx.DataType(t) != onnxpb.TensorProto_FLOAT || len(t.GetDims()) < 2 || ix.Inputs[t.GetName()] != nil || ix.Outputs[t.GetName()] != nil {
			continue
		}
		v, err := out.Float32s(t)
		if err != nil {
			return nil, fmt.Errorf("merge: fp16: %w", err)
		}
		if !fitsFloat16(v) {
			continue
		}
		raw := make([]byte, 2*len(v))
		for k, x := range v {
			binary.LittleEndian.PutUint16(raw[2*k:], onnx.Float32ToFloat16(x))
		}
		orig := t.GetName()
		half := ix.UniqueName(orig + "_fp16")
		g.Initializer[i] = onnx.NewTensor(half, onnxpb.TensorProto_FLOAT16, t.GetDims(), raw)
		casts = append(casts, &onnxpb.NodeProto{
			Name: proto.String(ix.UniqueName("/fp16/" + orig + "/Cast")), OpType: proto.String("Cast"),
			Input: []string{half}, Output: []string{orig},
			Attribute: []*onnxpb.AttributeProto{onnx.AttrInt("to", int64(onnxpb.TensorProto_FLOAT))},
		})
	}
	g.Node = append(casts, g.Node...)
	return out, nil
}

// fitsFloat16 reports whether every value is finite and within float16's range.
func fitsFloat16(v []float32) bool {
	for _, x := range v {
		if !(math.Abs(float64(x)) <= 65504) {
			return false
		}
	}
	return true
}
