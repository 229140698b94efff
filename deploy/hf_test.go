package deploy

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/shears-ml/shears/internal/safetensors"
	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/models/gpt2"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"google.golang.org/protobuf/proto"
)

// writeHF writes m as a Hugging Face checkpoint folder with shards of at most shard bytes.
func writeHF(t *testing.T, m *onnx.Model, dir string, shard int64, o Options) *Report {
	t.Helper()
	f, err := Begin(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Abort()
	if err := m.Save(f.ModelPath(), SaveOptions(onnx.SaveOptions{})); err != nil {
		t.Fatal(err)
	}
	rep, err := f.FinishHF(o, shard)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// readCheckpoint reads every tensor of a checkpoint folder (index or single file).
func readCheckpoint(t *testing.T, dir string) map[string]safetensors.Tensor {
	t.Helper()
	files := []string{"model.safetensors"}
	if b, err := os.ReadFile(filepath.Join(dir, "model.safetensors.index.json")); err == nil {
		var idx struct {
			Metadata  map[string]int64  `json:"metadata"`
			WeightMap map[string]string `json:"weight_map"`
		}
		if err := json.Unmarshal(b, &idx); err != nil {
			t.Fatal(err)
		}
		files = nil
		for _, f := range idx.WeightMap {
			if !slices.Contains(files, f) {
				files = append(files, f)
			}
		}
	}
	out := map[string]safetensors.Tensor{}
	for _, name := range files {
		f, err := safetensors.Read(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if f.Metadata["format"] != "pt" {
			t.Errorf("%s: metadata %v lacks format pt (transformers refuses such files)", name, f.Metadata)
		}
		for _, x := range f.Tensors {
			out[x.Name] = x
		}
	}
	return out
}

// TestHFCheckpointLayout writes the tiny LLaMA as a sharded checkpoint and checks names,
// [out, in] layout and the rotate-half permutation of q and k rows against the graph's weights.
func TestHFCheckpointLayout(t *testing.T) {
	m := loadModel(t, testkit.Synthetic(t, "tiny"))
	dir := filepath.Join(t.TempDir(), "hf")
	rep := writeHF(t, m, dir, 100_000, Options{Tokenizer: testkit.Tokenizer(t, 400)})
	shards := 0
	for _, f := range rep.Files {
		if strings.HasPrefix(f, "model-") {
			shards++
			st, err := safetensors.Read(filepath.Join(dir, f))
			if err != nil {
				t.Fatal(err)
			}
			var size int
			for _, x := range st.Tensors {
				size += len(x.Data)
			}
			if size > 100_000 && len(st.Tensors) > 1 {
				t.Errorf("%s holds %d bytes in %d tensors, over the 100000-byte shard size", f, size, len(st.Tensors))
			}
		}
	}
	if shards < 2 || !slices.Contains(rep.Files, "model.safetensors.index.json") || !slices.Contains(rep.Files, "model-00001-of-"+fmt.Sprintf("%05d", shards)+".safetensors") ||
		slices.ContainsFunc(rep.Files, func(s string) bool { return strings.HasPrefix(s, "onnx/") }) {
		t.Errorf("files %v: want shards, an index and no graph", rep.Files)
	}
	ts := readCheckpoint(t, dir)
	var want []string
	for i := 0; i < 2; i++ {
		for _, mod := range []string{"input_layernorm", "post_attention_layernorm", "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"} {
			want = append(want, "model.layers."+strconv.Itoa(i)+"."+mod+".weight")
		}
	}
	want = append(want, "model.embed_tokens.weight", "model.norm.weight", "lm_head.weight")
	var got []string
	for k := range ts {
		got = append(got, k)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("tensors %v\nwant %v", got, want)
	}
	onnxW := func(name string) []float32 {
		v, err := m.Float32s(m.Initializer(name))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	hd := 8
	for _, c := range []struct {
		name  string
		heads int
	}{{"model.layers.1.self_attn.q_proj.weight", 8}, {"model.layers.1.self_attn.k_proj.weight", 4}, {"model.layers.0.mlp.down_proj.weight", 0}, {"lm_head.weight", 0}} {
		w := onnxW(c.name) // [in, out]
		dims := m.Initializer(c.name).GetDims()
		in, out := int(dims[0]), int(dims[1])
		st := ts[c.name]
		if !slices.Equal(st.Shape, []int64{int64(out), int64(in)}) {
			t.Errorf("%s: shape %v, want [%d %d]", c.name, st.Shape, out, in)
		}
		v, err := st.Float32s()
		if err != nil {
			t.Fatal(err)
		}
		for r := 0; r < out; r++ {
			src := r // the graph's output column for checkpoint row r
			if c.heads > 0 {
				h, rest := r/hd, r%hd
				j, i := rest/(hd/2), rest%(hd/2)
				src = h*hd + 2*i + j
			}
			for k := 0; k < in; k++ {
				if v[r*in+k] != w[k*out+src] {
					t.Fatalf("%s[%d][%d] = %v, want graph [%d][%d] = %v", c.name, r, k, v[r*in+k], k, src, w[k*out+src])
				}
			}
		}
	}
	cfg := readJSON(t, filepath.Join(dir, "config.json"))
	if cfg["model_type"] != "llama" || cfg["transformers.js_config"] != nil {
		t.Errorf("config.json %v", cfg)
	}
	for _, f := range []string{"tokenizer.json", "tokenizer_config.json", "generation_config.json", "README.md"} {
		if !slices.Contains(rep.Files, f) {
			t.Errorf("checkpoint folder lacks %s", f)
		}
	}
}

// TestHFCheckpointLogitsInTorch loads the checkpoint of the tiny LLaMA by name into a plain
// PyTorch transformers-style LLaMA (rotate-half RoPE) and checks its logits against our graph's.
func TestHFCheckpointLogitsInTorch(t *testing.T) {
	testkit.NeedTorch(t)
	testkit.ORT(t)
	m := loadModel(t, testkit.Synthetic(t, "tiny"))
	dir := filepath.Join(t.TempDir(), "hf")
	writeHF(t, m, dir, 100_000, Options{})
	ids := []int64{1, 403, 407, 261, 378, 17, 99, 300}
	_, want := testkit.RunLogits(t, m, 1, ids, nil)
	args := []string{filepath.Join(testkit.RepoRoot(t), "testdata", "torch", "hf_logits.py"), dir}
	for _, id := range ids {
		args = append(args, strconv.FormatInt(id, 10))
	}
	cmd := exec.Command(testkit.Python, args...)
	cmd.Env = append(os.Environ(), "OMP_NUM_THREADS=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("hf_logits.py: %v", err)
	}
	var got []float32
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("torch gave %d logits, graph %d", len(got), len(want))
	}
	if d := testkit.MaxDiff(got, want); !(d <= 1e-4) {
		t.Errorf("torch logits of the checkpoint differ from the graph's by %g", d)
	} else {
		t.Logf("max |torch − graph| = %.3g over %d logits", d, len(got))
	}
}

// TestHFCheckpointGPT2 writes the tiny GPT-2 (given the config facts an HF import records):
// Conv1D weights stay [in, out] as GPT-2 checkpoints store them, the tied head is the
// embedding and is not written twice.
func TestHFCheckpointGPT2(t *testing.T) {
	m, err := gpt2.Build(gpt2.Tiny, 1)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"model_type": "gpt2", "n_embd": "64", "n_head": "4", "n_layer": "2", "vocab_size": "512", "n_positions": "128", "tie_word_embeddings": "true"} {
		m.Proto.MetadataProps = append(m.Proto.MetadataProps, &onnxpb.StringStringEntryProto{Key: proto.String(k), Value: proto.String(v)})
	}
	dir := filepath.Join(t.TempDir(), "hf")
	writeHF(t, m, dir, 0, Options{})
	ts := readCheckpoint(t, dir)
	if _, ok := ts["lm_head.weight"]; ok {
		t.Error("the tied head was written")
	}
	for _, name := range []string{"transformer.h.0.attn.c_attn.weight", "transformer.h.1.mlp.c_proj.weight", "transformer.wte.weight"} {
		init := m.Initializer(name)
		if init == nil {
			t.Fatalf("no initializer %s", name)
		}
		want, err := m.Float32s(init)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ts[name].Float32s()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !slices.Equal(ts[name].Shape, init.GetDims()) || !slices.Equal(got, want) {
			t.Errorf("%s: shape %v, want the graph's %v and its values", name, ts[name].Shape, init.GetDims())
		}
	}
	if cfg := readJSON(t, filepath.Join(dir, "config.json")); cfg["tie_word_embeddings"] != true {
		t.Errorf("config.json tie_word_embeddings %v", cfg["tie_word_embeddings"])
	}
}
