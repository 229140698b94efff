package calibrate

import (
	"fmt"
	"github.com/shears-ml/shears/internal/progress"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/shears-ml/shears/data"
	"github.com/shears-ml/shears/eval"
	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/models/llama2c"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/runtime"
	"github.com/shears-ml/shears/tokenizer"
	"github.com/shears-ml/shears/transform/layers"
	"github.com/shears-ml/shears/transform/prune"
)

type fixture struct {
	dir     string
	model   string // path of the imported stories260K
	m       *onnx.Model
	targets []layers.Linear
	tok     tokenizer.Tokenizer
	windows [][]int
}

func setup(t *testing.T) *fixture {
	t.Helper()
	ckpt := testkit.StoriesShaped(t)
	tokPath := testkit.Tok512Shaped(t)
	calib := testkit.Dataset(t, "ARC-Easy-train.json")
	testkit.ORT(t)
	f := &fixture{dir: t.TempDir()}
	m, err := llama2c.Import(ckpt)
	if err != nil {
		t.Fatal(err)
	}
	f.model = filepath.Join(f.dir, "dense.onnx")
	if err := m.Save(f.model, onnx.SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	if f.m, err = onnx.Load(f.model); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.m.Close() })
	all, err := layers.Find(f.m)
	if err != nil {
		t.Fatal(err)
	}
	if f.targets, err = layers.Select(all, "", ""); err != nil {
		t.Fatal(err)
	}
	if len(f.targets) != 35 {
		t.Fatalf("found %d targets, want 35", len(f.targets))
	}
	if f.tok, err = tokenizer.LoadLlama2c(tokPath); err != nil {
		t.Fatal(err)
	}
	docs, err := data.ReadDocuments(calib)
	if err != nil {
		t.Fatal(err)
	}
	f.windows, err = data.CalibrationWindows(docs, f.tok, data.CalibOptions{Samples: 6, SeqLen: 96, Seed: 0})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) prune(t *testing.T, cfg prune.Config, oneShot bool, name string) *onnx.Model {
	t.Helper()
	var stats Stats
	if cfg.Method == prune.Wanda {
		var err error
		var tm Timing
		var evs []progress.Event
		stats, tm, err = Calibrate(f.m, f.targets, cfg, f.windows, Options{OneShot: oneShot, Progress: func(e progress.Event) { evs = append(evs, e) }})
		if err != nil {
			t.Fatal(err)
		}
		// One event per window of each stage, counting up to the total; labelled by block.
		last := evs[len(evs)-1]
		stages := last.Total / len(f.windows)
		for i, e := range evs {
			want := fmt.Sprintf("block %d/%d", i/len(f.windows)+1, stages)
			if oneShot {
				want = "one-shot"
			}
			if e.Done != i+1 || e.Total != stages*len(f.windows) || e.Stage != want {
				t.Fatalf("progress event %d: %+v, want %d of %d, stage %q", i, e, i+1, stages*len(f.windows), want)
			}
		}
		if len(evs) != last.Total || (oneShot != (stages == 1)) {
			t.Errorf("%d progress events over %d stages (one-shot %v)", len(evs), stages, oneShot)
		}
		// Alike blocks share a session: stage 0, stage 1 (which recomputes the embedding for
		// block 0) and stages 2…4 (one-shot: one session).
		if want := map[bool]int{false: 3, true: 1}[oneShot]; tm.Sessions != want {
			t.Errorf("calibration created %d sessions, want %d", tm.Sessions, want)
		}
	}
	out := filepath.Join(f.dir, name)
	if err := f.m.Save(out, onnx.SaveOptions{Transform: Transform(f.targets, stats, cfg)}); err != nil {
		t.Fatal(err)
	}
	pm, err := onnx.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pm.Close() })
	return pm
}

// captureNorms runs a copy of base whose weights named in from are replaced by from's, with
// the given tensors exposed as outputs, and returns the mean over windows of Σ_t x², in float64.
func captureNorms(t *testing.T, base, from *onnx.Model, replace map[string]bool, tensors []string, windows [][]int) map[string][]float64 {
	t.Helper()
	repl := map[string]*onnxpb.TensorProto{}
	for name := range replace {
		repl[name] = from.Initializer(name)
	}
	sums := map[string][]float64{}
	runExposed(t, base, repl, tensors, windows, func(x string, v *runtime.Tensor) {
		in := int(v.Shape[len(v.Shape)-1])
		if sums[x] == nil {
			sums[x] = make([]float64, in)
		}
		for k, y := range v.F32 {
			sums[x][k%in] += float64(y) * float64(y) / float64(len(windows))
		}
	})
	return sums
}

