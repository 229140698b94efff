package runtime_test

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/runtime"
	"github.com/shears-ml/shears/transform/layers"
	"github.com/shears-ml/shears/transform/quant"
)

const nbK, nbN = 64, 32

// linearModel is y = x·W (x float32 [rows, 64], W [64, 32] random), with W int4 MatMulNBits
// (quant's own plan and RTN, as shears quantize writes it) when quantized.
func linearModel(t *testing.T, quantized bool) *onnx.Model {
	t.Helper()
	r := rand.New(rand.NewPCG(3, 4))
	w := make([]float32, nbK*nbN)
	for i := range w {
		w[i] = float32(r.NormFloat64())
	}
	b := onnx.NewBuilder("g", 17)
	in := b.Input("x", onnxpb.TensorProto_FLOAT, "rows", nbK)
	wn := b.Initializer(onnx.Float32Tensor("lin.weight", []int64{nbK, nbN}, w))
	b.OpOut("MatMul", "lin", []string{in, wn}, []string{"y"})
	b.Output("y", onnxpb.TensorProto_FLOAT, "rows", nbN)
	m, err := b.Model()
	if err != nil {
		t.Fatal(err)
	}
	if !quantized {
		return m
	}
	c := quant.Config{Bits: 4, BlockSize: 32}
	l, err := quant.RTN(w, nbK, nbN, c)
	if err != nil {
		t.Fatal(err)
	}
	ls, err := layers.Find(m)
	if err != nil || len(ls) != 1 {
		t.Fatalf("find: %v %v", ls, err)
	}
	p, err := quant.NewPlan(m, ls, c)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Apply(m, map[string]*quant.Layer{"lin": l}); err != nil {
		t.Fatal(err)
	}
	if has, _ := quant.HasQuantized(m); !has {
		t.Fatal("no MatMulNBits after quantizing")
	}
	return m
}

