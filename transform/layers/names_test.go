package layers

import (
	"math"
	"testing"

	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
)

func TestLabelByNameFamilies(t *testing.T) {
	cases := []struct {
		names []string
		block int
		role  string
	}{
		{[]string{"/model/layers.3/self_attn/q_proj/MatMul"}, 3, "q"},
		{[]string{"/layers.4/w2/MatMul"}, 4, "down"},
		{[]string{"/layers.0/w1/MatMul"}, 0, "gate"},
		{[]string{"/transformer/h.2/attn/c_attn/Gemm"}, 2, "qkv"},
		{[]string{"/transformer/h.2/attn/c_proj/Gemm"}, 2, "o"},
		{[]string{"/transformer/h.11/mlp/c_proj/Gemm"}, 11, "down"},
		{[]string{"/model/decoder/layers.5/fc1/MatMul"}, 5, "up"},
		{[]string{"/model/layers.1/self_attn/qkv_proj/MatMul"}, 1, "qkv"},
		{[]string{"/gpt_neox/layers.7/attention/query_key_value/MatMul"}, 7, "qkv"},
		{[]string{"/lm_head/MatMul"}, -1, "lm_head"},
	}
	for _, c := range cases {
		b, r, _, ok := labelByName(c.names...)
		if !ok || b != c.block || r != c.role {
			t.Errorf("%v: got block %d role %q ok=%v, want %d %q", c.names, b, r, ok, c.block, c.role)
		}
	}
}

func TestAdapterFactorsAreNotLinears(t *testing.T) {
	for _, n := range []string{"model.layers.0.self_attn.q_proj.lora_A", "base_model.model.layers.0.mlp.up_proj.lora_B.weight"} {
		if !isAdapterWeight(n) {
			t.Errorf("%s not recognised as an adapter factor", n)
		}
	}
	if isAdapterWeight("model.layers.0.self_attn.q_proj.weight") {
		t.Error("a base weight taken for an adapter factor")
	}
}

func TestCountZerosAllFloatTypes(t *testing.T) {
	vals := []float32{0, 1, float32(math.Copysign(0, -1)), -2, 0, 3.5}
	for _, dt := range []onnxpb.TensorProto_DataType{onnxpb.TensorProto_FLOAT, onnxpb.TensorProto_FLOAT16, onnxpb.TensorProto_BFLOAT16} {
		w := onnx.NewTensor("w", dt, []int64{2, 3}, make([]byte, 6*onnx.ElemSize(dt)))
		if err := onnx.SetFloat32s(w, vals); err != nil {
			t.Fatal(err)
		}
		m := &onnx.Model{Proto: &onnxpb.ModelProto{Graph: &onnxpb.GraphProto{Initializer: []*onnxpb.TensorProto{w}}}}
		z, n, err := CountZeros(m, Linear{Node: "n", Weight: "w"})
		if err != nil || z != 3 || n != 6 {
			t.Errorf("%s: %d zeros of %d (%v), want 3 of 6", dt, z, n, err)
		}
	}
}
