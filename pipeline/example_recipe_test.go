package pipeline

import (
	"path/filepath"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
)

// TestExampleRecipeParses: the make demo recipe loads, with its quantize section filled in.
func TestExampleRecipeParses(t *testing.T) {
	r, err := LoadRecipe(filepath.Join(testkit.RepoRoot(t), "examples", "stories260K.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if q := r.Quantize; q == nil || q.Bits != 4 || q.QA != "gptq" || len(q.Methods) != 2 || q.Calib != r.Prune.Calib {
		t.Fatalf("quantize section: %+v", r.Quantize)
	}
}
