package train

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/transform/convert"
	"github.com/shears-ml/shears/transform/layers"
	"github.com/shears-ml/shears/transform/lora"
	"github.com/shears-ml/shears/transform/trainstep"
)

// mixedSuper adapts the model at path (every group at r_max, B random so that A gets gradients
// too) and returns the super-network and its trainable A, B names.
func mixedSuper(t *testing.T, path string, cfg lora.Config) (*onnx.Model, []string) {
	t.Helper()
	m, err := onnx.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	lins, err := layers.Find(m)
	if err != nil {
		t.Fatal(err)
	}
	lins, err = layers.Select(lins, "", "")
	if err != nil {
		t.Fatal(err)
	}
	p, err := lora.NewPlan(m, lins, cfg)
	if err != nil {
		t.Fatal(err)
	}
	sup, err := lora.Apply(m, p, lora.ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mod := range p.Modules {
		rng := rand.New(rand.NewPCG(9, uint64(len(names))))
		b := make([]float32, int64(p.RMax())*mod.Out)
		for i := range b {
			b[i] = float32(rng.NormFloat64() * 0.01)
		}
		if err := onnx.SetFloat32s(sup.Initializer(mod.B), b); err != nil {
			t.Fatal(err)
		}
		names = append(names, mod.A, mod.B)
	}
	return sup, names
}

// stepGrads runs one train step of sup on ids with every rank mask at r_max and returns the
// loss and the gradient of every parameter.
func stepGrads(t *testing.T, sup *onnx.Model, names []string, ids []int64, b, l int) (float64, map[string][]float32) {
	t.Helper()
	st, err := trainstep.Build(sup, trainstep.Config{Batch: b, Seq: l, Trainable: names})
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(st, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	for _, x := range st.Extra {
		in, _ := r.Input(x.Name)
		for i := range in.F32 {
			in.F32[i] = 1
		}
	}
	loss, err := r.Accumulate(ids, ids, 1)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]float32{}
	for _, n := range names {
		g, _ := r.Grad(n)
		out[n] = append([]float32(nil), g...)
	}
	return loss, out
}

// A mixed-precision train step of stories260K converted to float16 (and bfloat16) gives the
// float32 step's adapter gradients within the dtype's tolerance; the float16 backward scales
// its loss, and overflowing steps are skipped with the scale halved.
func TestMixedPrecisionGradients(t *testing.T) {
	testkit.ORT(t)
	dir := t.TempDir()
	m := stories(t)
	fp32 := filepath.Join(dir, "fp32.onnx")
	if err := m.Save(fp32, onnx.SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg := lora.Config{Ranks: []int{8, 4}, Targets: []string{"q", "k", "v", "up", "down"}}
	ref, names := mixedSuper(t, fp32, cfg)
	const b, l = 2, 16
	ids := randomIDs(b*l, 5)
	refLoss, refG := stepGrads(t, ref, names, ids, b, l)

	for _, tc := range []struct {
		name    string
		dt      onnxpb.TensorProto_DataType
		c       convert.Compute
		adapter string
		bound   float64 // relative L2 error of the adapter gradients
	}{
		// Weight-only: the forward and backward run in float32 on fp16-rounded weights (relative
		// error u/2 each, u = 2^-11 for float16, 2^-8 for bfloat16); measured 0.095% and 1.2%:
		// bounds of 10u leave room for other seeds and models.
		{"fp16-weights", onnxpb.TensorProto_FLOAT16, convert.ComputeFP32, "", 10 * 0x1p-11},
		{"bf16-weights", onnxpb.TensorProto_BFLOAT16, convert.ComputeFP32, "", 10 * 0x1p-8},
		// Native float16: every activation and the whole backward round too (with loss scaling);
		// measured 0.25% with float32 adapters, 0.27% with float16 adapters (cast from float32
		// master weights), about 5u; bound 20u.
		{"fp16-native", onnxpb.TensorProto_FLOAT16, convert.ComputeNative, "", 20 * 0x1p-11},
		{"fp16-native-adapter-fp16", onnxpb.TensorProto_FLOAT16, convert.ComputeNative, lora.AdapterBase, 20 * 0x1p-11},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, _ := onnx.Load(fp32)
			defer src.Close()
			p16 := filepath.Join(dir, tc.name+".onnx")
			if _, err := convert.Convert(src, p16, convert.Options{DType: tc.dt, Compute: tc.c}, onnx.SaveOptions{}); err != nil {
				t.Fatal(err)
			}
			c := cfg
			c.AdapterDType = tc.adapter
			sup, n16 := mixedSuper(t, p16, c)
			st, err := trainstep.Build(sup, trainstep.Config{Batch: b, Seq: l, Trainable: n16})
			if err != nil {
				t.Fatal(err)
			}
			native16 := tc.c == convert.ComputeNative && tc.dt == onnxpb.TensorProto_FLOAT16
			if (st.LossScale != "") != native16 {
				t.Fatalf("loss-scale input %q; want one exactly for a float16 backward", st.LossScale)
			}
			// Start the scale too high (2^24) so that the first steps overflow and are skipped.
			r, err := New(st, Options{LossScaler: LossScaler{Scale: 0x1p24}})
			if err != nil {
				if strings.Contains(err.Error(), "Could not find an implementation") {
					t.Skipf("CPU provider lacks a kernel: %.300s", err)
				}
				t.Fatal(err)
			}
			defer r.Close()
			for _, x := range st.Extra {
				in, _ := r.Input(x.Name)
				for i := range in.F32 {
					in.F32[i] = 1
				}
			}
			a0, _ := r.Param(n16[0])
			a0 = append([]float32(nil), a0...)
			var loss float64
			skips := 0
			for k := 0; ; k++ {
				if loss, err = r.Accumulate(ids, ids, 1); err != nil {
					t.Fatal(err)
				}
				if !r.overflow {
					break
				}
				if k == 20 {
					t.Fatal("still overflowing after 20 halvings")
				}
				before := r.scaler.Scale
				if norm, err := r.Apply(1e-3); err != nil || !r.LastSkipped() || !math.IsInf(norm, 1) || r.scaler.Scale != before/2 {
					t.Fatalf("overflow at scale %g: apply %v, skipped %v, scale after %g", before, err, r.LastSkipped(), r.scaler.Scale)
				}
				skips++
			}
			if a, _ := r.Param(n16[0]); !slices.Equal(a, a0) || r.Updates() != 0 || r.Skipped() != skips {
				t.Fatalf("skipped steps changed the parameters or the update count (%d updates, %d skipped)", r.Updates(), r.Skipped())
			}
			if native16 && skips == 0 {
				t.Fatal("a scale of 2^24 did not overflow float16; the skip path went untested")
			}
			t.Logf("%d overflowing steps skipped, scale now %g", skips, r.scaler.Scale)
			var num, den, worst float64
			for _, n := range names {
				g, _ := r.Grad(n)
				for i, x := range g {
					d := float64(x) - float64(refG[n][i])
					num += d * d
					den += float64(refG[n][i]) * float64(refG[n][i])
					worst = math.Max(worst, math.Abs(d))
				}
			}
			rel := math.Sqrt(num / den)
			t.Logf("loss %.6f vs %.6f; relative L2 error of the adapter gradients %.3g (max abs %.3g, bound %.3g)", loss, refLoss, rel, worst, tc.bound)
			if !(den > 0) || !(rel <= tc.bound) || !(math.Abs(loss-refLoss) <= 1e-3*refLoss) {
				t.Fatalf("mixed-precision step differs from float32: gradient error %.3g (bound %.3g), loss %.6f vs %.6f", rel, tc.bound, loss, refLoss)
			}
		})
	}
}
