package main

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/tokenizer"
	"github.com/shears-ml/shears/transform/lora"
)

// servePrompt is the prompt both clients continue.
const servePrompt = "Once upon a time, there was a little"

// generateIDs runs "shears generate DIR" (the folder's graph and tokenizer) greedily.
func generateIDs(t *testing.T, dir string, n int) []int {
	t.Helper()
	o, e, code := shears(t, "generate", dir, "--prompt", servePrompt, "--max-tokens", itoa(n), "--json")
	if code != 0 {
		t.Fatalf("generate %s: %s", dir, e)
	}
	var r struct{ IDs []int }
	if err := json.Unmarshal([]byte(o), &r); err != nil {
		t.Fatal(err)
	}
	return r.IDs
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func mustTok(t *testing.T, path string) tokenizer.Tokenizer {
	t.Helper()
	tok, err := tokenizer.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// checkClientsAgree makes six folders from a llama2.c checkpoint and tokenizer: the import
// (weights inline, and in onnx/model.onnx_data), its fp16-weight conversion, and the unmerged, dense and sparse exports of its 50%-sparse super-network with a random
// adapter B (so the three exports compute different functions). On each, transformers.js (local
// files only, CPU, greedy) must generate the ids "shears generate" does, from the same prompt
// encoded the same way.
func checkClientsAgree(t *testing.T, ckpt, tok string) {
	dir := t.TempDir()
	folders := map[string]string{"import": filepath.Join(dir, "import"), "import-external": filepath.Join(dir, "import-external")}
	if _, e, code := shears(t, "import", "llama2c", ckpt, "--format", "folder", "--tokenizer", tok, "-o", folders["import"]); code != 0 {
		t.Fatalf("import: %s", e)
	}
	// The same with the weights in onnx/model.onnx_data, which config.json announces to
	// transformers.js (transformers.js_config.use_external_data_format).
	if _, e, code := shears(t, "import", "llama2c", ckpt, "--format", "folder", "--external-data", "--tokenizer", tok, "-o", folders["import-external"]); code != 0 {
		t.Fatalf("import --external-data: %s", e)
	}
	if _, err := os.Stat(filepath.Join(folders["import-external"], "onnx", "model.onnx_data")); err != nil {
		t.Fatalf("import --external-data wrote no data file: %v", err)
	}
	model := filepath.Join(dir, "model.onnx")
	if _, e, code := shears(t, "import", "llama2c", ckpt, "-o", model); code != 0 {
		t.Fatalf("import: %s", e)
	}
	pruned := filepath.Join(dir, "pruned.onnx")
	prune50(t, model, pruned)
	super := filepath.Join(dir, "super.onnx")
	if _, e, code := shears(t, "adapt", pruned, "-o", super); code != 0 {
		t.Fatalf("adapt: %s", e)
	}
	editModel(t, super, func(m *onnx.Model) {
		meta, err := lora.ReadConfig(m)
		if err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(3, 4))
		for _, mod := range meta.Modules {
			v := make([]float32, int64(meta.RMax)*mod.Out)
			for i := range v {
				v[i] = float32(rng.NormFloat64() * 0.05)
			}
			onnx.SetFloat32s(m.Initializer(mod.B), v)
		}
	})
	// fp16 weights behind Casts (the graph still takes and gives float32).
	folders["fp16"] = filepath.Join(dir, "fp16")
	if _, e, code := shears(t, "convert", model, "--dtype", "fp16", "--format", "folder", "--tokenizer", tok, "-o", folders["fp16"]); code != 0 {
		t.Fatalf("convert --dtype fp16: %s", e)
	}
	for _, mode := range []string{"none", "dense", "sparse"} {
		folders[mode] = filepath.Join(dir, "export-"+mode)
		if _, e, code := shears(t, "export", "--super", super, "--ranks", "heuristic", "--merge", mode, "--format", "folder", "--tokenizer", tok, "-o", folders[mode]); code != 0 {
			t.Fatalf("export --merge %s: %s", mode, e)
		}
	}
	const n = 40
	prompt := append([]int{1}, mustTok(t, tok).Encode(servePrompt)...)
	for _, name := range []string{"import", "import-external", "fp16", "none", "dense", "sparse"} {
		if _, err := os.Stat(filepath.Join(folders[name], "genai_config.json")); err != nil {
			t.Errorf("%s: no genai_config.json (the graph lost the with-past interface?)", name)
		}
		want := generateIDs(t, folders[name], n)
		var js struct {
			IDs       []int `json:"ids"`
			PromptIDs []int `json:"prompt_ids"`
		}
		if err := json.Unmarshal(testkit.RunTransformersJS(t, "generate.mjs", nil, folders[name], servePrompt, itoa(n)), &js); err != nil {
			t.Fatal(err)
		}
		// transformers.js returns the EOS that ended generation; shears generate leaves it out.
		if k := len(js.IDs); k > 0 && k < n && js.IDs[k-1] == 2 {
			js.IDs = js.IDs[:k-1]
		}
		if !slices.Equal(js.PromptIDs, prompt) {
			t.Errorf("%s: transformers.js encodes the prompt as %v, shears as %v", name, js.PromptIDs, prompt)
		}
		switch {
		case len(want) == 0:
			t.Errorf("%s: nothing generated", name)
		case !slices.Equal(js.IDs, want):
			t.Errorf("%s: transformers.js generates\n%v\nshears generate\n%v", name, js.IDs, want)
		default:
			t.Logf("%s: %d ids agree", name, len(want))
		}
	}
}

// TestTransformersJSAgreesWithGenerate runs the four agreements on stories260K and tok512.bin.
func TestTransformersJSAgreesWithGenerate(t *testing.T) {
	ckpt := testkit.Shared(t, "models/stories260K/stories260K.bin")
	tok := testkit.Shared(t, "models/stories260K/tok512.bin")
	testkit.TransformersJSDir(t)
	testkit.ORT(t)
	checkClientsAgree(t, ckpt, tok)
}

// TestTransformersJSAgreesOnOwnFixture runs them on fixtures the project makes: a seeded random
// llama2.c checkpoint (testkit.TorchRandom) and a tokenizer trained in the tests.
func TestTransformersJSAgreesOnOwnFixture(t *testing.T) {
	testkit.TransformersJSDir(t)
	testkit.ORT(t)
	ex := testkit.TorchRandom(t, testkit.TorchTinySpec, 1)
	checkClientsAgree(t, ex.Checkpoint, testkit.Tokenizer(t, 512))
}