func marshal(t *testing.T, m *onnx.Model) []byte {
	t.Helper()
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// inIf moves m's graph (one output y) into the then branch of an If on a new bool input
// "cond"; the else branch is y = x·0 (a float MatMul). The initializers stay in the main
// graph, read from the branches as outer-scope values, as optimum's merged decoder does.
func inIf(t *testing.T, m *onnx.Model) *onnx.Model {
	t.Helper()
	g := m.Graph()
	then := &onnxpb.GraphProto{Name: proto.String("then"), Node: g.Node,
		Output: []*onnxpb.ValueInfoProto{vinfo("y", onnxpb.TensorProto_FLOAT, "rows", nbN)}}
	for _, n := range then.Node {
		for i, o := range n.Output {
			if o == "y" {
				n.Output[i] = "y_then"
			}
		}
	}
	then.Output[0].Name = proto.String("y_then")
	zero := onnx.Float32Tensor("zero.weight", []int64{nbK, nbN}, make([]float32, nbK*nbN))
	els := &onnxpb.GraphProto{Name: proto.String("else"),
		Node:   []*onnxpb.NodeProto{node("MatMul", []string{"x", "zero.weight"}, []string{"y_else"})},
		Output: []*onnxpb.ValueInfoProto{vinfo("y_else", onnxpb.TensorProto_FLOAT, "rows", nbN)}}
	ifNode := node("If", []string{"cond"}, []string{"y"},
		&onnxpb.AttributeProto{Name: proto.String("then_branch"), Type: onnxpb.AttributeProto_GRAPH.Enum(), G: then},
		&onnxpb.AttributeProto{Name: proto.String("else_branch"), Type: onnxpb.AttributeProto_GRAPH.Enum(), G: els})
	g.Node = []*onnxpb.NodeProto{ifNode}
	g.Initializer = append(g.Initializer, zero)
	g.Input = append(g.Input, vinfo("cond", onnxpb.TensorProto_BOOL))
	return m
}

// keptQuantized is the quantized linear as an unadapted linear of a QA super-network holds it
// (quant.Lower, then quant.KeepQuantized): y = x·W, W dequantized from the packed tensors by
// standard operators that onnxruntime folds at load (quant's TestKeepQuantizedFolds).
func keptQuantized(t *testing.T) *onnx.Model {
	t.Helper()
	low, err := quant.Lower(linearModel(t, true))
	if err != nil {
		t.Fatal(err)
	}
	recs, err := quant.ReadLowered(low)
	if err != nil || len(recs) != 1 {
		t.Fatalf("lowered: %v %v", recs, err)
	}
	if err := quant.KeepQuantized(low, []string{recs[0].Node}); err != nil {
		t.Fatal(err)
	}
	return low
}

// TestPrepackFollowsModel: a session over a model that runs MatMulNBits pre-packs unless told
// not to, a float model does not unless told to, read back from the options onnxruntime created
// the session with; both entry points (file and bytes), and the outputs do not depend on it.
func TestPrepackFollowsModel(t *testing.T) {
	testkit.ORT(t)
	dir := t.TempDir()
	x := make([]float32, 3*nbK)
	for i := range x {
		x[i] = float32(i%7) - 3
	}
	for _, c := range []struct {
		name  string
		model *onnx.Model
		want  [3]bool // auto, on, off
	}{
		{"float32", linearModel(t, false), [3]bool{false, true, false}},
		{"int4 MatMulNBits", linearModel(t, true), [3]bool{true, true, false}},
	} {
		raw := marshal(t, c.model)
		path := filepath.Join(dir, c.name+".onnx")
		if err := os.WriteFile(path, raw, 0o644); err != nil {
			t.Fatal(err)
		}
		var ref []float32
		for i, p := range []runtime.Prepack{runtime.PrepackAuto, runtime.PrepackOn, runtime.PrepackOff} {
			for _, fromFile := range []bool{false, true} {
				opts := runtime.Options{Threads: 1, Prepack: p}
				var s *runtime.Session
				var err error
				if fromFile {
					s, err = runtime.OpenFile(path, opts)
				} else {
					s, err = runtime.OpenBytes(raw, "", opts)
				}
				if err != nil {
					t.Fatal(err)
				}
				if got := s.Prepacked(); got != c.want[i] {
					t.Errorf("%s, prepack %s (file %v): pre-packing %v, want %v", c.name, p, fromFile, got, c.want[i])
				}
				res, err := s.Run(map[string]*runtime.Tensor{"x": runtime.F32([]int64{3, nbK}, x)}, nil)
				s.Close()
				if err != nil {
					t.Fatal(err)
				}
				y := res["y"].F32
				if ref == nil {
					ref = y
				} else if d := testkit.MaxDiff(y, ref); !(d <= 1e-5) {
					t.Errorf("%s, prepack %s: y differs from the first session's by %g", c.name, p, d)
				}
			}
		}
	}
}

// TestPrepackSeesSubgraphs: a MatMulNBits only inside an If branch (optimum's merged decoder
// keeps its decoder in the branches) turns pre-packing on; the same model with the linear in
// float does not.
func TestPrepackSeesSubgraphs(t *testing.T) {
	testkit.ORT(t)
	for _, quantized := range []bool{false, true} {
		m := inIf(t, linearModel(t, quantized))
		for _, n := range m.Graph().GetNode() { // quant.HasQuantized looks into the branches too
			if n.GetOpType() == "MatMulNBits" {
				t.Fatal("the main graph still holds the MatMulNBits")
			}
		}
		s, err := runtime.OpenBytes(marshal(t, m), "", runtime.Options{Threads: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if s.Prepacked() != quantized {
			t.Errorf("quantized %v: pre-packing %v, want %v", quantized, s.Prepacked(), quantized)
		}
		x := runtime.F32([]int64{1, nbK}, make([]float32, nbK))
		if _, err := s.Run(map[string]*runtime.Tensor{"x": x, "cond": runtime.RawTensor(runtime.Bool, []int64{}, []byte{1})}, nil); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPrepackKeptQuantized: a QA super-network's kept linear is no MatMulNBits (its weight is
// folded to a float constant at load), so auto does not pre-pack it, and it computes what the
// quantized model does.
func TestPrepackKeptQuantized(t *testing.T) {
	testkit.ORT(t)
	x := make([]float32, 2*nbK)
	for i := range x {
		x[i] = float32(i%5) - 2
	}
	var ys [][]float32
	for _, m := range []*onnx.Model{linearModel(t, true), keptQuantized(t)} {
		s, err := runtime.OpenBytes(marshal(t, m), "", runtime.Options{Threads: 1})
		if err != nil {
			t.Fatal(err)
		}
		res, err := s.Run(map[string]*runtime.Tensor{"x": runtime.F32([]int64{2, nbK}, x)}, nil)
		s.Close()
		if err != nil {
			t.Fatal(err)
		}
		if has, _ := quant.HasQuantized(m); s.Prepacked() != has {
			t.Errorf("MatMulNBits %v: pre-packing %v", has, s.Prepacked())
		}
		ys = append(ys, res["y"].F32)
	}
	if d := testkit.MaxDiff(ys[1], ys[0]); !(d <= 1e-5) {
		t.Errorf("kept linear's y differs from MatMulNBits' by %g", d)
	}
}

func TestParsePrepack(t *testing.T) {
	for in, want := range map[string]runtime.Prepack{"": runtime.PrepackAuto, "auto": runtime.PrepackAuto,
		"on": runtime.PrepackOn, "TRUE": runtime.PrepackOn, "off": runtime.PrepackOff, "false": runtime.PrepackOff} {
		got, err := runtime.ParsePrepack(in)
		if err != nil || got != want {
			t.Errorf("%q: %v %v, want %v", in, got, err, want)
		}
		if err == nil && in != "" && in != "TRUE" && in != "false" && got.String() != in {
			t.Errorf("%q: String %q", in, got.String())
		}
	}
	if _, err := runtime.ParsePrepack("yes"); err == nil {
		t.Error("yes: no error")
	}
	if err := (runtime.Options{Prepack: 3}).Validate(); err == nil {
		t.Error("Prepack 3 validated")
	}
}
