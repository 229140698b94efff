package quant

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/runtime"
	"github.com/shears-ml/shears/transform/layers"
)

// TestMatMulNBitsInORT runs packed layers through onnxruntime's own MatMulNBits kernel and
// compares with x·dequant(W) computed here in float64: the packing is what the operator reads.
func TestMatMulNBitsInORT(t *testing.T) {
	testkit.ORT(t)
	r := rand.New(rand.NewPCG(5, 6))
	const rows = 3
	for _, k := range []int{64, 172} {
		const n = 24
		w := sparseWeight(r, k, n)
		x := make([]float32, rows*k)
		for i := range x {
			x[i] = float32(r.NormFloat64())
		}
		for _, c := range grids {
			l, err := RTN(w, k, n, c)
			if err != nil {
				t.Fatal(err)
			}
			// One linear, then the same rewrite the CLI uses.
			b := onnx.NewBuilder("g", 17)
			in := b.Input("x", onnxpb.TensorProto_FLOAT, rows, k)
			wn := b.Initializer(onnx.Float32Tensor("lin.weight", []int64{int64(k), int64(n)}, w))
			y := b.Op("MatMul", "lin", []string{in, wn})
			b.Output(y, onnxpb.TensorProto_FLOAT, rows, n)
			m, err := b.Model()
			if err != nil {
				t.Fatal(err)
			}
			ls, err := layers.Find(m)
			if err != nil || len(ls) != 1 {
				t.Fatalf("find: %v %v", ls, err)
			}
			p, err := NewPlan(m, ls, c)
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Apply(m, map[string]*Layer{"lin": l}); err != nil {
				t.Fatal(err)
			}
			if m.Initializer("lin.weight") != nil {
				t.Fatal("float weight kept after the rewrite")
			}
			got := runOne(t, m, x, rows, k, y)
			deq := l.Dequant()
			for i := 0; i < rows; i++ {
				for j := 0; j < n; j++ {
					var want, mag float64
					for kk := 0; kk < k; kk++ {
						want += float64(x[i*k+kk]) * float64(deq[kk*n+j])
						mag += math.Abs(float64(x[i*k+kk]) * float64(deq[kk*n+j]))
					}
					// float32 accumulation in the kernel: relative to Σ|x·w|.
					if d := math.Abs(float64(got[i*n+j]) - want); !(d <= 1e-5*mag+1e-6) {
						t.Fatalf("K=%d %+v y[%d,%d] = %g, want %g (|diff| %g)", k, c, i, j, got[i*n+j], want, d)
					}
				}
			}
		}
	}
}

func runOne(t *testing.T, m *onnx.Model, x []float32, rows, k int, out string) []float32 {
	t.Helper()
	res, err := testkit.Session(t, m).Run(map[string]*runtime.Tensor{"x": runtime.F32([]int64{int64(rows), int64(k)}, x)}, []string{out})
	if err != nil {
		t.Fatal(err)
	}
	return res[out].F32
}
