package calibrate

import (
	"fmt"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/transform/decoder"
	"github.com/shears-ml/shears/transform/layers"
	"github.com/shears-ml/shears/transform/prune"
)

// zeroMask returns, per (block, role), which weights of the linear are zero as [in][out] in
// ONNX layout, whatever the stored layout.
func zeroMask(t *testing.T, m *onnx.Model, ls []layers.Linear) map[string][]bool {
	t.Helper()
	out := map[string][]bool{}
	for _, l := range ls {
		w, err := m.Float32s(m.Initializer(l.Weight))
		if err != nil {
			t.Fatal(err)
		}
		z := make([]bool, len(w))
		for i := int64(0); i < l.In; i++ {
			for j := int64(0); j < l.Out; j++ {
				k := i*l.Out + j
				if l.Transposed {
					k = j*l.In + i
				}
				z[i*l.Out+j] = w[k] == 0
			}
		}
		out[fmt.Sprintf("%d/%s", l.Block, l.Role)] = z
	}
	return out
}

// PyTorch's optimum-style with-past export of stories260K and its merged decoder, pruned with
// Wanda 50% on the same calibration windows, zero the same weights as the llama2.c import. The
// export's q and k columns are Hugging Face's permutation of llama2.c's (each head's interleaved
// pairs (2i, 2i+1) moved to (i, i + hd/2)); Wanda decides each output column alone, so their
// masks are the import's masks with the columns permuted.
func TestTorchExportWandaMasksEqualImport(t *testing.T) {
	f := setup(t)
	e := testkit.TorchStories260K(t)
	cfg := prune.Config{Method: prune.Wanda, Sparsity: 0.5}
	want := zeroMask(t, f.prune(t, cfg, false, "ours.onnx"), f.targets)
	const hd = 8                  // stories260K's head dim
	perm := func(j int64) int64 { // our column j → the export's column
		h, r := j/hd, j%hd
		return h*hd + map[bool]int64{true: r / 2, false: r/2 + hd/2}[r%2 == 0]
	}
	for _, path := range []string{e.WithPast, e.Merged} {
		m, err := onnx.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		branch, err := decoder.Branch(m)
		if err != nil {
			t.Fatal(err)
		}
		all, err := layers.Find(branch)
		if err != nil {
			t.Fatal(err)
		}
		targets, _ := layers.Select(all, "", "")
		if len(targets) != 35 {
			t.Fatalf("%s: %d targets, want 35", path, len(targets))
		}
		g := &fixture{dir: f.dir, m: m, targets: targets, windows: f.windows}
		got := zeroMask(t, g.prune(t, cfg, false, "torch.onnx"), targets)
		for key, w := range want {
			gz, ok := got[key]
			if !ok || len(gz) != len(w) {
				t.Fatalf("%s: no linear %s of %d weights in the export (have %d)", path, key, len(w), len(gz))
			}
			l := targets[0]
			for _, x := range targets {
				if fmt.Sprintf("%d/%s", x.Block, x.Role) == key {
					l = x
				}
			}
			permuted := l.Role == "q" || l.Role == "k"
			diff := 0
			for i := int64(0); i < l.In; i++ {
				for j := int64(0); j < l.Out; j++ {
					jj := j
					if permuted {
						jj = perm(j)
					}
					if w[i*l.Out+j] != gz[i*l.Out+jj] {
						diff++
					}
				}
			}
			if diff > 0 {
				t.Errorf("%s %s: %d of %d mask entries differ from the import's", path, key, diff, len(w))
			}
		}
	}
}
