package testkit

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/shears-ml/shears/models/hf"
	"github.com/shears-ml/shears/models/llama2c"
)

// StoriesGreedy are stories260K's greedy ids after BOS (llama2.c's run.c, and the llama2c
// import's golden test).
var StoriesGreedy = []int64{403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337}

// StoriesHF writes ../shared's stories260K.bin as a Hugging Face LLaMA checkpoint in a
// temporary folder (skipping the test when the file is absent): config.json and the tensors in
// dtype ("F32", "F16", "BF16") across shards files. q and k rows are permuted the way
// transformers' convert_llama_weights_to_hf.py does, so the rotate-half RoPE of the Hugging Face
// layout computes what llama2.c's interleaved pairs do; the head is tied (no lm_head.weight), as
// the checkpoint's classifier is its embedding.
func StoriesHF(t testing.TB, dtype string, shards int) string {
	t.Helper()
	bin := Shared(t, "models/stories260K/stories260K.bin")
	dir := filepath.Join(t.TempDir(), "stories260K-hf")
	if err := WriteLlama2cAsHF(bin, dir, dtype, shards); err != nil {
		t.Fatal(err)
	}
	return dir
}

// WriteLlama2cAsHF converts a legacy llama2.c checkpoint with a shared classifier into a
// Hugging Face LLaMA checkpoint folder (see StoriesHF).
func WriteLlama2cAsHF(bin, dir, dtype string, shards int) error {
	ck, err := llama2c.ReadHeader(bin)
	if err != nil {
		return err
	}
	c := ck.Config
	if !ck.SharedClassifier {
		return fmt.Errorf("%s: only checkpoints with a shared classifier are converted", bin)
	}
	raw, err := os.ReadFile(bin)
	if err != nil {
		return err
	}
	off := 7 * 4
	next := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[off+4*i:]))
		}
		off += 4 * n
		return v
	}
	d, h, L, kv, V := c.Dim, c.HiddenDim, c.Layers, c.KVDim(), c.Vocab
	emb := next(V * d)
	rmsAtt := next(L * d)
	wq, wk, wv, wo := next(L*d*d), next(L*kv*d), next(L*kv*d), next(L*d*d)
	rmsFFN := next(L * d)
	w1, w2, w3 := next(L*h*d), next(L*d*h), next(L*h*d)
	final := next(d)
	ts := []hf.Tensor{{Name: "model.embed_tokens.weight", Shape: []int64{int64(V), int64(d)}, Values: emb}}
	mat := func(name string, i, out, in int, all []float32) hf.Tensor {
		return hf.Tensor{Name: fmt.Sprintf("model.layers.%d.%s.weight", i, name), Shape: []int64{int64(out), int64(in)}, Values: all[i*out*in : (i+1)*out*in]}
	}
	for i := 0; i < L; i++ {
		ts = append(ts,
			hf.Tensor{Name: fmt.Sprintf("model.layers.%d.input_layernorm.weight", i), Shape: []int64{int64(d)}, Values: rmsAtt[i*d : (i+1)*d]},
			permuteRoPE(mat("self_attn.q_proj", i, d, d, wq), c.Heads),
			permuteRoPE(mat("self_attn.k_proj", i, kv, d, wk), c.KVHeads),
			mat("self_attn.v_proj", i, kv, d, wv), mat("self_attn.o_proj", i, d, d, wo),
			hf.Tensor{Name: fmt.Sprintf("model.layers.%d.post_attention_layernorm.weight", i), Shape: []int64{int64(d)}, Values: rmsFFN[i*d : (i+1)*d]},
			mat("mlp.gate_proj", i, h, d, w1), mat("mlp.down_proj", i, d, h, w2), mat("mlp.up_proj", i, h, d, w3))
	}
	ts = append(ts, hf.Tensor{Name: "model.norm.weight", Shape: []int64{int64(d)}, Values: final})
	cfg := fmt.Sprintf(`{
  "architectures": ["LlamaForCausalLM"],
  "model_type": "llama",
  "hidden_size": %d,
  "intermediate_size": %d,
  "num_hidden_layers": %d,
  "num_attention_heads": %d,
  "num_key_value_heads": %d,
  "vocab_size": %d,
  "max_position_embeddings": %d,
  "rms_norm_eps": 1e-05,
  "rope_theta": 10000.0,
  "hidden_act": "silu",
  "tie_word_embeddings": true,
  "bos_token_id": 1,
  "eos_token_id": 2,
  "torch_dtype": "float32"
}
`, d, h, L, c.Heads, c.KVHeads, V, c.MaxSeq)
	return hf.WriteCheckpoint(dir, []byte(cfg), ts, dtype, shards)
}

// permuteRoPE reorders each head's rows from llama2.c's interleaved pairs (2j, 2j+1) to
// Hugging Face's halves (j, j + hd/2): convert_llama_weights_to_hf.py's
// w.view(heads, hd/2, 2, in).transpose(1, 2).reshape(out, in).
func permuteRoPE(t hf.Tensor, heads int) hf.Tensor {
	out, in := int(t.Shape[0]), int(t.Shape[1])
	hd := out / heads
	p := make([]float32, len(t.Values))
	for h := 0; h < heads; h++ {
		for j := 0; j < hd/2; j++ {
			for s := 0; s < 2; s++ {
				src := h*hd + 2*j + s
				dst := h*hd + s*hd/2 + j
				copy(p[dst*in:(dst+1)*in], t.Values[src*in:(src+1)*in])
			}
		}
	}
	t.Values = p
	return t
}
