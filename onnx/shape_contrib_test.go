package onnx_test

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	"github.com/shears-ml/shears/internal/testsynth"
	"github.com/shears-ml/shears/models/llama"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
)

// Shapes flow through onnxruntime's fused operators (GenAI-builder style graphs).
func TestInferShapesFusedOps(t *testing.T) {
	for _, c := range []struct {
		attn string
		kv   int
	}{{testsynth.GQA, 4}, {testsynth.MHA, 8}} {
		cfg, _ := llama.Preset("tiny")
		cfg.KVHeads = c.kv
		path := filepath.Join(t.TempDir(), "plain.onnx")
		if err := llama.WriteSynthetic(path, cfg, 1, onnxpb.TensorProto_FLOAT); err != nil {
			t.Fatal(err)
		}
		plain, err := onnx.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		m, err := testsynth.Fused(plain, cfg, c.attn)
		plain.Close()
		if err != nil {
			t.Fatal(err)
		}
		dims := map[string][]int64{"input_ids": {2, 1}, "attention_mask": {2, 7}, "position_ids": {2, 1}}
		for i := 0; i < cfg.Layers; i++ {
			for _, k := range []string{"key", "value"} {
				dims[fmt.Sprintf("past_key_values.%d.%s", i, k)] = []int64{2, int64(c.kv), 6, 8}
			}
		}
		types, err := onnx.InferShapes(m, dims)
		if err != nil {
			t.Fatal(err)
		}
		for name, want := range map[string][]int64{
			"logits":        {2, 1, 512},
			"present.1.key": {2, int64(c.kv), 7, 8},
			"/model/layers.0/attn/" + c.attn + "/output_0":           {2, 1, 64},
			"/model/layers.1/input_layernorm/SkipLayerNorm_output_3": {2, 1, 64},
		} {
			if got := types[name].Shape; !slices.Equal(got, want) {
				t.Errorf("%s %s: shape %v, want %v", c.attn, name, got, want)
			}
		}
	}
}
