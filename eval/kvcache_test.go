package eval

import (
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/lm"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/runtime"
)

// fp16Cache rewrites a with-past graph to keep its cache in float16, as optimum's and GenAI's
// fp16 exports do: each past input becomes float16, cast to float32 on the way in, and each
// present output is the float32 present cast to float16.
func fp16Cache(t *testing.T, m *onnx.Model) {
	t.Helper()
	g := m.Graph()
	for _, in := range g.Input {
		if _, _, ok := lm.ParsePast(in.GetName()); !ok {
			continue
		}
		f32 := in.GetName() + "_f32"
		for _, n := range g.Node {
			for i, x := range n.Input {
				if x == in.GetName() {
					n.Input[i] = f32
				}
			}
		}
		g.Node = append([]*onnxpb.NodeProto{cast(in.GetName(), f32, onnxpb.TensorProto_FLOAT)}, g.Node...)
		in.GetType().GetTensorType().ElemType = proto.Int32(int32(onnxpb.TensorProto_FLOAT16))
	}
	for _, out := range g.Output {
		if _, _, ok := lm.ParsePresent(out.GetName()); !ok {
			continue
		}
		f32 := out.GetName() + "_f32"
		for _, n := range g.Node { // the producer and any reader inside the graph
			for _, xs := range [][]string{n.Output, n.Input} {
				for i, x := range xs {
					if x == out.GetName() {
						xs[i] = f32
					}
				}
			}
		}
		g.Node = append(g.Node, cast(f32, out.GetName(), onnxpb.TensorProto_FLOAT16))
		out.GetType().GetTensorType().ElemType = proto.Int32(int32(onnxpb.TensorProto_FLOAT16))
	}
}

func cast(in, out string, to onnxpb.TensorProto_DataType) *onnxpb.NodeProto {
	return &onnxpb.NodeProto{OpType: proto.String("Cast"), Name: proto.String("cast_" + out), Input: []string{in}, Output: []string{out},
		Attribute: []*onnxpb.AttributeProto{onnx.AttrInt("to", int64(to))}}
}

// A float16 cache lives in raw-byte buffers: the recomputing decoder (presents computed, never
// fed back) gives the float32 model's logits exactly, and the cached one stays within float16
// rounding of the cache through row reorders and buffer reallocations, greedy ids unchanged.
func TestFP16CacheDecoder(t *testing.T) {
	testkit.ORT(t)
	path := testkit.Synthetic(t, "tiny")
	f32, err := runtime.OpenFile(path, runtime.Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer f32.Close()
	m, err := onnx.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	fp16Cache(t, m)
	raw, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	f16, err := runtime.OpenBytes(raw, filepath.Dir(path), runtime.Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer f16.Close()
	if in := f16.Inputs(); in[len(in)-1].DType != runtime.Float16 {
		t.Fatalf("rewritten past input %s is %s", in[len(in)-1].Name, in[len(in)-1].DType)
	}
	ref, _ := newDecoder(f32, true)
	full, _ := newDecoder(f16, true)
	cached, err := newDecoder(f16, false)
	if err != nil || !cached.cached || cached.kv.dtype != runtime.Float16 {
		t.Fatalf("fp16 cache decoder: %v", err)
	}
	rng := rand.New(rand.NewPCG(7, 8))
	next := [][]int{{1, 40, 300, 7}}
	worst := 0.0
	for step := 0; step < 10; step++ {
		if step == 2 {
			for _, d := range []*decoder{ref, full, cached} {
				if err := d.reorder([]int{0, 0}); err != nil {
					t.Fatal(err)
				}
			}
			next = [][]int{{5}, {9}}
		}
		want, _, err := ref.step(next)
		if err != nil {
			t.Fatal(err)
		}
		want = append([]float32(nil), want...)
		a, _, err := full.step(next)
		if err != nil {
			t.Fatal(err)
		}
		if d := testkit.MaxDiff(a, want); !(d <= 1e-6) {
			t.Fatalf("step %d: recomputing on the fp16-cache graph differs from float32 by %.3g", step, d)
		}
		b, _, err := cached.step(next)
		if err != nil {
			t.Fatal(err)
		}
		// The cache rounded to float16 (relative error 2⁻¹¹) moves the tiny model's logits by
		// under 1e-3 (7.5e-4 measured); 5e-3 leaves room, a wrong row or position is far above.
		d := testkit.MaxDiff(b, want)
		if !(d <= 5e-3) {
			t.Fatalf("step %d: fp16 cache logits differ from float32 by %.3g", step, d)
		}
		worst = max(worst, d)
		next = next[:0]
		for range cached.seqs {
			next = append(next, []int{rng.IntN(512)})
		}
	}
	if cached.kv.allocs <= 2*len(cached.kv.layers) {
		t.Errorf("%d buffers for %d past inputs: the steps crossed no reallocation", cached.kv.allocs, len(cached.kv.layers))
	}
	t.Logf("max |fp16 cache - float32| = %.3g", worst)
	a, err := Generate(f16, []int{1, 300, 45, 99}, GenOptions{MaxTokens: 20}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Generate(f32, []int{1, 300, 45, 99}, GenOptions{MaxTokens: 20}, nil)
	if err != nil || !reflect.DeepEqual(a, b) {
		t.Fatalf("greedy with an fp16 cache %v, float32 %v (%v)", a, b, err)
	}
}