// runExposed runs a copy of base with the initializers in repl replaced and the given tensors
// exposed as outputs, one calibration window at a time, handing each window's values to fn.
func runExposed(t *testing.T, base *onnx.Model, repl map[string]*onnxpb.TensorProto, tensors []string, windows [][]int, fn func(x string, v *runtime.Tensor)) {
	t.Helper()
	g := &onnxpb.GraphProto{Name: base.Graph().Name, Node: base.Graph().Node, Input: base.Graph().Input}
	for _, init := range base.Graph().GetInitializer() {
		if r, ok := repl[init.GetName()]; ok {
			init = r
		}
		g.Initializer = append(g.Initializer, init)
	}
	for _, x := range tensors {
		name := x
		g.Output = append(g.Output, &onnxpb.ValueInfoProto{Name: &name, Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
			TensorType: &onnxpb.TypeProto_Tensor{ElemType: ptr(int32(onnxpb.TensorProto_FLOAT))}}}})
	}
	mp := &onnxpb.ModelProto{IrVersion: base.Proto.IrVersion, OpsetImport: base.Proto.OpsetImport, Graph: g}
	raw, err := (&onnx.Model{Proto: mp}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	s, err := runtime.OpenBytes(raw, "", runtime.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, w := range windows {
		feeds, err := eval.Feeds(s.Inputs(), [][]int{w}, nil)
		if err != nil {
			t.Fatal(err)
		}
		res, err := s.Run(feeds, tensors)
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range tensors {
			fn(x, res[x])
		}
	}
}

func ptr[T any](v T) *T { return &v }

// expectedZeros recomputes Wanda's mask independently: for each output column, the input
// indices ordered by score |W|·sqrt(norm²) with a stable sort, first k zeroed.
func expectedZeros(w []float32, in, out int, norm2 []float64, s float64) []bool {
	zero := make([]bool, len(w))
	k := int(math.Floor(float64(in) * s))
	for j := 0; j < out; j++ {
		idx := make([]int, in)
		for i := range idx {
			idx[i] = i
		}
		score := func(i int) float64 { return math.Abs(float64(w[i*out+j])) * math.Sqrt(norm2[i]) }
		slices.SortStableFunc(idx, func(a, b int) int {
			sa, sb := score(a), score(b)
			switch {
			case sa < sb:
				return -1
			case sa > sb:
				return 1
			}
			return 0
		})
		for _, i := range idx[:k] {
			zero[i*out+j] = true
		}
	}
	return zero
}

func checkWandaMask(t *testing.T, f *fixture, pm *onnx.Model, oneShot bool, s float64) {
	t.Helper()
	blocks := map[int][]layers.Linear{}
	for _, l := range f.targets {
		blocks[l.Block] = append(blocks[l.Block], l)
	}
	replace := map[string]bool{}
	for b := 0; b < 5; b++ {
		var xs []string
		seen := map[string]bool{}
		for _, l := range blocks[b] {
			if !seen[l.Input] {
				seen[l.Input] = true
				xs = append(xs, l.Input)
			}
		}
		norms := captureNorms(t, f.m, pm, replace, xs, f.windows)
		mismatches := 0
		for _, l := range blocks[b] {
			w, err := f.m.Float32s(f.m.Initializer(l.Weight))
			if err != nil {
				t.Fatal(err)
			}
			got, err := pm.Float32s(pm.Initializer(l.Weight))
			if err != nil {
				t.Fatal(err)
			}
			want := expectedZeros(w, int(l.In), int(l.Out), norms[l.Input], s)
			for k := range w {
				if (got[k] == 0) != want[k] {
					mismatches++
				}
				if got[k] != 0 && got[k] != w[k] {
					t.Fatalf("%s: kept weight %d changed (%g → %g)", l.Node, k, w[k], got[k])
				}
			}
		}
		if mismatches > 0 {
			t.Errorf("block %d: %d mask entries differ from the independent recomputation (one-shot=%v)", b, mismatches, oneShot)
		}
		if !oneShot {
			for _, l := range blocks[b] {
				replace[l.Weight] = true
			}
		}
	}
}

func TestWandaMaskMatchesIndependentRecomputation(t *testing.T) {
	f := setup(t)
	cfg := prune.Config{Method: prune.Wanda, Sparsity: 0.5}
	for _, oneShot := range []bool{false, true} {
		name := map[bool]string{false: "sequential.onnx", true: "oneshot.onnx"}[oneShot]
		pm := f.prune(t, cfg, oneShot, name)
		checkWandaMask(t, f, pm, oneShot, cfg.Sparsity)
	}
}

func TestPrunedLayersHaveExactZerosAndOthersUnchanged(t *testing.T) {
	f := setup(t)
	cases := []struct {
		cfg  prune.Config
		name string
	}{
		{prune.Config{Method: prune.Wanda, Sparsity: 0.3}, "w30.onnx"},
		{prune.Config{Method: prune.Magnitude, Sparsity: 0.7}, "m70.onnx"},
		{prune.Config{Method: prune.Wanda, Sparsity: 0.5, Pattern: prune.Pattern{N: 2, M: 4}}, "w24.onnx"},
	}
	isTarget := map[string]bool{}
	for _, l := range f.targets {
		isTarget[l.Weight] = true
	}
	for _, c := range cases {
		pm := f.prune(t, c.cfg, false, c.name)
		for _, l := range f.targets {
			got, _ := pm.Float32s(pm.Initializer(l.Weight))
			in, out := int(l.In), int(l.Out)
			for j := 0; j < out; j++ {
				if c.cfg.Pattern.M == 0 {
					zeros := 0
					for i := 0; i < in; i++ {
						if got[i*out+j] == 0 {
							zeros++
						}
					}
					if want := int(math.Floor(float64(in) * c.cfg.Sparsity)); zeros != want {
						t.Fatalf("%s %s column %d: %d zeros, want %d", c.name, l.Node, j, zeros, want)
					}
					continue
				}
				for g := 0; g < in; g += c.cfg.Pattern.M {
					zeros := 0
					for i := g; i < g+c.cfg.Pattern.M; i++ {
						if got[i*out+j] == 0 {
							zeros++
						}
					}
					if zeros != c.cfg.Pattern.N {
						t.Fatalf("%s %s column %d group %d: %d zeros, want %d", c.name, l.Node, j, g, zeros, c.cfg.Pattern.N)
					}
				}
			}
		}
		for _, init := range f.m.Graph().GetInitializer() {
			if isTarget[init.GetName()] {
				continue
			}
			a, _ := f.m.RawData(init)
			b, _ := pm.RawData(pm.Initializer(init.GetName()))
			if string(a) != string(b) {
				t.Fatalf("%s: untargeted tensor %s changed", c.name, init.GetName())
			}
		}
	}
}

func TestPerplexityRisesWithSparsity(t *testing.T) {
	testkit.Shared(t, "models/stories260K/stories260K.bin") // a trained model's behaviour, not its shape
	f := setup(t)
	held := testkit.Dataset(t, "ARC-Easy-test.json")
	docs, err := data.ReadDocuments(held)
	if err != nil {
		t.Fatal(err)
	}
	stream := data.Stream(docs[:60], f.tok)
	ppl := func(path string) float64 {
		s, err := runtime.OpenFile(path, runtime.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		r, err := eval.Perplexity(s, stream, 256, 4)
		if err != nil {
			t.Fatal(err)
		}
		return r.PPL
	}
	got := map[string]float64{"dense": ppl(f.model)}
	for _, c := range []struct {
		name string
		cfg  prune.Config
	}{
		{"wanda30", prune.Config{Method: prune.Wanda, Sparsity: 0.3}},
		{"wanda50", prune.Config{Method: prune.Wanda, Sparsity: 0.5}},
		{"wanda70", prune.Config{Method: prune.Wanda, Sparsity: 0.7}},
		{"magnitude50", prune.Config{Method: prune.Magnitude, Sparsity: 0.5}},
	} {
		f.prune(t, c.cfg, false, c.name+".onnx")
		got[c.name] = ppl(filepath.Join(f.dir, c.name+".onnx"))
	}
	t.Logf("held-out perplexity: %v", got)
	if !(got["dense"] < got["wanda30"] && got["wanda30"] < got["wanda50"] && got["wanda50"] < got["wanda70"]) {
		t.Errorf("perplexity does not rise with sparsity: %v", got)
	}
	if got["wanda50"] > got["magnitude50"] {
		t.Errorf("wanda 0.5 (%g) is worse than magnitude 0.5 (%g)", got["wanda50"], got["magnitude50"])
	}
}

func TestFourEightRefusesUntileableLayersUpFront(t *testing.T) {
	f := setup(t)
	cfg := prune.Config{Method: prune.Magnitude, Sparsity: 0.5, Pattern: prune.Pattern{N: 4, M: 8}}
	err := Check(f.targets, cfg)
	if err == nil || !strings.Contains(err.Error(), "down_proj") || !strings.Contains(err.Error(), "172") {
		t.Fatalf("want an error naming down_proj and its 172 inputs, got %v", err)
	}
	var fit []layers.Linear
	for _, l := range f.targets {
		if l.In%8 == 0 {
			fit = append(fit, l)
		}
	}
	f.targets = fit
	pm := f.prune(t, cfg, false, "m48.onnx")
	for _, l := range fit {
		got, _ := pm.Float32s(pm.Initializer(l.Weight))
		in, out := int(l.In), int(l.Out)
		for j := 0; j < out; j++ {
			for g := 0; g < in; g += 8 {
				zeros := 0
				for i := g; i < g+8; i++ {
					if got[i*out+j] == 0 {
						zeros++
					}
				}
				if zeros != 4 {
					t.Fatalf("%s column %d group %d: %d zeros, want 4", l.Node, j, g, zeros)
				}
			}
		}
	}
}

func TestBadInputLeavesNoOutput(t *testing.T) {
	f := setup(t)
	for _, cfg := range []prune.Config{
		{Method: prune.Wanda, Sparsity: 1},
		{Method: prune.Wanda, Sparsity: -0.1},
		{Method: prune.Wanda, Sparsity: 0.3, Pattern: prune.Pattern{N: 2, M: 4}},
		{Method: "random", Sparsity: 0.5},
	} {
		if _, _, err := Calibrate(f.m, f.targets, cfg, f.windows, Options{}); err == nil {
			t.Errorf("%+v: no error", cfg)
		}
	}
	if _, err := os.Stat(filepath.Join(f.dir, "nothing.onnx")); err == nil {
		t.Fatal("output written")
	}
}
