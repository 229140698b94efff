package main

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/runtime"
	"github.com/shears-ml/shears/transform/layers"
	"github.com/shears-ml/shears/transform/lora"
	"github.com/shears-ml/shears/transform/merge"
)

// editModel loads path, applies fn and saves it back.
func editModel(t *testing.T, path string, fn func(m *onnx.Model)) {
	t.Helper()
	m, err := onnx.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	fn(m)
	if err := m.Save(path, onnx.SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	m.Close()
}

// TestExportCLI: a half-zero stories260K adapted with --sparse-adapter, B filled with random
// values, exported with --merge sparse --dtype fp16 --peft: the report says exact with every zero
// kept, the file opens in onnxruntime with input_ids as its only input, the PEFT files exist.
func TestExportCLI(t *testing.T) {
	testkit.ORT(t)
	dir := t.TempDir()
	model := importStories(t, dir)
	editModel(t, model, func(m *onnx.Model) {
		all, _ := layers.Find(m)
		sel, _ := layers.Select(all, "", "")
		for _, l := range sel {
			w, _ := m.Float32s(m.Initializer(l.Weight))
			for i := range w {
				if i%2 == 0 {
					w[i] = 0
				}
			}
			onnx.SetFloat32s(m.Initializer(l.Weight), w)
		}
	})
	super := filepath.Join(dir, "super.onnx")
	if _, e, code := shears(t, "adapt", model, "-o", super, "--sparse-adapter"); code != 0 {
		t.Fatalf("adapt: %s", e)
	}
	var groups []string
	editModel(t, super, func(m *onnx.Model) {
		meta, err := lora.ReadConfig(m)
		if err != nil || !meta.SparseAdapter {
			t.Fatalf("meta %+v, %v", meta, err)
		}
		rng := rand.New(rand.NewPCG(1, 2))
		for _, mod := range meta.Modules {
			v := make([]float32, int64(meta.RMax)*mod.Out)
			for i := range v {
				v[i] = float32(rng.NormFloat64() * 0.05)
			}
			onnx.SetFloat32s(m.Initializer(mod.B), v)
		}
		for _, g := range meta.Groups {
			groups = append(groups, g.Name)
		}
	})

	out := filepath.Join(dir, "merged.onnx")
	peft := filepath.Join(dir, "peft")
	o, e, code := shears(t, "export", "--super", super, "--ranks", "heuristic", "-o", out, "--merge", "sparse", "--dtype", "fp16", "--peft", peft, "--json")
	if code != 0 {
		t.Fatalf("export: %s", e)
	}
	var rep struct {
		Mode       string          `json:"mode"`
		Exact      bool            `json:"exact"`
		Before     int64           `json:"zeros_before"`
		After      int64           `json:"zeros_after"`
		Total      int64           `json:"total"`
		Selection  merge.Selection `json:"selection"`
		DType      string          `json:"dtype"`
		LayerCount []merge.Layer   `json:"layers"`
	}
	if err := json.Unmarshal([]byte(o), &rep); err != nil {
		t.Fatalf("%v\n%s", err, o)
	}
	if rep.Mode != "sparse" || !rep.Exact || rep.Before != rep.Total/2 || rep.After != rep.Before || rep.DType != "fp16" ||
		rep.Selection.Strategy != "heuristic" || rep.Selection.Params != 95040 || len(rep.LayerCount) != 25 {
		t.Errorf("report: %s", o)
	}
	s, err := runtime.OpenFile(out, runtime.Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var names []string
	for _, in := range s.Inputs() {
		names = append(names, in.Name)
	}
	// The with-past interface of the import: ids, mask, positions, 5 layers' past.
	if len(names) != 13 || !slices.Equal(names[:4], []string{"input_ids", "attention_mask", "position_ids", "past_key_values.0.key"}) {
		t.Errorf("exported inputs %v", names)
	}
	// The fp16 file against the same export in fp32: weights stored as fp16 with the zeros
	// kept, logits within fp16 rounding (weights move by ≤ 2^-11 relative; measured ~1.3 units
	// through the 5 layers, see transform/convert), file about half as large in its matrices.
	out32 := filepath.Join(dir, "merged32.onnx")
	if _, e, code := shears(t, "export", "--super", super, "--ranks", "heuristic", "-o", out32, "--merge", "sparse"); code != 0 {
		t.Fatalf("export fp32: %s", e)
	}
	m16, err := onnx.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	defer m16.Close()
	m32, err := onnx.Load(out32)
	if err != nil {
		t.Fatal(err)
	}
	defer m32.Close()
	ls32, _ := layers.Find(m32)
	sel32, _ := layers.Select(ls32, "", "")
	ls16, _ := layers.Find(m16)
	sel16, _ := layers.Select(ls16, "", "")
	if len(sel16) != len(sel32) {
		t.Fatalf("fp16 export: %d linears, fp32 export: %d", len(sel16), len(sel32))
	}
	for i, l := range sel16 {
		if dt := onnx.DataType(m16.Initializer(l.Weight)); dt != onnxpb.TensorProto_FLOAT16 {
			t.Fatalf("%s stored as %s", l.Weight, dt)
		}
		z16, _, _ := layers.CountZeros(m16, l)
		z32, _, _ := layers.CountZeros(m32, sel32[i])
		if z16 != z32 {
			t.Errorf("%s: %d zeros in fp16, %d in fp32", l.Node, z16, z32)
		}
	}
	logits := func(path string) []float32 {
		s, err := runtime.OpenFile(path, runtime.Options{Threads: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		ids := make([]int64, 32)
		for i := range ids {
			ids[i] = int64(1 + 13*i%500)
		}
		res, err := s.Run(testkit.Feeds(t, s.Inputs(), runtime.I64([]int64{1, 32}, ids), nil), []string{"logits"})
		if err != nil {
			t.Fatal(err)
		}
		return res["logits"].F32
	}
	a, b := logits(out32), logits(out)
	var d, scale float64
	for i := range a {
		d = math.Max(d, math.Abs(float64(a[i]-b[i])))
		scale = math.Max(scale, math.Abs(float64(a[i])))
	}
	if d == 0 || !(d <= 4*scale/2048) {
		t.Errorf("fp16 export logits differ by %g (max |logit| %g); want 0 < Δ ≤ 4·2^-11 relative", d, scale)
	}
	for _, f := range []string{merge.PEFTConfigFile, merge.PEFTWeightsFile} {
		if _, err := os.Stat(filepath.Join(peft, f)); err != nil {
			t.Error(err)
		}
	}

	// A CONFIG.json with mixed ranks, dense merge, human summary: the zeros are filled.
	ranks := map[string]int{}
	for i, g := range groups {
		ranks[g] = []int{32, 16}[i%2]
	}
	cfg, _ := json.Marshal(merge.Selection{Ranks: ranks, Strategy: "hill-climb", Metric: &merge.Metric{Name: "val_loss", Value: 1.5}})
	cfgPath := filepath.Join(dir, "best.json")
	os.WriteFile(cfgPath, cfg, 0o644)
	o, e, code = shears(t, "export", "--super", super, "--config", cfgPath, "-o", filepath.Join(dir, "dense.onnx"), "--merge", "none")
	if code != 0 {
		t.Fatalf("export --config: %s", e)
	}
	if !strings.Contains(o, "sub-adapter (hill-climb): 8 groups at r=32, 7 groups at r=16") || !strings.Contains(o, "sparsity 50.00% → 50.00%") {
		t.Errorf("summary:\n%s", o)
	}

	delete(ranks, groups[3])
	cfg, _ = json.Marshal(merge.Selection{Ranks: ranks})
	os.WriteFile(cfgPath, cfg, 0o644)
	for _, c := range []struct {
		args []string
		want string
		code int
	}{
		{[]string{"--super", super, "--config", cfgPath, "-o", out}, "best.json: merge: 1 of 15 groups have no rank (first: layers.1.qkv)", 1},
		{[]string{"--super", super, "-o", out}, "exactly one of --config", 2},
		{[]string{"--super", super, "--ranks", "max"}, "-o OUT.onnx is required", 2},
		{[]string{"--super", super, "--ranks", "median", "-o", out}, `rank preset "median"`, 1},
		{[]string{"--super", super, "--ranks", "max", "-o", out, "--merge", "merged"}, `mode "merged"`, 2},
		{[]string{"--super", super, "--ranks", "max", "-o", out, "--dtype", "bf16"}, `--dtype "bf16"`, 2},
		{[]string{"--super", model, "--ranks", "max", "-o", out}, "no LoRA adapters", 1},
		{[]string{dir, "--super", super, "--ranks", "max", "-o", out}, "one of them", 2},
		{[]string{dir, "--ranks", "max", "-o", out}, "run.json", 1},
	} {
		_, e, code := shears(t, append([]string{"export"}, c.args...)...)
		if code != c.code || !strings.Contains(e, c.want) {
			t.Errorf("export %v: code %d, stderr %q; want %d and %q", c.args, code, e, c.code, c.want)
		}
	}
}
