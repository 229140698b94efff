package deploy

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/models/llama2c"
	"github.com/shears-ml/shears/onnx"
)

// goldenStory is stories260K's greedy continuation of BOS + "Once upon a time" (llama2.c's
// run.c gives the same ids).
var goldenStory = []int{432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337, 410, 408, 419, 292}

// tjsGenerate runs transformers.js on a folder: greedy, CPU, local files only.
func tjsGenerate(t *testing.T, dir, prompt string, n int) (ids, promptIDs []int) {
	t.Helper()
	var r struct {
		IDs       []int `json:"ids"`
		PromptIDs []int `json:"prompt_ids"`
	}
	if err := json.Unmarshal(testkit.RunTransformersJS(t, "generate.mjs", nil, dir, prompt, itoa(n)), &r); err != nil {
		t.Fatal(err)
	}
	return r.IDs, r.PromptIDs
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// TestFolderTorchWithPastInTransformersJS gives PyTorch's optimum-style with-past export of
// stories260K the facts our import records, writes it as a folder with tok512.bin converted,
// and lets transformers.js generate from it: the golden story, prompt encoded as llama2.c does.
func TestFolderTorchWithPastInTransformersJS(t *testing.T) {
	ckpt := testkit.Shared(t, "models/stories260K/stories260K.bin")
	tok := testkit.Shared(t, "models/stories260K/tok512.bin")
	testkit.TransformersJSDir(t)
	ex := testkit.TorchStories260K(t)
	ours, err := llama2c.Import(ckpt)
	if err != nil {
		t.Fatal(err)
	}
	m := loadModel(t, ex.WithPast)
	m.Proto.MetadataProps = ours.Proto.MetadataProps
	dir := filepath.Join(t.TempDir(), "stories260K")
	rep, err := WriteFolder(m, onnx.SaveOptions{}, dir, false, Options{Source: ex.WithPast, Tokenizer: tok})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.GenAI {
		t.Fatalf("no genai_config.json for a with-past graph: %+v", rep)
	}
	g := readJSON(t, filepath.Join(dir, "genai_config.json"))
	dec := g["model"].(map[string]any)["decoder"].(map[string]any)
	if dec["filename"] != "onnx/model.onnx" || dec["num_hidden_layers"] != 5.0 || dec["num_key_value_heads"] != 4.0 || dec["head_size"] != 8.0 ||
		dec["inputs"].(map[string]any)["past_key_names"] != "past_key_values.%d.key" || dec["outputs"].(map[string]any)["present_value_names"] != "present.%d.value" {
		t.Errorf("genai_config.json decoder %v", dec)
	}
	ids, prompt := tjsGenerate(t, dir, "Once upon a time", len(goldenStory))
	if !slices.Equal(prompt, []int{1, 403, 407, 261, 378}) {
		t.Errorf("transformers.js prompt ids %v", prompt)
	}
	if !slices.Equal(ids, goldenStory) {
		t.Errorf("transformers.js generates %v, want %v", ids, goldenStory)
	}
}
