package hf

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/shears-ml/shears/models/llama"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"google.golang.org/protobuf/proto"
)

// withFields returns FamilyConfigs[name] with fields set (a nil value deletes the field).
func withFields(t *testing.T, name string, fields map[string]any) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(FamilyConfigs[name]), &m); err != nil {
		t.Fatal(err)
	}
	for k, v := range fields {
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Every config.json field that would change the math and that the graph does not compute is
// refused with an error naming config.json, the field and its value, and nothing is written.
func TestUnsupportedFieldsRefused(t *testing.T) {
	for _, tc := range []struct {
		family string
		fields map[string]any
		want   string
	}{
		{"llama", map[string]any{"rope_scaling": map[string]any{"rope_type": "ntk", "factor": 4.0}}, `rope_scaling of type "ntk" is not supported (supported: dynamic, linear, llama3, longrope, su, yarn, or none)`},
		{"qwen2", map[string]any{"rope_scaling": map[string]any{"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32}}, "rope_scaling yarn: original_max_position_embeddings 32 differs from max_position_embeddings 64"},
		{"qwen2", map[string]any{"rope_scaling": map[string]any{"type": "yarn", "factor": 4.0, "mscale": 1.0}}, "rope_scaling yarn with mscale / mscale_all_dim"},
		{"qwen2", map[string]any{"rope_scaling": map[string]any{"type": "yarn", "factor": 0.5}}, "rope_scaling yarn: factor 0.5 must be >= 1"},
		{"llama", map[string]any{"rope_scaling": map[string]any{"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "original_max_position_embeddings": 16}}, "rope_scaling llama3: factor 8, low_freq_factor 1, high_freq_factor 0"},
		{"llama", map[string]any{"rope_scaling": map[string]any{"type": "linear"}}, "rope_scaling linear: factor 0 must be positive"},
		{"llama", map[string]any{"partial_rotary_factor": 0.5}, "partial_rotary_factor 0.5 is not supported for LlamaForCausalLM"},
		{"llama", map[string]any{"rope_parameters": map[string]any{"full_attention": map[string]any{"rope_type": "default"}}}, "rope_parameters per layer type is not supported"},
		{"llama", map[string]any{"hidden_act": "gelu"}, `hidden_act "gelu" is not supported for LlamaForCausalLM`},
		{"mistral", map[string]any{"sliding_window": 0}, "sliding_window 0 must be positive or null"},
		{"mistral", map[string]any{"hidden_act": "relu"}, `hidden_act "relu" is not supported for MistralForCausalLM`},
		{"qwen2", map[string]any{"layer_types": []string{"full_attention", "chunked_attention"}}, `layer_types[1] = "chunked_attention" is not supported`},
		{"qwen2", map[string]any{"layer_types": []string{"full_attention"}}, "layer_types has 1 entries for 2 layers"},
		{"qwen2", map[string]any{"use_sliding_window": false, "layer_types": []string{"full_attention", "sliding_attention"}}, `layer_types[1] is "sliding_attention" but there is no window`},
		{"phi3-longrope", map[string]any{"partial_rotary_factor": 0.7}, "partial_rotary_factor 0.7 gives a rotary dim of 11 for head_dim 16"},
		{"phi3-longrope", map[string]any{"rope_scaling": map[string]any{"type": "longrope", "short_factor": []float64{1, 1, 1, 1, 1}, "long_factor": []float64{1, 1, 1, 1, 1, 1}}}, "short_factor has 5 values and long_factor 6; the rotary dim 12 needs 6 each"},
		{"phi3-longrope", map[string]any{"rope_scaling": map[string]any{"type": "longrope", "short_factor": []float64{1, 1, 1, 0, 1, 1}, "long_factor": []float64{1, 1, 1, 1, 1, 1}}}, "short_factor[3] = 0 must be positive"},
		{"gemma", map[string]any{"hidden_activation": "gelu"}, `hidden_activation "gelu" is not supported for GemmaForCausalLM`},
		{"gpt2", map[string]any{"activation_function": "relu"}, `activation_function "relu" is not supported`},
		{"gpt2", map[string]any{"scale_attn_weights": false}, "scale_attn_weights false is not supported"},
		{"gpt2", map[string]any{"scale_attn_by_inverse_layer_idx": true}, "scale_attn_by_inverse_layer_idx true is not supported"},
		{"gpt2", map[string]any{"tie_word_embeddings": false}, "tie_word_embeddings false is not supported for GPT2LMHeadModel"},
	} {
		dir := t.TempDir()
		err := WriteRandom(dir, withFields(t, tc.family, tc.fields), RandomOptions{})
		if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, ConfigFile)+": ") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %v: error %v, want %q naming %s", tc.family, tc.fields, err, tc.want, ConfigFile)
		}
		if _, err := os.Stat(filepath.Join(dir, "model.safetensors")); err == nil {
			t.Errorf("%s %v: a checkpoint was written", tc.family, tc.fields)
		}
	}
}

// decoderOf is the llama config the family of FamilyConfigs[name], with fields set, makes
// (the shared decoder fields, and Qwen2's sliding layers).
func decoderOf(t *testing.T, name string, fields map[string]any) llama.Config {
	t.Helper()
	c, err := ParseConfig(ConfigFile, withFields(t, name, fields))
	if err != nil {
		t.Fatal(err)
	}
	d, err := decoder(c, defaults{eps: 1e-6, partialRotary: c.Architectures[0] == "Phi3ForCausalLM"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Architectures[0] == "Qwen2ForCausalLM" {
		if err := qwen2Sliding(c, &d); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// Qwen2's window applies only with use_sliding_window, to the layers from max_window_layers on
// (28 when the config omits it) or to those layer_types marks; an absent sliding_window is 4096,
// a null one none.
func TestQwen2SlidingLayers(t *testing.T) {
	for _, tc := range []struct {
		fields map[string]any
		window int
		layers []bool
	}{
		{map[string]any{}, 3, []bool{false, true}},
		{map[string]any{"max_window_layers": 0}, 3, []bool{true, true}},
		{map[string]any{"max_window_layers": 2}, 0, nil},
		{map[string]any{"max_window_layers": nil}, 0, nil}, // 28 ≥ 2 layers
		{map[string]any{"use_sliding_window": false}, 0, nil},
		{map[string]any{"use_sliding_window": nil}, 0, nil},
		{map[string]any{"sliding_window": nil}, 4096, []bool{false, true}}, // absent: Qwen2Config's default
		{map[string]any{"sliding_window": json.RawMessage("null")}, 0, nil},
		{map[string]any{"layer_types": []string{"sliding_attention", "full_attention"}}, 3, []bool{true, false}},
	} {
		d := decoderOf(t, "qwen2", tc.fields)
		if d.SlidingWindow != tc.window || !reflect.DeepEqual(d.SlidingLayers, tc.layers) {
			t.Errorf("%v: window %d over %v, want %d over %v", tc.fields, d.SlidingWindow, d.SlidingLayers, tc.window, tc.layers)
		}
	}
}

// transformers v5 writes rope_theta, rope_scaling and partial_rotary_factor as one
// rope_parameters object: it means what the v4 fields mean (not the default θ = 10000).
func TestRopeParametersForm(t *testing.T) {
	v4 := decoderOf(t, "llama", nil)
	v5 := decoderOf(t, "llama", map[string]any{"rope_theta": nil, "rope_scaling": nil, "rope_parameters": map[string]any{
		"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
		"original_max_position_embeddings": 16}})
	if v5.RopeTheta != 500000 || v5.Rope == nil || !reflect.DeepEqual(v4.Rope, v5.Rope) {
		t.Errorf("rope_parameters: theta %v, rope %+v; rope_scaling: %+v", v5.RopeTheta, v5.Rope, v4.Rope)
	}
	d := decoderOf(t, "mistral", map[string]any{"rope_theta": nil, "rope_parameters": map[string]any{"rope_type": "default", "rope_theta": 1e6}})
	if d.RopeTheta != 1e6 || d.Rope != nil {
		t.Errorf("default rope_parameters: theta %v, rope %+v", d.RopeTheta, d.Rope)
	}
	// dynamic NTK changes nothing within max_position_embeddings (the graph's context).
	d = decoderOf(t, "llama", map[string]any{"rope_scaling": map[string]any{"type": "dynamic", "factor": 2.0}})
	if d.Rope != nil || d.RopeTheta != 500000 {
		t.Errorf("dynamic: theta %v, rope %+v", d.RopeTheta, d.Rope)
	}
	// yarn: the context grows to factor × the original; the default attention factor.
	d = decoderOf(t, "qwen2-yarn", nil)
	if d.MaxSeq != 256 || !(math.Abs(d.Rope.Scale-(1+0.1*math.Log(4))) <= 1e-15) {
		t.Errorf("yarn: context %d (want 256), scale %v", d.MaxSeq, d.Rope.Scale)
	}
	// linear: every frequency divided by the factor.
	d = decoderOf(t, "llama-linear", nil)
	want := llama.InvFreq(16, 10000)
	for j := range want {
		if got := d.Rope.InvFreq[j]; !(math.Abs(got-want[j]/4) <= 1e-15) {
			t.Fatalf("linear inv_freq[%d] = %v, want %v", j, got, want[j]/4)
		}
	}
}

// LongRoPE's attention factor: √(1 + ln(64/8) / ln 8) = √2 by default; attention_factor in
// rope_scaling overrides it; the long frequencies switch in at original_max_position_embeddings.
func TestLongRopeParameters(t *testing.T) {
	d := decoderOf(t, "phi3-longrope", nil)
	r := d.Rope
	if r == nil || r.Dim != 12 || r.LongFrom != 8 || !(math.Abs(r.Scale-math.Sqrt2) <= 1e-15) || len(r.InvFreq) != 6 || len(r.LongInvFreq) != 6 {
		t.Fatalf("longrope %+v", r)
	}
	if want := 1 / (13.0 * math.Pow(10000, 10.0/12)); !(math.Abs(r.LongInvFreq[5]-want) <= 1e-18) {
		t.Errorf("long inv_freq[5] = %v, want %v", r.LongInvFreq[5], want)
	}
	var m map[string]any
	json.Unmarshal([]byte(FamilyConfigs["phi3-longrope"]), &m)
	rs := m["rope_scaling"].(map[string]any)
	rs["attention_factor"] = 1.25
	if d := decoderOf(t, "phi3-longrope", map[string]any{"rope_scaling": rs}); d.Rope.Scale != 1.25 {
		t.Errorf("attention_factor 1.25 gives scale %v", d.Rope.Scale)
	}
	// No position of a context no longer than the original reaches the long factors.
	if d := decoderOf(t, "phi3-longrope", map[string]any{"original_max_position_embeddings": 64}); d.Rope.LongInvFreq != nil || d.Rope.Scale != 1 {
		t.Errorf("original = max: %+v", d.Rope)
	}
}

// Mistral's sliding_window, absent from config.json, is MistralConfig's default 4096 (a context
// longer than that gets the window); null means none; Phi-3's absent one is none.
func TestAbsentSlidingWindow(t *testing.T) {
	for _, tc := range []struct {
		family string
		fields map[string]any
		window bool
	}{
		{"mistral", map[string]any{"sliding_window": nil, "max_position_embeddings": 8192}, true},
		{"mistral", map[string]any{"sliding_window": json.RawMessage("null"), "max_position_embeddings": 8192}, false},
		{"phi3", map[string]any{"sliding_window": nil, "max_position_embeddings": 8192}, false},
	} {
		dir := t.TempDir()
		if err := WriteRandom(dir, withFields(t, tc.family, tc.fields), RandomOptions{}); err != nil {
			t.Fatal(err)
		}
		ck, err := Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		g, err := ck.Build()
		ck.Close()
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, n := range g.Model.Graph().GetNode() {
			if n.GetName() == "/model/sliding_window_mask/Where" {
				found = true
			}
		}
		if found != tc.window {
			t.Errorf("%s %v: sliding window mask %v, want %v", tc.family, tc.fields, found, tc.window)
		}
	}
}

// Configs shaped like the published ones (sizes and the fields that matter; factor lists of the
// right length, values made up) build graphs with the settings transformers uses: Phi-3.5-mini's
// LongRoPE (original 4096 of 131072: cos and sin × √(1 + ln 32 / ln 4096)) and a window longer
// than the context (no window mask), Phi-4-mini's partial rotary (96 of 128) and tied head,
// Llama 3.2's llama3 scaling, Mistral 7B v0.1's 4096 window, and Qwen2.5 with the yarn recipe its
// model card gives (context 4 × 32768, cos × (1 + 0.1 ln 4)). No tensor data is involved.
func TestPublishedConfigShapes(t *testing.T) {
	factors := func(n int) []float64 {
		f := make([]float64, n)
		for i := range f {
			f[i] = 1 + float64(i)/4
		}
		return f
	}
	phi3 := map[string]any{"architectures": []string{"Phi3ForCausalLM"}, "hidden_size": 3072, "intermediate_size": 8192,
		"num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 32, "vocab_size": 32064,
		"max_position_embeddings": 131072, "original_max_position_embeddings": 4096, "rms_norm_eps": 1e-5,
		"rope_theta": 10000.0, "sliding_window": 262144, "tie_word_embeddings": false, "hidden_act": "silu",
		"rope_scaling": map[string]any{"type": "longrope", "short_factor": factors(48), "long_factor": factors(48)}}
	phi4 := map[string]any{"architectures": []string{"Phi3ForCausalLM"}, "hidden_size": 3072, "intermediate_size": 8192,
		"num_hidden_layers": 32, "num_attention_heads": 24, "num_key_value_heads": 8, "vocab_size": 200064,
		"max_position_embeddings": 131072, "original_max_position_embeddings": 4096, "rms_norm_eps": 1e-5,
		"rope_theta": 10000.0, "partial_rotary_factor": 0.75, "sliding_window": 262144, "tie_word_embeddings": true,
		"hidden_act": "silu", "rope_scaling": map[string]any{"type": "longrope", "short_factor": factors(48), "long_factor": factors(48)}}
	llama32 := map[string]any{"architectures": []string{"LlamaForCausalLM"}, "hidden_size": 2048, "intermediate_size": 8192,
		"num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64, "vocab_size": 128256,
		"max_position_embeddings": 131072, "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "tie_word_embeddings": true,
		"attention_bias": false, "mlp_bias": false, "hidden_act": "silu", "rope_scaling": map[string]any{"factor": 32.0,
			"high_freq_factor": 4.0, "low_freq_factor": 1.0, "original_max_position_embeddings": 8192, "rope_type": "llama3"}}
	mistral := map[string]any{"architectures": []string{"MistralForCausalLM"}, "hidden_size": 4096, "intermediate_size": 14336,
		"num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 32000,
		"max_position_embeddings": 32768, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "sliding_window": 4096,
		"tie_word_embeddings": false, "hidden_act": "silu"}
	qwen25 := map[string]any{"architectures": []string{"Qwen2ForCausalLM"}, "hidden_size": 3584, "intermediate_size": 18944,
		"num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064,
		"max_position_embeddings": 32768, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "use_sliding_window": false,
		"sliding_window": 131072, "max_window_layers": 28, "tie_word_embeddings": false, "hidden_act": "silu",
		"rope_scaling": map[string]any{"factor": 4.0, "original_max_position_embeddings": 32768, "type": "yarn"}}
	for _, tc := range []struct {
		name    string
		cfg     map[string]any
		context string
		half    int64   // rotary dim / 2: the tables' width
		scale   float64 // cos at position 0
		long    bool    // LongRoPE's second tables
		window  bool
		tied    bool
	}{
		{"phi-3.5-mini", phi3, "131072", 48, math.Sqrt(1 + math.Log(32)/math.Log(4096)), true, false, false},
		{"phi-4-mini", phi4, "131072", 48, math.Sqrt(1 + math.Log(32)/math.Log(4096)), true, false, true},
		{"llama-3.2-1b", llama32, "131072", 32, 1, false, false, true},
		{"mistral-7b-v0.1", mistral, "32768", 64, 1, false, true, false},
		{"qwen2.5-7b-yarn", qwen25, "131072", 64, 1 + 0.1*math.Log(4), false, false, false},
	} {
		b, _ := json.Marshal(tc.cfg)
		c, err := ParseConfig(ConfigFile, b)
		if err != nil {
			t.Fatal(err)
		}
		f, err := family(c)
		if err != nil {
			t.Fatal(err)
		}
		m, err := f.Build(c, func(name string, dims []int64, computed []float32) (*onnxpb.TensorProto, error) {
			if computed != nil {
				return onnx.Float32Tensor(name, dims, computed), nil
			}
			return &onnxpb.TensorProto{Dims: dims, DataType: proto.Int32(int32(onnxpb.TensorProto_FLOAT))}, nil
		})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		meta := map[string]string{}
		for _, p := range m.Proto.GetMetadataProps() {
			meta[p.GetKey()] = p.GetValue()
		}
		ix := onnx.NewIndex(m.Graph())
		cos := m.Initializer(llama.CosName)
		v, err := m.Float32s(cos)
		if err != nil {
			t.Fatal(err)
		}
		if meta["max_position_embeddings"] != tc.context || cos.GetDims()[1] != tc.half || !(math.Abs(float64(v[0])-tc.scale) <= 1e-6) {
			t.Errorf("%s: context %s (want %s), cos table %v (want width %d), cos(0) %v (want %v)", tc.name, meta["max_position_embeddings"], tc.context, cos.GetDims(), tc.half, v[0], tc.scale)
		}
		if got := m.Initializer(llama.LongCosName) != nil; got != tc.long {
			t.Errorf("%s: long tables %v, want %v", tc.name, got, tc.long)
		}
		if got := ix.Nodes["/model/sliding_window_mask/Where"] != nil; got != tc.window {
			t.Errorf("%s: window mask %v, want %v", tc.name, got, tc.window)
		}
		if got := ix.Nodes["/lm_head/Transpose"] != nil; got != tc.tied {
			t.Errorf("%s: tied head %v, want %v", tc.name, got, tc.tied)
		}
	}
}
