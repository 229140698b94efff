package convert_test

import (
	"math"
	"path/filepath"
	"sort"
	"testing"

	"github.com/shears-ml/shears/calibrate"
	"github.com/shears-ml/shears/data"
	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/tokenizer"
	. "github.com/shears-ml/shears/transform/convert"
	"github.com/shears-ml/shears/transform/layers"
	"github.com/shears-ml/shears/transform/prune"
)

type wandaRun struct {
	m       *onnx.Model
	targets []layers.Linear
	stats   calibrate.Stats
}

func runWanda(t *testing.T, path string, windows [][]int, cfg prune.Config, oneShot bool) wandaRun {
	t.Helper()
	m, err := onnx.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	all, err := layers.Find(m)
	if err != nil {
		t.Fatal(err)
	}
	targets, err := layers.Select(all, "", "")
	if err != nil || len(targets) != 35 {
		t.Fatalf("%s: %d targets, %v", path, len(targets), err)
	}
	stats, _, err := calibrate.Calibrate(m, targets, cfg, windows, calibrate.Options{OneShot: oneShot})
	if err != nil {
		t.Fatal(err)
	}
	return wandaRun{m, targets, stats}
}

// TestWandaMasksMatchFP32 prunes stories260K (Wanda, 50 %, sequential and one-shot) from its
// float32 weights and from their fp16 and bf16 conversions, and compares the masks output by
// output. The low-precision run's score of weight i is |W̃_i|·‖x̃_i‖ with |W̃_i| = |W_i|(1 ± u)
// and ‖x̃_i‖ = ‖x_i‖(1 ± δ), δ the largest relative change of an input norm between the two
// runs for input i (measured), so score i moves by at most ε_i = u + δ_i + u·δ_i relatively.
// An output is "tied" when the bounds of the k smallest float32 scores (s(1+ε)) reach those of
// the others (s(1−ε)), i.e. some pair at the k-th boundary could swap: it is excluded. On every
// other output the masks must be identical, and the low-precision model's zeros must sit
// exactly there, written in its own type.
func TestWandaMasksMatchFP32(t *testing.T) {
	// The trained model: a random stand-in's activations drift too far in fp16 for the
	// comparison to say anything (most outputs tie at the boundary).
	testkit.Shared(t, "models/stories260K/stories260K.bin")
	dir := t.TempDir()
	fp32 := storiesFP32(t, dir)
	tok, err := tokenizer.LoadLlama2c(testkit.Tok512Shaped(t))
	if err != nil {
		t.Fatal(err)
	}
	docs, err := data.ReadDocuments(testkit.Dataset(t, "ARC-Easy-train.json"))
	if err != nil {
		t.Fatal(err)
	}
	testkit.ORT(t)
	windows, err := data.CalibrationWindows(docs, tok, data.CalibOptions{Samples: 4, SeqLen: 64})
	if err != nil {
		t.Fatal(err)
	}
	cfg := prune.Config{Method: prune.Wanda, Sparsity: 0.5}
	for _, oneShot := range []bool{false, true} {
		ref := runWanda(t, fp32, windows, cfg, oneShot)
		for _, dt := range []onnxpb.TensorProto_DataType{fp16, bf16} {
			name := DTypeName(dt) + map[bool]string{false: " sequential", true: " one-shot"}[oneShot]
			low := filepath.Join(dir, DTypeName(dt)+".onnx")
			convertFile(t, fp32, low, dt, ComputeFP32)
			run := runWanda(t, low, windows, cfg, oneShot)
			u := unitRoundoff(dt)
			var outputs, tied, maxDelta float64
			for li, l := range run.targets {
				rl := ref.targets[li]
				if rl.Weight != l.Weight {
					t.Fatalf("target %d: %s vs %s", li, rl.Weight, l.Weight)
				}
				wt := run.m.Initializer(l.Weight)
				if onnx.DataType(wt) != dt {
					t.Fatalf("%s: %s is %s", name, l.Weight, onnx.DataType(wt))
				}
				w16, _ := run.m.Float32s(wt)
				w32, _ := ref.m.Float32s(ref.m.Initializer(l.Weight))
				n16, n32 := run.stats[l.Input], ref.stats[l.Input]
				// eps[i] bounds the relative change of input i's scores.
				eps := make([]float64, len(n32))
				for i := range n32 {
					delta := math.Abs(math.Sqrt(n16[i]/n32[i]) - 1)
					maxDelta = math.Max(maxDelta, delta)
					eps[i] = u + delta + u*delta
				}
				shape := prune.Weight{In: int(l.In), Out: int(l.Out), Transposed: l.Transposed}
				m16, err := prune.Mask(w16, shape, n16, cfg)
				if err != nil {
					t.Fatal(err)
				}
				m32, _ := prune.Mask(w32, shape, n32, cfg)
				k := len(m32) / int(l.Out)
				// Mask lists k indices per output, outputs in order.
				for j := 0; j < int(l.Out); j++ {
					outputs++
					// Safe iff every pruned score's upper bound stays below every kept score's
					// lower bound.
					type sc struct{ s, e float64 }
					ss := make([]sc, l.In)
					for i := range ss {
						idx := i*int(l.Out) + j
						if l.Transposed {
							idx = j*int(l.In) + i
						}
						ss[i] = sc{math.Abs(float64(w32[idx])) * math.Sqrt(n32[i]), eps[i]}
					}
					sort.SliceStable(ss, func(a, b int) bool { return ss[a].s < ss[b].s })
					hi, lo := 0.0, math.Inf(1)
					for i, x := range ss {
						if i < k {
							hi = math.Max(hi, x.s*(1+x.e))
						} else {
							lo = math.Min(lo, x.s*(1-x.e))
						}
					}
					if hi >= lo {
						tied++
						continue
					}
					a := append([]int(nil), m16[j*k:(j+1)*k]...)
					b := append([]int(nil), m32[j*k:(j+1)*k]...)
					sort.Ints(a)
					sort.Ints(b)
					for x := range a {
						if a[x] != b[x] {
							t.Fatalf("%s: %s output %d: masks differ (%v vs %v) though the bounds separate (%.4g < %.4g)",
								name, l.Node, j, a, b, hi, lo)
						}
					}
				}
				// The zeros land in the low-precision bytes, exactly where the mask says.
				raw, _ := run.m.RawData(wt)
				pruned, err := calibrate.Apply(l, wt, append([]byte(nil), raw...), run.stats, cfg)
				if err != nil {
					t.Fatal(err)
				}
				if len(pruned) != 2*len(w16) {
					t.Fatalf("%s: pruned %s has %d bytes for %d elements", name, l.Weight, len(pruned), len(w16))
				}
				for _, i := range m16 {
					if pruned[2*i] != 0 || pruned[2*i+1] != 0 {
						t.Fatalf("%s: %s element %d not zeroed", name, l.Weight, i)
					}
				}
			}
			t.Logf("%s: %.0f outputs, %.1f%% tied at the boundary and excluded (u = %.3g, largest norm change δ = %.3g)",
				name, outputs, 100*tied/outputs, u, maxDelta)
			if tied/outputs > 0.5 {
				t.Errorf("%s: %.0f of %.0f outputs excluded as tied: the comparison says little", name, tied, outputs)
			}
		}
	}
}
