package pipeline

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/models/llama2c"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/runtime"
	"github.com/shears-ml/shears/transform/lora"
)

func fileSize(t *testing.T, p string) int64 {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// dataFiles is the set of external-data locations a saved model refers to.
func dataFiles(t *testing.T, p string) map[string]int {
	t.Helper()
	m, err := onnx.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	out := map[string]int{}
	for _, x := range m.Graph().GetInitializer() {
		for _, e := range x.GetExternalData() {
			if e.GetKey() == "location" {
				out[e.GetValue()]++
			}
		}
	}
	return out
}

// logitsOf runs the model at p on ids with every rank mask at r_max.
func logitsOf(t *testing.T, p string, ids []int64) []float32 {
	t.Helper()
	s, err := runtime.OpenFile(p, runtime.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	masks := map[string]*runtime.Tensor{}
	for _, x := range s.Inputs() {
		if strings.HasPrefix(x.Name, "lora_rank_mask.") {
			masks[x.Name] = runtime.F32([]int64{8}, lora.RankMask(8, 8))
		}
	}
	in := testkit.Feeds(t, s.Inputs(), runtime.I64([]int64{1, int64(len(ids))}, ids), masks)
	out, err := s.Run(in, []string{"logits"})
	if err != nil {
		t.Fatal(err)
	}
	return out["logits"].F32
}

// The super-network of an external-data base refers to the base's data file instead of
// copying it, and computes what the copy-made variant computes.
func TestAdaptSharesBaseData(t *testing.T) {
	testkit.ORT(t)
	m, err := llama2c.Import(testkit.StoriesShaped(t))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	base := filepath.Join(dir, "base.onnx")
	if err := m.Save(base, onnx.SaveOptions{ExternalData: true}); err != nil {
		t.Fatal(err)
	}
	baseData := fileSize(t, base+".data")
	cfg := lora.Config{Ranks: []int{8, 4}, Alpha: 16}
	shared := filepath.Join(dir, "super.onnx")
	var warned []string
	warn := func(s string) { warned = append(warned, s) }
	if _, err := Adapt(AdaptOptions{Model: base, Out: shared, LoRA: cfg, Warn: warn}); err != nil {
		t.Fatal(err)
	}
	copied := filepath.Join(dir, "copy.onnx")
	if _, err := Adapt(AdaptOptions{Model: base, Out: copied, LoRA: cfg, CopyBase: true, Warn: warn}); err != nil {
		t.Fatal(err)
	}
	if len(warned) > 0 {
		t.Fatalf("warnings next to the base: %v", warned)
	}
	// Disk: the shared data file holds the adapters only, the copy the base again.
	sd, cd := fileSize(t, shared+".data"), fileSize(t, copied+".data")
	t.Logf("base data %d B; shared super-network's own data %d B; copy %d B", baseData, sd, cd)
	if cd < baseData || sd >= baseData/4 {
		t.Fatalf("data files: base %d, shared %d, copy %d; the shared one must hold the adapters only", baseData, sd, cd)
	}
	if after := fileSize(t, base+".data"); after != baseData {
		t.Fatalf("the base's data file changed size: %d → %d", baseData, after)
	}
	locs := dataFiles(t, shared)
	if locs["base.onnx.data"] == 0 || locs["super.onnx.data"] == 0 || len(locs) != 2 {
		t.Fatalf("the shared super-network refers to %v; want base.onnx.data (weights) and super.onnx.data (adapters)", locs)
	}
	if l := dataFiles(t, copied); l["base.onnx.data"] != 0 {
		t.Fatalf("the copy refers to the base's data: %v", l)
	}
	// Same numbers, with B made nonzero in both so that the adapters count.
	for _, p := range []string{shared, copied} {
		sm, err := onnx.Load(p)
		if err != nil {
			t.Fatal(err)
		}
		meta, err := lora.ReadConfig(sm)
		if err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(3, 4))
		for _, mod := range meta.Modules {
			b := make([]float32, 8*mod.Out)
			for i := range b {
				b[i] = float32(rng.NormFloat64() * 0.02)
			}
			if err := onnx.SetFloat32s(sm.Initializer(mod.B), b); err != nil {
				t.Fatal(err)
			}
		}
		q := strings.TrimSuffix(p, ".onnx") + "-trained.onnx"
		if err := ShareSave(sm, q, onnx.SaveOptions{ExternalData: true}, p == shared, warn); err != nil {
			t.Fatal(err)
		}
		sm.Close()
	}
	ids := []int64{1, 34, 87, 200, 5, 9, 411, 17}
	a, b := logitsOf(t, strings.TrimSuffix(shared, ".onnx")+"-trained.onnx", ids), logitsOf(t, strings.TrimSuffix(copied, ".onnx")+"-trained.onnx", ids)
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("logit %d: shared %v, copied %v", i, a[i], b[i])
		}
	}
	if l := dataFiles(t, strings.TrimSuffix(shared, ".onnx")+"-trained.onnx"); l["base.onnx.data"] == 0 {
		t.Fatalf("re-saving a shared super-network copied the base: %v", l)
	}

	// An output elsewhere cannot refer to the base's file: a warning, and a full copy.
	other := filepath.Join(t.TempDir(), "super.onnx")
	if _, err := Adapt(AdaptOptions{Model: base, Out: other, LoRA: cfg, Warn: warn}); err != nil {
		t.Fatal(err)
	}
	if len(warned) != 1 || !strings.Contains(warned[0], "base.onnx.data") {
		t.Fatalf("warnings %v; want one naming the base's data file", warned)
	}
	if od := fileSize(t, other+".data"); od < baseData {
		t.Fatalf("the copy elsewhere has %d B of data, the base %d", od, baseData)
	}
}
