package merge

import (
	"bytes"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/transform/lora"
)

// A saved export streams: the Plan's model keeps the base weights until the save, whose
// Transform merges each one as it is written (from a super-network read lazily from its
// external data), and the file holds exactly the tensors the in-memory Export computes, with
// the same report.
func TestPlanSaveStreamsTheMerge(t *testing.T) {
	base, targets := sparseStories(t)
	sup, meta := superNet(t, base, targets, lora.Config{Seed: 3}, 5)
	dir := t.TempDir()
	supPath := filepath.Join(dir, "super.onnx")
	if err := sup.Save(supPath, onnx.SaveOptions{ExternalData: true}); err != nil {
		t.Fatal(err)
	}
	lazy, err := onnx.Load(supPath)
	if err != nil {
		t.Fatal(err)
	}
	defer lazy.Close()
	ranks := mixed(meta, 24, 16, 32)
	baseW := weights(t, base, meta)
	for _, mode := range []Mode{Dense, Sparse} {
		t.Run(string(mode), func(t *testing.T) {
			want, wantRep, err := Export(sup, ranks, mode)
			if err != nil {
				t.Fatal(err)
			}
			p, err := Prepare(lazy, ranks, mode)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(p.Report, wantRep) {
				t.Errorf("the plan's report differs from Export's:\n%+v\n%+v", p.Report, wantRep)
			}
			for name, w := range weights(t, p.Model, meta) {
				if d := maxDiff(w, baseW[name]); d != 0 {
					t.Fatalf("%s is already merged before the save (max |Δ| %g): the plan holds merged weights", name, d)
				}
			}
			out := filepath.Join(dir, string(mode)+".onnx")
			if err := p.Model.Save(out, p.SaveOptions(onnx.SaveOptions{ExternalData: true})); err != nil {
				t.Fatal(err)
			}
			got, err := onnx.Load(out)
			if err != nil {
				t.Fatal(err)
			}
			defer got.Close()
			gi, wi := got.Graph().GetInitializer(), want.Graph().GetInitializer()
			if len(gi) != len(wi) {
				t.Fatalf("%d initializers saved, Export has %d", len(gi), len(wi))
			}
			merged := 0
			for i, x := range gi {
				a, err := got.RawData(x)
				if err != nil {
					t.Fatal(err)
				}
				b, err := want.RawData(wi[i])
				if err != nil {
					t.Fatal(err)
				}
				if x.GetName() != wi[i].GetName() || !bytes.Equal(a, b) {
					t.Fatalf("initializer %d: saved %s differs from Export's %s", i, x.GetName(), wi[i].GetName())
				}
				if p.Touches(x.GetName()) {
					merged++
				}
			}
			if merged != len(baseW) {
				t.Errorf("%d merged weights saved, want %d", merged, len(baseW))
			}
		})
	}
}
