package hf

import (
	"math/rand/v2"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
)

// Tiny configurations of every family, shaped to exercise what sets each apart: GQA, a llama3
// rope scaling whose three frequency bands are all populated (head_dim 16, original context 16),
// linear and yarn rope scaling (yarn's ramp spans dims 0-3 of 8), biases (LLaMA's attention_bias and mlp_bias, Qwen2's, Gemma's), fused
// projections, a head_dim that is not hidden/heads, tied and untied heads, sliding windows
// shorter than the test sequences (Mistral: every layer; Qwen2: the layers from
// max_window_layers on; Phi-3), and Phi-3's LongRoPE with a partial rotary dim (Phi-4-mini's
// shape: 12 of 16) whose original context (8) the 11-token test sequence exceeds.
var familyConfigs = map[string]string{
	"llama": `{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
		"intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
		"vocab_size": 128, "max_position_embeddings": 64, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
		"rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
		"original_max_position_embeddings": 16, "rope_type": "llama3"}, "tie_word_embeddings": false, "hidden_act": "silu"}`,
	"llama-linear": `{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
		"intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4,
		"vocab_size": 128, "max_position_embeddings": 64, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
		"rope_scaling": {"type": "linear", "factor": 4.0}, "attention_bias": true, "mlp_bias": true,
		"tie_word_embeddings": true, "hidden_act": "silu"}`,
	"mistral": `{"architectures": ["MistralForCausalLM"], "model_type": "mistral", "hidden_size": 64,
		"intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 8, "num_key_value_heads": 2,
		"vocab_size": 128, "max_position_embeddings": 128, "rms_norm_eps": 1e-5, "rope_theta": 1000000.0,
		"sliding_window": 4, "tie_word_embeddings": false, "hidden_act": "silu"}`,
	"qwen2": `{"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 64,
		"intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
		"vocab_size": 128, "max_position_embeddings": 64, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
		"use_sliding_window": true, "sliding_window": 3, "max_window_layers": 1, "tie_word_embeddings": true, "hidden_act": "silu"}`,
	"qwen2-yarn": `{"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 64,
		"intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
		"vocab_size": 128, "max_position_embeddings": 64, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
		"rope_scaling": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64},
		"use_sliding_window": false, "sliding_window": 3, "tie_word_embeddings": false, "hidden_act": "silu"}`,
	"phi3": `{"architectures": ["Phi3ForCausalLM"], "model_type": "phi3", "hidden_size": 64,
		"intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
		"vocab_size": 128, "max_position_embeddings": 64, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
		"rope_scaling": null, "sliding_window": 5, "tie_word_embeddings": false, "hidden_act": "silu"}`,
	"phi3-longrope": `{"architectures": ["Phi3ForCausalLM"], "model_type": "phi3", "hidden_size": 64,
		"intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
		"vocab_size": 128, "max_position_embeddings": 64, "original_max_position_embeddings": 8,
		"rms_norm_eps": 1e-5, "rope_theta": 10000.0, "partial_rotary_factor": 0.75,
		"rope_scaling": {"type": "longrope", "short_factor": [1.0, 1.1, 1.3, 1.6, 2.0, 2.5],
		"long_factor": [1.5, 2.5, 4.0, 6.0, 9.0, 13.0]}, "sliding_window": null, "tie_word_embeddings": true, "hidden_act": "silu"}`,
	"gemma": `{"architectures": ["GemmaForCausalLM"], "model_type": "gemma", "hidden_size": 64,
		"intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 1,
		"head_dim": 32, "vocab_size": 128, "max_position_embeddings": 64, "rms_norm_eps": 1e-6,
		"rope_theta": 10000.0, "attention_bias": true, "hidden_activation": "gelu_pytorch_tanh", "hidden_act": "gelu"}`,
	"gpt2": `{"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "n_embd": 64, "n_layer": 2,
		"n_head": 4, "n_positions": 64, "n_ctx": 64, "vocab_size": 128, "layer_norm_epsilon": 1e-5,
		"activation_function": "gelu_new", "n_inner": null}`,
}

