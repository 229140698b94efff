package calibrate

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/lm"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/transform/decoder"
	"github.com/shears-ml/shears/transform/layers"
	"github.com/shears-ml/shears/transform/prune"
)

// maskHashes are SHA-256 digests of the 50% Wanda masks of stories260K (llama2.c import, the 6
// ARC-Easy calibration windows of setup), recorded from the input_ids-only import before the
// importer wrote the KV-cache interface: the with-past import must prune exactly the same weights.
var maskHashes = map[bool]string{
	false: "93da091be5e712cc06fcc5565e9fdf2aaa86ae8ff276ffd4ba95bb6d7e481027", // sequential
	true:  "2d04b5c12a62c7626ccc9a6e982d0189771604338e7d990f373b150640cc2cd6", // one-shot
}

// maskHash digests which weights of the targets are zero, in target order.
func maskHash(t *testing.T, f *fixture, pm *onnx.Model) string {
	t.Helper()
	h := sha256.New()
	for _, l := range f.targets {
		got, err := pm.Float32s(pm.Initializer(l.Weight))
		if err != nil {
			t.Fatal(err)
		}
		h.Write([]byte(l.Weight))
		bits := make([]byte, len(got))
		for k, x := range got {
			if x == 0 {
				bits[k] = 1
			}
		}
		h.Write(bits)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func TestWithPastWandaMasksEqualInputIDsOnlyForm(t *testing.T) {
	testkit.Shared(t, "models/stories260K/stories260K.bin") // digests of the trained model's masks
	f := setup(t)
	it, err := lm.Read(f.m)
	if err != nil {
		t.Fatal(err)
	}
	if !it.HasPast() || !it.AttentionMask || !it.PositionIDs {
		t.Fatalf("the llama2.c import is not in the with-past form: %+v", it)
	}
	for _, oneShot := range []bool{false, true} {
		pm := f.prune(t, prune.Config{Method: prune.Wanda, Sparsity: 0.5}, oneShot, "h.onnx")
		if got := maskHash(t, f, pm); got != maskHashes[oneShot] {
			t.Errorf("one-shot=%v: mask digest %s, want %s (the input_ids-only import's)", oneShot, got, maskHashes[oneShot])
		}
	}
}

// The merged-decoder form of the same import (optimum's decoder_model_merged.onnx layout, made
// by decoder.Merge): calibration specialises its no-cache branch, and the masks are those of the
// plain with-past form, pruned in the same run (and, on the trained stories260K, the recorded
// input_ids-only digest; the stand-in of a clone without ../shared has other weights).
func TestMergedDecoderWandaMasksEqualInputIDsOnlyForm(t *testing.T) {
	f := setup(t)
	cfg := prune.Config{Method: prune.Wanda, Sparsity: 0.5}
	want := maskHash(t, f, f.prune(t, cfg, false, "plain.onnx"))
	if testkit.TrainedStories(t) && want != maskHashes[false] {
		t.Fatalf("plain form: mask digest %s, want %s (the input_ids-only import's)", want, maskHashes[false])
	}
	nc, err := decoder.NoCache(f.m)
	if err != nil {
		t.Fatal(err)
	}
	mg, err := decoder.Merge(f.m, nc)
	if err != nil {
		t.Fatal(err)
	}
	branch, err := decoder.Branch(mg)
	if err != nil {
		t.Fatal(err)
	}
	all, err := layers.Find(branch)
	if err != nil {
		t.Fatal(err)
	}
	f.targets, _ = layers.Select(all, "", "")
	f.m = mg
	pm := f.prune(t, cfg, false, "merged.onnx")
	if !decoder.IsMerged(pm) {
		t.Error("the pruned merged decoder is no longer merged")
	}
	if got := maskHash(t, f, pm); got != want {
		t.Errorf("mask digest %s, want %s (the plain with-past form's)", got, want)
	}
}
