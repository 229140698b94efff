package onnx_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/onnx"
)

// Shapes flow through onnxruntime's fused operators (GenAI-builder style graphs).
func TestInferShapesFusedOps(t *testing.T) {
	for _, attn := range testkit.FusedAttentions {
		m, _, cfg := testkit.FusedTiny(t, attn, 1)
		kv := int64(cfg.KVHeads)
		dims := map[string][]int64{"input_ids": {2, 1}, "attention_mask": {2, 7}, "position_ids": {2, 1}}
		for i := 0; i < cfg.Layers; i++ {
			for _, k := range []string{"key", "value"} {
				dims[fmt.Sprintf("past_key_values.%d.%s", i, k)] = []int64{2, kv, 6, 8}
			}
		}
		types, err := onnx.InferShapes(m, dims)
		if err != nil {
			t.Fatal(err)
		}
		for name, want := range map[string][]int64{
			"logits":        {2, 1, 512},
			"present.1.key": {2, kv, 7, 8},
			"/model/layers.0/attn/" + attn + "/output_0":             {2, 1, 64},
			"/model/layers.1/input_layernorm/SkipLayerNorm_output_3": {2, 1, 64},
		} {
			if got := types[name].Shape; !slices.Equal(got, want) {
				t.Errorf("%s %s: shape %v, want %v", attn, name, got, want)
			}
		}
	}
}
