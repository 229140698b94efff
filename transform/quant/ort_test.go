package quant

import (
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/runtime"
	"github.com/shears-ml/shears/transform/layers"
	"google.golang.org/protobuf/proto"
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

// TestKeepQuantizedFolds: the weight a kept linear (KeepQuantized) dequantizes in the graph is
// exactly Layer.Dequant's, for every grid and for K with a padded last block and an odd count
// of packed zero-point nibbles, and onnxruntime folds that dequantization at load: at the
// default optimization level its profile shows none of its nodes run (at "disable" they run,
// which is what makes the check mean something). Raise then puts the packed tensors back.
func TestKeepQuantizedFolds(t *testing.T) {
	testkit.ORT(t)
	r := rand.New(rand.NewPCG(7, 8))
	const rows, n = 2, 12
	for _, k := range []int{72, 200} {
		x := make([]float32, rows*k)
		for i := range x {
			x[i] = float32(r.NormFloat64())
		}
		for _, c := range grids {
			w := sparseWeight(r, k, n)
			l, err := RTN(w, k, n, c)
			if err != nil {
				t.Fatal(err)
			}
			b := onnx.NewBuilder("g", 17)
			in := b.Input("x", onnxpb.TensorProto_FLOAT, rows, k)
			y := b.Op("MatMul", "lin", []string{in, b.Initializer(onnx.Float32Tensor("lin.weight", []int64{int64(k), n}, l.Dequant()))})
			b.Output(y, onnxpb.TensorProto_FLOAT, rows, n)
			m, err := b.Model()
			if err != nil {
				t.Fatal(err)
			}
			ls, _ := layers.Find(m)
			p, err := NewPlan(m, ls, c)
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Apply(m, map[string]*Layer{"lin": l}); err != nil {
				t.Fatal(err)
			}
			low, err := Lower(m)
			if err != nil {
				t.Fatal(err)
			}
			if err := KeepQuantized(low, []string{"lin"}); err != nil {
				t.Fatal(err)
			}
			if has, name := HasQuantized(low); has {
				t.Fatalf("K=%d %+v: kept linear still runs MatMulNBits %s", k, c, name)
			}
			// The weight itself, as the graph computes it, against Layer.Dequant bit for bit.
			deq := l.Dequant()
			ob := onnx.BuilderFor(low)
			ob.Output("lin"+dequantSuffix+"_output_0", onnxpb.TensorProto_FLOAT, k, n)
			if err := ob.Err(); err != nil {
				t.Fatal(err)
			}
			for _, level := range []string{"", "disable"} {
				dir := t.TempDir()
				raw, err := low.Marshal()
				if err != nil {
					t.Fatal(err)
				}
				s, err := runtime.OpenBytes(raw, "", runtime.Options{Threads: 1, OptLevel: level, Profile: filepath.Join(dir, "ort")})
				if err != nil {
					t.Fatal(err)
				}
				res, err := s.Run(map[string]*runtime.Tensor{"x": runtime.F32([]int64{rows, int64(k)}, x)}, nil)
				s.Close()
				if err != nil {
					t.Fatal(err)
				}
				got := res["lin"+dequantSuffix+"_output_0"].F32
				for i := range deq {
					if got[i] != deq[i] {
						t.Fatalf("K=%d %+v level %q: W[%d] = %g, want %g", k, c, level, i, got[i], deq[i])
					}
				}
				if ran := dequantRan(t, dir); ran != (level == "disable") {
					t.Errorf("K=%d %+v level %q: dequantization nodes ran %v, want %v", k, c, level, ran, level == "disable")
				}
			}
			// FoldKept puts the same weight in as an initializer, the packed tensors gone.
			folded := &onnx.Model{Proto: proto.Clone(low.Proto).(*onnxpb.ModelProto)}
			if n, err := FoldKept(folded); err != nil || n != 1 {
				t.Fatalf("K=%d %+v: folded %d (%v), want 1", k, c, n, err)
			}
			fw, err := folded.Float32s(folded.Initializer("lin" + dequantSuffix + "_output_0"))
			if err != nil || len(fw) != len(deq) || len(folded.Graph().GetNode()) != 1 || len(folded.Graph().GetInitializer()) != 1 {
				t.Fatalf("K=%d %+v: folded graph has %d nodes, %d initializers (%v), want the MatMul and its weight", k, c,
					len(folded.Graph().GetNode()), len(folded.Graph().GetInitializer()), err)
			}
			for i := range deq {
				if fw[i] != deq[i] {
					t.Fatalf("K=%d %+v: folded W[%d] = %g, want %g", k, c, i, fw[i], deq[i])
				}
			}
			if _, err := Raise(low, low); err != nil {
				t.Fatal(err)
			}
			for _, nd := range low.Graph().GetNode() {
				if strings.Contains(nd.GetName(), "/dequant/") {
					t.Fatalf("K=%d %+v: %s left after Raise", k, c, nd.GetName())
				}
			}
			if len(low.Graph().GetInitializer()) != len(m.Graph().GetInitializer()) {
				t.Fatalf("K=%d %+v: %d initializers after Raise, want %d", k, c, len(low.Graph().GetInitializer()), len(m.Graph().GetInitializer()))
			}
		}
	}
}

// dequantRan reports whether the onnxruntime profile written in dir timed any node of a
// dequantization: its events name the nodes that ran, and dequantOp's all hold "/dequant/".
func dequantRan(t *testing.T, dir string) bool {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 1 {
		t.Fatalf("profile folder %s: %d entries (%v), want the one profile", dir, len(entries), err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, entries[0].Name()))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(string(raw), "/dequant/")
}
