package train

import (
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
)

// The train step's gradients w.r.t. norm weights and a few linears of stories260K match float64
// central differences.
func TestGradCheckStories(t *testing.T) {
	testkit.ORT(t)
	m := stories(t)
	names := []string{"model.layers.0.input_layernorm.weight", "model.layers.4.mlp.down_proj.weight",
		"model.layers.2.self_attn.k_proj.weight", "model.norm.weight", "lm_head.weight"}
	rep, _, err := GradCheck(m, names, GradCheckOptions{Batch: 2, Seq: 12, Samples: 8, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, te := range rep.Tensors {
		t.Logf("%-45s max rel err %.3g (%d coords)", te.Name, te.MaxRelErr, te.Checked)
	}
	if rep.DType != "float64" || len(rep.Tensors) != len(names) {
		t.Fatalf("report %+v", rep)
	}
	if tol := GradCheckTolerance(false); !(rep.MaxRelErr <= tol) {
		t.Fatalf("max rel err %.3g above %.g", rep.MaxRelErr, tol)
	}
}
