package main

import (
	"path/filepath"
	"reflect"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/internal/testsynth"
	"github.com/shears-ml/shears/models/llama"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
)

// fusedModel writes a GenAI-style tiny LLaMA (SimplifiedLayerNormalization,
// SkipSimplifiedLayerNormalization, RotaryEmbedding, GroupQueryAttention) into dir.
func fusedModel(t *testing.T, dir string) string {
	t.Helper()
	cfg, _ := llama.Preset("tiny")
	plainPath := filepath.Join(dir, "plain.onnx")
	if err := llama.WriteSynthetic(plainPath, cfg, 5, onnxpb.TensorProto_FLOAT); err != nil {
		t.Fatal(err)
	}
	plain, err := onnx.Load(plainPath)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	m, err := testsynth.Fused(plain, cfg, testsynth.GQA)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "fused.onnx")
	if err := m.Save(path, onnx.SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	return path
}

// onnxruntime's fused operators run as they are: inspect labels the linears, generate uses the
// cache (same ids as recomputing), magnitude pruning keeps the operators.
func TestFusedOpsInspectGeneratePrune(t *testing.T) {
	testkit.ORT(t)
	dir := t.TempDir()
	model := fusedModel(t, dir)
	r := inspectJSON(t, model)
	roles := map[string]int{}
	for _, l := range r.Linears {
		roles[l.Role]++
	}
	if want := map[string]int{"q": 2, "k": 2, "v": 2, "o": 2, "gate": 2, "up": 2, "down": 2}; !reflect.DeepEqual(roles, want) || len(r.Head) != 1 {
		t.Errorf("roles %v (head %d), want %v", roles, len(r.Head), want)
	}
	if r.Ops["com.microsoft::GroupQueryAttention"] != 2 {
		t.Errorf("ops %v", r.Ops)
	}
	a := generateJSON(t, model, "--prompt-ids", "1,7,9", "--max-tokens", "12", "--ignore-eos", "--json")
	b := generateJSON(t, model, "--prompt-ids", "1,7,9", "--max-tokens", "12", "--ignore-eos", "--json", "--no-cache")
	if a.Caching != "kv cache" || len(a.IDs) != 12 || !reflect.DeepEqual(a.IDs, b.IDs) {
		t.Errorf("cached %s %v, recomputed %v", a.Caching, a.IDs, b.IDs)
	}
	out := filepath.Join(dir, "pruned.onnx")
	if _, e, code := shears(t, "prune", model, "-o", out, "--sparsity", "0.5", "--method", "magnitude"); code != 0 {
		t.Fatalf("prune: %s", e)
	}
	p := inspectJSON(t, out)
	if !(p.Sparsity > 0.49 && p.Sparsity < 0.51) || p.Ops["com.microsoft::RotaryEmbedding"] != 4 {
		t.Errorf("pruned: sparsity %v, ops %v", p.Sparsity, p.Ops)
	}
	if c := generateJSON(t, out, "--prompt-ids", "1,7,9", "--max-tokens", "4", "--ignore-eos", "--json"); len(c.IDs) != 4 {
		t.Errorf("pruned model generated %v", c.IDs)
	}
}