// familyNames lists familyConfigs' keys, sorted.
func familyNames() []string {
	var n []string
	for k := range familyConfigs {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

// importTo imports the checkpoint in dir to out with every tensor in its checkpoint type
// widened to float32 (target FLOAT), the form a test can run without Casts.
func importTo(t *testing.T, dir, out string) *Graph {
	t.Helper()
	ck, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	g, err := ck.Build()
	if err != nil {
		t.Fatal(err)
	}
	so := g.Bind(BindOptions{Target: func(string) onnxpb.TensorProto_DataType { return onnxpb.TensorProto_FLOAT }})
	if err := g.Model.Save(out, so); err != nil {
		t.Fatal(err)
	}
	return g
}

// Every family's random checkpoint imports into a graph whose logits (onnxruntime, empty past)
// equal the independent Go reference's to 1e-5 relative; F32, F16 and BF16 checkpoints alike
// (the reference reads the same rounded values).
func TestFamiliesMatchReference(t *testing.T) {
	testkit.ORT(t)
	for _, name := range familyNames() {
		for _, dt := range []string{"F32", "BF16"} {
			t.Run(name+"/"+dt, func(t *testing.T) {
				dir := filepath.Join(t.TempDir(), name)
				if err := WriteRandom(dir, []byte(familyConfigs[name]), RandomOptions{Seed: 7, DType: dt, Shards: 2}); err != nil {
					t.Fatal(err)
				}
				out := filepath.Join(t.TempDir(), name+".onnx")
				g := importTo(t, dir, out)
				if len(g.Unused) != 0 {
					t.Errorf("unused tensors %v", g.Unused)
				}
				m, err := onnx.Load(out)
				if err != nil {
					t.Fatal(err)
				}
				c, _ := ReadConfig(dir)
				r := rand.New(rand.NewPCG(1, 2))
				ids := make([]int64, 11)
				for i := range ids {
					ids[i] = int64(r.IntN(128))
				}
				_, got := testkit.RunLogits(t, m, 1, ids, nil)
				want := refForward(t, c, loadRef(t, dir), ids)
				d := relDiff(got, want)
				t.Logf("relative difference %.3g", d)
				if !(d <= 1e-5) {
					t.Fatalf("logits differ from the reference by %.3g relative (max |logit| scale)", d)
				}
			})
		}
	}
}

// Names follow Hugging Face: the initializers are the checkpoint's tensors, the nodes sit in
// module scopes, and the metadata carries config.json verbatim and the source folder.
func TestNamesAndMetadata(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "phi3")
	if err := WriteRandom(dir, []byte(familyConfigs["phi3"]), RandomOptions{Seed: 1}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "phi3.onnx")
	importTo(t, dir, out)
	m, err := onnx.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	ix := onnx.NewIndex(m.Graph())
	for _, n := range []string{"/model/layers.1/self_attn/qkv_proj/MatMul", "/model/layers.0/mlp/gate_up_proj/MatMul", "/model/layers.0/mlp/down_proj/MatMul", "/lm_head/MatMul"} {
		if ix.Nodes[n] == nil {
			t.Errorf("no node %q", n)
		}
	}
	w := m.Initializer("model.layers.0.self_attn.qkv_proj.weight")
	if w == nil || w.GetDims()[0] != 64 || w.GetDims()[1] != 128 {
		t.Fatalf("qkv_proj weight %v, want [64 128] ([in, out])", w.GetDims())
	}
	meta := map[string]string{}
	for _, p := range m.Proto.GetMetadataProps() {
		meta[p.GetKey()] = p.GetValue()
	}
	abs, _ := filepath.Abs(dir)
	if meta[MetaConfig] != familyConfigs["phi3"] || meta[MetaSourceDir] != abs {
		t.Fatalf("metadata %q = %.40q..., %q = %q", MetaConfig, meta[MetaConfig], MetaSourceDir, meta[MetaSourceDir])
	}
	// Phi-3's sliding window (5) masks attention; it does not cap the context.
	if meta["max_position_embeddings"] != "64" || ix.Nodes["/model/sliding_window_mask/Where"] == nil {
		t.Errorf("context %q (want 64), sliding window mask %v", meta["max_position_embeddings"], ix.Nodes["/model/sliding_window_mask/Where"] != nil)
	}
}

func TestUnknownArchitecture(t *testing.T) {
	dir := t.TempDir()
	err := WriteRandom(dir, []byte(`{"architectures": ["FalconForCausalLM"]}`), RandomOptions{})
	if err == nil || !strings.Contains(err.Error(), `architecture "FalconForCausalLM" is not supported (supported: GPT2LMHeadModel, GemmaForCausalLM, LlamaForCausalLM, MistralForCausalLM, Phi3ForCausalLM, Qwen2ForCausalLM)`) {
		t.Fatalf("error %v", err)
	}
}
