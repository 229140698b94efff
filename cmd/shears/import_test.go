package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/models/hf"
	"github.com/shears-ml/shears/onnx"
)

func hfGreedyIDs(t *testing.T, model, tok string) []int {
	t.Helper()
	o, e, code := shears(t, "generate", model, "--tokenizer", tok, "--max-tokens", "20", "--json")
	if code != 0 {
		t.Fatalf("generate %s: %s", model, e)
	}
	var r struct {
		IDs []int `json:"ids"`
	}
	if err := json.Unmarshal([]byte(o), &r); err != nil {
		t.Fatal(err)
	}
	return r.IDs
}

// shears import hf on stories260K in the Hugging Face layout (bf16, two shards + index): the
// report, the linears inspect finds, the golden greedy ids from shears generate, and the
// metadata (config.json verbatim, the source folder) surviving prune and adapt.
func TestImportHFCLI(t *testing.T) {
	testkit.ORT(t)
	tok := testkit.Shared(t, "models/stories260K/tok512.bin")
	ckpt := testkit.StoriesHF(t, "BF16", 2)
	dir := t.TempDir()
	out := filepath.Join(dir, "stories-hf.onnx")
	o, e, code := shears(t, "import", "hf", ckpt, "-o", out, "--json")
	if code != 0 {
		t.Fatalf("import hf: %s", e)
	}
	var rep struct {
		Architecture string   `json:"architecture"`
		SourceDType  string   `json:"source_dtype"`
		DType        string   `json:"dtype"`
		Converted    int      `json:"converted_tensors"`
		Tensors      int      `json:"tensors"`
		Unused       []string `json:"unused_tensors"`
		Params       int64    `json:"params"`
	}
	if err := json.Unmarshal([]byte(o), &rep); err != nil {
		t.Fatal(err)
	}
	// 5 layers × 9 tensors + embedding + final norm; 35 linears + the embedding kept in bf16.
	if rep.Architecture != "LlamaForCausalLM" || rep.SourceDType != "bf16" || rep.DType != "bf16" ||
		rep.Converted != 36 || rep.Tensors != 47 || len(rep.Unused) != 0 || rep.Params != 260032 {
		t.Fatalf("report %+v", rep)
	}
	ref := importStories(t, dir)
	if a, b := inspectJSON(t, out), inspectJSON(t, ref); len(a.Linears) != len(b.Linears) {
		t.Errorf("inspect finds %d linears in the hf import, %d in the llama2c import", len(a.Linears), len(b.Linears))
	}
	got := hfGreedyIDs(t, out, tok)
	if len(got) < len(testkit.StoriesGreedy) {
		t.Fatalf("generated %v", got)
	}
	for i, id := range testkit.StoriesGreedy {
		if int64(got[i]) != id {
			t.Fatalf("greedy ids %v, want %v", got, testkit.StoriesGreedy)
		}
	}

	// Weights go to external data by default; --inline writes one file with the same weights.
	if _, err := os.Stat(out + ".data"); err != nil {
		t.Errorf("import hf wrote no external data: %v", err)
	}
	inl := filepath.Join(dir, "inline.onnx")
	if _, e, code := shears(t, "import", "hf", ckpt, "-o", inl, "--inline"); code != 0 {
		t.Fatalf("import hf --inline: %s", e)
	}
	if _, err := os.Stat(inl + ".data"); !os.IsNotExist(err) {
		t.Errorf("import hf --inline wrote external data (%v)", err)
	}
	sameWeights(t, out, inl)

	// Later stages keep the metadata deploy reads.
	pruned, super := filepath.Join(dir, "pruned.onnx"), filepath.Join(dir, "super.onnx")
	if _, e, code := shears(t, "prune", out, "-o", pruned, "--sparsity", "0.5", "--method", "magnitude"); code != 0 {
		t.Fatalf("prune: %s", e)
	}
	if _, e, code := shears(t, "adapt", pruned, "-o", super); code != 0 {
		t.Fatalf("adapt: %s", e)
	}
	abs, _ := filepath.Abs(ckpt)
	cfg, _ := os.ReadFile(filepath.Join(ckpt, hf.ConfigFile))
	for _, p := range []string{out, pruned, super} {
		m, err := onnx.Load(p)
		if err != nil {
			t.Fatal(err)
		}
		meta := map[string]string{}
		for _, kv := range m.Proto.GetMetadataProps() {
			meta[kv.GetKey()] = kv.GetValue()
		}
		if meta[hf.MetaConfig] != string(cfg) || meta[hf.MetaSourceDir] != abs {
			t.Errorf("%s: metadata %s / %s lost or changed", filepath.Base(p), hf.MetaConfig, hf.MetaSourceDir)
		}
	}
}

// A bad checkpoint: exit code 1, the error names the file and tensor, no output is written.
func TestImportHFCLIBadInput(t *testing.T) {
	ckpt := filepath.Join(t.TempDir(), "ckpt")
	cfg := `{"architectures": ["MistralForCausalLM"], "hidden_size": 32, "intermediate_size": 48,
		"num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 64,
		"max_position_embeddings": 32}`
	if err := hf.WriteRandom(ckpt, []byte(cfg), hf.RandomOptions{Shards: 2}); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(ckpt, "model-00001-of-00002.safetensors"))
	outDir := t.TempDir()
	_, e, code := shears(t, "import", "hf", ckpt, "-o", filepath.Join(outDir, "m.onnx"))
	if code != 1 || !strings.Contains(e, "model.safetensors.index.json") || !strings.Contains(e, "model-00001-of-00002.safetensors is missing") {
		t.Fatalf("exit %d, stderr %q", code, e)
	}
	if ents, _ := os.ReadDir(outDir); len(ents) != 0 {
		t.Fatalf("output folder holds %d entries", len(ents))
	}
	_, e, code = shears(t, "import", "hf", t.TempDir(), "-o", filepath.Join(outDir, "m.onnx"))
	if code != 1 || !strings.Contains(e, "no config.json") {
		t.Fatalf("exit %d, stderr %q", code, e)
	}
}

// sameWeights fails unless models a and b have the same initializers, byte for byte, wherever
// each stores them.
func sameWeights(t *testing.T, a, b string) {
	t.Helper()
	ma, err := onnx.Load(a)
	if err != nil {
		t.Fatal(err)
	}
	defer ma.Close()
	mb, err := onnx.Load(b)
	if err != nil {
		t.Fatal(err)
	}
	defer mb.Close()
	ia, ib := ma.Graph().GetInitializer(), mb.Graph().GetInitializer()
	if len(ia) != len(ib) {
		t.Fatalf("%d initializers in %s, %d in %s", len(ia), a, len(ib), b)
	}
	for i := range ia {
		ra, err := ma.RawData(ia[i])
		if err != nil {
			t.Fatal(err)
		}
		rb, err := mb.RawData(ib[i])
		if err != nil {
			t.Fatal(err)
		}
		if ia[i].GetName() != ib[i].GetName() || string(ra) != string(rb) {
			t.Fatalf("initializer %d: %s (%d bytes) vs %s (%d bytes)", i, ia[i].GetName(), len(ra), ib[i].GetName(), len(rb))
		}
	}
}
