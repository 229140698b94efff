package main

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/onnx"
)

// fusedModel writes a GenAI-style tiny LLaMA (SimplifiedLayerNormalization,
// SkipSimplifiedLayerNormalization, RotaryEmbedding, GroupQueryAttention) into dir, and
// returns its path and that of the plain graph it was made from.
func fusedModel(t *testing.T, dir string) (fused, plain string) {
	t.Helper()
	m, plain, _ := testkit.FusedTiny(t, testkit.GQA, 5)
	fused = filepath.Join(dir, "fused.onnx")
	if err := m.Save(fused, onnx.SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	return fused, plain
}

// onnxruntime's fused operators run as they are: inspect labels the linears, generate uses the
// cache (same ids as recomputing), magnitude pruning keeps the operators.
func TestFusedOpsInspectGeneratePrune(t *testing.T) {
	testkit.ORT(t)
	dir := t.TempDir()
	model, _ := fusedModel(t, dir)
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
	// Training lowers the fused operators: the step's gradients through the lowered rotary and
	// GroupQueryAttention agree with finite differences.
	o, e, code := shears(t, "gradcheck", model, "--wrt", `model\.layers\.0\.attn\.q_proj\.MatMul\.weight|model\.layers\.1\.post_attention_layernorm\.weight`)
	if code != 0 || !strings.Contains(o, "max rel err") {
		t.Errorf("gradcheck: %s%s", o, e)
	}
}

// Wanda on the fused graph (calibrated through the train form, the fused attention's past
// dropped) zeroes the same weights as on the plain graph with the same weights and data.
func TestFusedOpsWandaMatchesPlain(t *testing.T) {
	tok := testkit.Shared(t, "models/stories260K/tok512.bin")
	calib := testkit.Shared(t, "data/llm-adapters/ARC-Easy-train.json")
	testkit.ORT(t)
	dir := t.TempDir()
	fused, plain := fusedModel(t, dir)
	zeros := func(model string, oneShot bool) map[[2]any][]bool {
		out := filepath.Join(dir, "pruned.onnx")
		args := []string{"prune", model, "-o", out, "--sparsity", "0.5", "--calib", calib, "--tokenizer", tok, "--samples", "8", "--seq-len", "48", "--seed", "1"}
		if oneShot {
			args = append(args, "--one-shot")
		}
		if _, e, code := shears(t, args...); code != 0 {
			t.Fatalf("prune %s: %s", model, e)
		}
		res := map[[2]any][]bool{}
		for k, l := range zeroFlags(t, out) {
			res[k] = l.Zero
		}
		return res
	}
	for _, oneShot := range []bool{false, true} {
		a, b := zeros(plain, oneShot), zeros(fused, oneShot)
		if len(a) != 15 || len(b) != 15 {
			t.Fatalf("linears: plain %d, fused %d", len(a), len(b))
		}
		for k, za := range a {
			zb := b[k]
			diff := 0
			for i := range za {
				if i >= len(zb) || za[i] != zb[i] {
					diff++
				}
			}
			if diff > 0 {
				t.Errorf("one-shot %v, layer %v: %d of %d mask entries differ", oneShot, k, diff, len(za))
			}
		}
	}
}
