package deploy

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/tokenizer"
	"google.golang.org/protobuf/proto"
)

func loadModel(t *testing.T, path string) *onnx.Model {
	t.Helper()
	m, err := onnx.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func readJSON(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return v
}

// TestWriteFolderLlama writes the tiny LLaMA (external data, a converted llama2.c tokenizer)
// and checks every file against the model's facts.
func TestWriteFolderLlama(t *testing.T) {
	m := loadModel(t, testkit.Synthetic(t, "tiny"))
	tokPath := testkit.Tokenizer(t, 400)
	dir := filepath.Join(t.TempDir(), "out")
	var warnings []string
	rep, err := WriteFolder(m, onnx.SaveOptions{ExternalData: true}, dir, false, Options{Source: "tiny.onnx", Tokenizer: tokPath,
		Card: Card{Base: "tiny.onnx", Commands: []string{"shears convert tiny.onnx --format folder -o out"}}, Warn: func(s string) { warnings = append(warnings, s) }})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"README.md", "config.json", "generation_config.json", "onnx/model.onnx", "onnx/model.onnx_data", "tokenizer.json", "tokenizer_config.json"}
	if rep.GenAI {
		want = append(want, "genai_config.json")
		slices.Sort(want)
	}
	if !slices.Equal(rep.Files, want) {
		t.Errorf("files %v, want %v", rep.Files, want)
	}
	ents, _ := os.ReadDir(filepath.Dir(dir))
	if len(ents) != 1 {
		t.Errorf("the parent holds %d entries (temporary folders left?)", len(ents))
	}
	cfg := readJSON(t, filepath.Join(dir, "config.json"))
	for k, v := range map[string]any{"model_type": "llama", "hidden_size": 64.0, "intermediate_size": 172.0, "num_hidden_layers": 2.0,
		"num_attention_heads": 8.0, "num_key_value_heads": 4.0, "head_dim": 8.0, "vocab_size": 512.0, "max_position_embeddings": 128.0,
		"rms_norm_eps": 1e-5, "rope_theta": 10000.0, "bos_token_id": 1.0, "eos_token_id": 2.0, "torch_dtype": "float32", "hidden_act": "silu"} {
		if cfg[k] != v {
			t.Errorf("config.json %s = %v, want %v", k, cfg[k], v)
		}
	}
	if a, _ := cfg["architectures"].([]any); len(a) != 1 || a[0] != "LlamaForCausalLM" {
		t.Errorf("architectures %v", cfg["architectures"])
	}
	if tj, _ := cfg["transformers.js_config"].(map[string]any); tj["use_external_data_format"] != true {
		t.Errorf("transformers.js_config %v: external data must be announced", cfg["transformers.js_config"])
	}
	gen := readJSON(t, filepath.Join(dir, "generation_config.json"))
	if gen["bos_token_id"] != 1.0 || gen["eos_token_id"] != 2.0 || gen["do_sample"] != false {
		t.Errorf("generation_config.json %v", gen)
	}
	// The tokenizer encodes as the llama2.c file does.
	l2c, err := tokenizer.LoadLlama2c(tokPath)
	if err != nil {
		t.Fatal(err)
	}
	hf, err := tokenizer.LoadHF(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	if a, b := l2c.Encode(testkit.TokCorpus), hf.Encode(testkit.TokCorpus); !slices.Equal(a, b) {
		t.Errorf("folder tokenizer encodes differently:\n%v\n%v", a, b)
	}
	if tc := readJSON(t, filepath.Join(dir, "tokenizer_config.json")); tc["model_max_length"] != 128.0 {
		t.Errorf("tokenizer_config.json model_max_length %v", tc["model_max_length"])
	}
	// The graph is the model, its data beside it under the name transformers.js loads.
	out := loadModel(t, filepath.Join(dir, "onnx", "model.onnx"))
	if len(out.Graph().GetInitializer()) != len(m.Graph().GetInitializer()) {
		t.Errorf("initializers %d, want %d", len(out.Graph().GetInitializer()), len(m.Graph().GetInitializer()))
	}
	for _, init := range out.Graph().GetInitializer() {
		for _, kv := range init.GetExternalData() {
			if kv.GetKey() == "location" && kv.GetValue() != "model.onnx_data" {
				t.Fatalf("%s: external data location %q", init.GetName(), kv.GetValue())
			}
		}
	}
	card, _ := os.ReadFile(filepath.Join(dir, "README.md"))
	for _, s := range []string{"llama: 2 layers, hidden 64, 8 heads (4 key/value)", "| q | 2 | 0.00% |", "shears convert tiny.onnx --format folder -o out",
		"converted from " + tokPath, "No evaluation was recorded"} {
		if !strings.Contains(string(card), s) {
			t.Errorf("README.md lacks %q:\n%s", s, card)
		}
	}
}

func TestFolderRefusesNonEmpty(t *testing.T) {
	m := loadModel(t, testkit.Synthetic(t, "tiny"))
	dir := t.TempDir()
	keep := filepath.Join(dir, "keep.txt")
	if err := os.WriteFile(keep, []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := WriteFolder(m, onnx.SaveOptions{}, dir, false, Options{Tokenizer: testkit.Tokenizer(t, 400)})
	if err == nil || !strings.Contains(err.Error(), dir+" exists and is not empty (keep.txt)") || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("error %v, want a refusal naming the folder and --force", err)
	}
	if b, _ := os.ReadFile(keep); string(b) != "mine" {
		t.Fatal("the existing folder was touched")
	}
	// --force replaces it whole.
	if _, err := WriteFolder(m, onnx.SaveOptions{}, dir, true, Options{Tokenizer: testkit.Tokenizer(t, 400)}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(keep); !os.IsNotExist(err) {
		t.Errorf("the old folder's file survived --force: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "onnx", "model.onnx")); err != nil {
		t.Error(err)
	}
	// A file in the way is refused even with force.
	file := filepath.Join(t.TempDir(), "f")
	os.WriteFile(file, nil, 0o644)
	if _, err := WriteFolder(m, onnx.SaveOptions{}, file, true, Options{}); err == nil || !strings.Contains(err.Error(), "is a file") {
		t.Errorf("file destination: %v", err)
	}
}

func TestFolderModelWithoutFacts(t *testing.T) {
	m := loadModel(t, testkit.Synthetic(t, "tiny"))
	parent := t.TempDir()
	dir := filepath.Join(parent, "out")
	// No facts at all.
	m.Proto.MetadataProps = nil
	_, err := WriteFolder(m, onnx.SaveOptions{}, dir, false, Options{Source: "bare.onnx"})
	if err == nil || !strings.Contains(err.Error(), "bare.onnx has no model_type") {
		t.Errorf("no facts: %v", err)
	}
	// Some facts missing: named.
	m2 := loadModel(t, testkit.Synthetic(t, "tiny"))
	m2.Proto.MetadataProps = slices.DeleteFunc(m2.Proto.MetadataProps, func(p *onnxpb.StringStringEntryProto) bool {
		return p.GetKey() == "num_key_value_heads" || p.GetKey() == "rope_theta"
	})
	_, err = WriteFolder(m2, onnx.SaveOptions{}, dir, false, Options{Source: "some.onnx"})
	if err == nil || !strings.Contains(err.Error(), `some.onnx lacks the facts config.json needs for model_type "llama": num_key_value_heads, rope_theta`) {
		t.Errorf("missing facts: %v", err)
	}
	if ents, _ := os.ReadDir(parent); len(ents) != 0 {
		t.Errorf("a failed folder left %d entries behind", len(ents))
	}
}

func TestFolderTokenizerNotConvertible(t *testing.T) {
	m := loadModel(t, testkit.Synthetic(t, "tiny"))
	vocab, scores := testkit.TokPieces(400)
	vocab[3] = "x" // byte 0 is no longer <0x00> at id 3
	tokPath := filepath.Join(t.TempDir(), "bad.bin")
	if err := os.WriteFile(tokPath, testkit.EncodeTok(vocab, scores), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "out")
	var warnings []string
	rep, err := WriteFolder(m, onnx.SaveOptions{}, dir, false, Options{Tokenizer: tokPath, Warn: func(s string) { warnings = append(warnings, s) }})
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(rep.Files, "tokenizer.json") {
		t.Error("a tokenizer.json was written for an unconvertible tokenizer")
	}
	found := false
	for _, w := range warnings {
		found = found || (strings.Contains(w, tokPath) && strings.Contains(w, "cannot be converted") && strings.Contains(w, "without tokenizer.json"))
	}
	if !found {
		t.Errorf("warnings %q lack one naming %s and saying the folder has no tokenizer", warnings, tokPath)
	}
	// The ids are still llama2.c's.
	if cfg := readJSON(t, filepath.Join(dir, "config.json")); cfg["bos_token_id"] != 1.0 || cfg["eos_token_id"] != 2.0 {
		t.Errorf("config ids %v %v", cfg["bos_token_id"], cfg["eos_token_id"])
	}
}

// TestFolderFromHFImport: a model carrying hf:config and shears:source_dir (what "shears import
// hf" records) gets config.json verbatim (plus transformers.js_config when its weights are
// external) and the tokenizer and generation config copied from the checkpoint folder.
func TestFolderFromHFImport(t *testing.T) {
	src := t.TempDir()
	l2c, err := tokenizer.LoadLlama2c(testkit.Tokenizer(t, 512))
	if err != nil {
		t.Fatal(err)
	}
	files, err := l2c.ToHF(0)
	if err != nil {
		t.Fatal(err)
	}
	hfConfig := `{
  "architectures": ["LlamaForCausalLM"],
  "model_type": "llama",
  "hidden_size": 64, "intermediate_size": 172, "num_hidden_layers": 2, "num_attention_heads": 8,
  "num_key_value_heads": 4, "vocab_size": 512, "max_position_embeddings": 128,
  "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "bos_token_id": 1, "eos_token_id": [2, 7],
  "torch_dtype": "bfloat16", "_name_or_path": "someone/tiny-llama"
}
`
	for name, b := range map[string][]byte{"tokenizer.json": files.TokenizerJSON, "tokenizer_config.json": files.ConfigJSON,
		"special_tokens_map.json": []byte(`{"bos_token": "<s>"}` + "\n"), "generation_config.json": []byte(`{"bos_token_id": 1, "eos_token_id": [2, 7], "temperature": 0.6}` + "\n"),
		"config.json": []byte(hfConfig)} {
		if err := os.WriteFile(filepath.Join(src, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, external := range []bool{false, true} {
		m := loadModel(t, testkit.Synthetic(t, "tiny"))
		m.Proto.MetadataProps = append(m.Proto.MetadataProps,
			&onnxpb.StringStringEntryProto{Key: proto.String(HFConfigKey), Value: proto.String(hfConfig)},
			&onnxpb.StringStringEntryProto{Key: proto.String(SourceDirKey), Value: proto.String(src)})
		dir := filepath.Join(t.TempDir(), "out")
		rep, err := WriteFolder(m, onnx.SaveOptions{ExternalData: external}, dir, false, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Tokenizer != "copied from "+filepath.Join(src, "tokenizer.json") {
			t.Errorf("tokenizer %q", rep.Tokenizer)
		}
		for _, name := range []string{"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"} {
			a, _ := os.ReadFile(filepath.Join(src, name))
			b, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil || string(a) != string(b) {
				t.Errorf("external=%v: %s not copied verbatim (%v)", external, name, err)
			}
		}
		got, _ := os.ReadFile(filepath.Join(dir, "config.json"))
		if !external && string(got) != hfConfig {
			t.Errorf("config.json is not hf:config verbatim:\n%s", got)
		}
		if external {
			cfg := readJSON(t, filepath.Join(dir, "config.json"))
			if tj, _ := cfg["transformers.js_config"].(map[string]any); tj["use_external_data_format"] != true || cfg["_name_or_path"] != "someone/tiny-llama" || cfg["torch_dtype"] != "bfloat16" {
				t.Errorf("external config.json %s", got)
			}
		}
		if rep.GenAI {
			g := readJSON(t, filepath.Join(dir, "genai_config.json"))
			if mm := g["model"].(map[string]any); mm["eos_token_id"] != 2.0 || mm["bos_token_id"] != 1.0 {
				t.Errorf("genai ids from the config's list: %v", mm)
			}
		}
		card, _ := os.ReadFile(filepath.Join(dir, "README.md"))
		if !strings.Contains(string(card), "base_model: \""+src+"\"") {
			t.Errorf("card's base is not the checkpoint folder:\n%s", card)
		}
	}
}
