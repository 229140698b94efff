package merge

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/shears-ml/shears/calibrate"
	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/models/llama2c"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/transform/layers"
	"github.com/shears-ml/shears/transform/lora"
	"github.com/shears-ml/shears/transform/prune"
)

// sparseStories imports stories260K and prunes its adapter targets to 50% by magnitude.
func sparseStories(t *testing.T) (*onnx.Model, []layers.Linear) {
	t.Helper()
	m, err := llama2c.Import(testkit.StoriesShaped(t))
	if err != nil {
		t.Fatal(err)
	}
	all, err := layers.Find(m)
	if err != nil {
		t.Fatal(err)
	}
	sel, err := layers.Select(all, "", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range sel {
		tp := m.Initializer(l.Weight)
		raw, err := m.RawData(tp)
		if err != nil {
			t.Fatal(err)
		}
		out, err := calibrate.Apply(l, tp, slices.Clone(raw), nil, prune.Config{Method: prune.Magnitude, Sparsity: 0.5})
		if err != nil {
			t.Fatal(err)
		}
		tp.RawData = out
	}
	return m, sel
}

// superNet adapts m and gives every B random values (as a trained adapter would have).
func superNet(t *testing.T, m *onnx.Model, targets []layers.Linear, cfg lora.Config, seed uint64) (*onnx.Model, *lora.Meta) {
	t.Helper()
	p, err := lora.NewPlan(m, targets, cfg)
	if err != nil {
		t.Fatal(err)
	}
	sup, err := lora.Apply(m, p, lora.ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	meta, err := lora.ReadConfig(sup)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(seed, 1))
	for _, mod := range meta.Modules {
		v := make([]float32, int64(meta.RMax)*mod.Out)
		for i := range v {
			v[i] = float32(rng.NormFloat64() * 0.05)
		}
		if err := onnx.SetFloat32s(sup.Initializer(mod.B), v); err != nil {
			t.Fatal(err)
		}
	}
	return sup, meta
}

// mixed gives group i rank ranks[i % len(ranks)].
func mixed(meta *lora.Meta, ranks ...int) map[string]int {
	out := map[string]int{}
	for i, g := range meta.Groups {
		out[g.Name] = ranks[i%len(ranks)]
	}
	return out
}

var testIDs = []int64{1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 2, 0, 17, 100}

// run returns the model's input names and its logits for testIDs (plus the rank masks of the
// super-network, when given).
func run(t *testing.T, m *onnx.Model, masks map[string][]float32) ([]string, []float32) {
	t.Helper()
	return testkit.RunLogits(t, m, 2, testIDs, testkit.Vectors(masks))
}

var maxDiff = testkit.MaxDiff[float32]

func weights(t *testing.T, m *onnx.Model, meta *lora.Meta) map[string][]float32 {
	t.Helper()
	out := map[string][]float32{}
	for _, mod := range meta.Modules {
		v, err := m.Float32s(m.Initializer(mod.Weight))
		if err != nil {
			t.Fatal(err)
		}
		out[mod.Weight] = v
	}
	return out
}

// TestExportStories: on 50%-sparse stories260K with random B and mixed ranks, every export
// computes the super-network's logits (max |Δ| < 1e-4) with input_ids as its only input; dense
// reports the zeros it filled; sparse after SparseAdapter training keeps every zero in place.
func TestExportStories(t *testing.T) {
	testkit.ORT(t)
	base, targets := sparseStories(t)
	for _, sparseAdapter := range []bool{false, true} {
		sup, meta := superNet(t, base, targets, lora.Config{Seed: 3, SparseAdapter: sparseAdapter}, 5)
		ranks := mixed(meta, 24, 16, 32)
		masks, err := meta.Masks(ranks)
		if err != nil {
			t.Fatal(err)
		}
		supIn, want := run(t, sup, masks)
		baseIn, baseLogits := run(t, base, nil)
		if len(supIn) != len(baseIn)+len(meta.Groups) {
			t.Fatalf("super-network inputs %v", supIn)
		}
		if d := maxDiff(want, baseLogits); d < 1e-2 {
			t.Fatalf("the random adapters barely change the logits (%g): the test would prove nothing", d)
		}
		baseW := weights(t, base, meta)
		for _, mode := range []Mode{None, Dense, Sparse} {
			name := string(mode)
			if sparseAdapter {
				name += "/sparse-adapter"
			}
			t.Run(name, func(t *testing.T) {
				out, rep, err := Export(sup, ranks, mode)
				if err != nil {
					t.Fatal(err)
				}
				in, got := run(t, out, nil)
				if !slices.Equal(in, baseIn) {
					t.Errorf("exported inputs %v, want the base model's %v", in, baseIn)
				}
				exact := mode != Sparse || sparseAdapter
				d := maxDiff(want, got)
				t.Logf("max |Δlogit| vs super-network: %.3g; zeros %d → %d of %d", d, rep.ZerosBefore, rep.ZerosAfter, rep.Total)
				if exact && !(d < 1e-4) {
					t.Errorf("max |Δlogit| = %g, want < 1e-4", d)
				}
				if rep.Exact != exact {
					t.Errorf("report says exact = %v, want %v", rep.Exact, exact)
				}
				if !exact && d < 1e-3 {
					t.Errorf("masked merge of a dense-trained adapter changed the logits by only %g", d)
				}
				if rep.SparsityBefore() < 0.49 || rep.SparsityBefore() > 0.51 {
					t.Errorf("sparsity before %.3f, want 0.5", rep.SparsityBefore())
				}
				if mode == None {
					return
				}
				if len(out.Graph().GetInitializer()) != len(base.Graph().GetInitializer()) || len(out.Graph().GetNode()) != len(base.Graph().GetNode()) {
					t.Errorf("merged graph has %d nodes, %d initializers; the base has %d, %d",
						len(out.Graph().GetNode()), len(out.Graph().GetInitializer()), len(base.Graph().GetNode()), len(base.Graph().GetInitializer()))
				}
				if _, err := lora.ReadConfig(out); err == nil {
					t.Error("merged model still carries the lora metadata")
				}
				outW := weights(t, out, meta)
				keep := mode == Sparse || sparseAdapter
				for _, l := range rep.Layers {
					w, nw := baseW[l.Weight], outW[l.Weight]
					var zb, za, moved int64
					for i := range w {
						if w[i] == 0 {
							zb++
						}
						if nw[i] == 0 {
							za++
						}
						if w[i] == 0 && nw[i] != 0 && keep {
							t.Fatalf("%s: zero at %d became %g", l.Weight, i, nw[i])
						}
						if w[i] != nw[i] {
							moved++
						}
					}
					if zb != l.ZerosBefore || za != l.ZerosAfter {
						t.Errorf("%s: report zeros %d → %d, counted %d → %d", l.Weight, l.ZerosBefore, l.ZerosAfter, zb, za)
					}
					if keep && za != zb {
						t.Errorf("%s: %d zeros, base had %d", l.Weight, za, zb)
					}
					if moved < int64(len(w))/3 {
						t.Errorf("%s: only %d of %d values changed", l.Weight, moved, len(w))
					}
					if sparseAdapter && l.Dropped != 0 || !sparseAdapter && (l.Dropped < 0.3 || l.Dropped > 0.9) {
						t.Errorf("%s: dropped share %g", l.Weight, l.Dropped)
					}
				}
				if !keep && rep.SparsityAfter() > 0.001 {
					t.Errorf("dense merge: sparsity %.3f → %.3f, want the zeros filled", rep.SparsityBefore(), rep.SparsityAfter())
				}
			})
		}
	}
}
