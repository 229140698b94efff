package lora

import (
	"math"
	"strings"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/runtime"
	"github.com/shears-ml/shears/train/gradcheck"
	"github.com/shears-ml/shears/transform/autodiff"
	"github.com/shears-ml/shears/transform/quant"
	"google.golang.org/protobuf/proto"
)

// qaSuper is the tiny model with half of each target weight zero, quantized on c by RTN,
// lowered, with QA-SparsePEFT adapters (ranks 8, 6, 4); also the quantized model itself.
func qaSuper(t *testing.T, c quant.Config) (q, low, sup *onnx.Model, meta *Meta) {
	t.Helper()
	m := tiny(t)
	ls := targetsOf(t, m)
	p, err := quant.NewPlan(m, ls, c)
	if err != nil {
		t.Fatal(err)
	}
	for _, tg := range p.Targets {
		w, err := quant.Weight(m, tg.Linear)
		if err != nil {
			t.Fatal(err)
		}
		for i := range w {
			if i%2 == 0 {
				w[i] = 0
			}
		}
		l, err := quant.RTN(w, tg.K, tg.N, c)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.ApplyTarget(m, tg, l); err != nil {
			t.Fatal(err)
		}
	}
	if low, err = quant.Lower(m); err != nil {
		t.Fatal(err)
	}
	if sup, err = Apply(low, plan(t, low, Config{Ranks: []int{8, 6, 4}, SparseAdapter: true}), ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	if meta, err = ReadConfig(sup); err != nil || !meta.QuantAware {
		t.Fatalf("metadata: quant aware %v (%v)", meta != nil && meta.QuantAware, err)
	}
	return m, low, sup, meta
}

// TestQAForwardIsTheQuantizedMerge: with B = 0 the QA super-network computes the quantized
// base; with random B it computes x·Q(W'), W' = W + M ⊙ s·A_r·B_r, what the merge writes
// (quant.Requantize: the base's grid, refit where W' leaves it). Checked on an asymmetric grid
// whose last block of down_proj is padded (K = 172) and on a symmetric one: every merged
// weight is within half a step of W' (100%), zeros stay exactly 0, blocks that fit keep the
// base's grid, and B is large enough that some blocks are refit.
func TestQAForwardIsTheQuantizedMerge(t *testing.T) {
	testkit.ORT(t)
	for _, c := range []quant.Config{{Bits: 4, BlockSize: 32}, {Bits: 4, BlockSize: 64, Symmetric: true}} {
		q, low, sup, meta := qaSuper(t, c)
		// Linears without an adapter read the base's packed integers; every initializer is
		// read (onnxruntime warns about the others).
		read := map[string]bool{}
		for _, n := range sup.Graph().GetNode() {
			for _, in := range n.GetInput() {
				read[in] = true
			}
		}
		for _, in := range sup.Graph().GetInitializer() {
			if !read[in.GetName()] {
				t.Fatalf("%+v: initializer %s of the QA super-network is read by no node", c, in.GetName())
			}
		}
		if has, name := quant.HasQuantized(sup); has {
			t.Fatalf("%+v: MatMulNBits %s in the super-network, want standard-operator dequantizations only", c, name)
		}
		kept := 0
		for _, n := range sup.Graph().GetNode() {
			if strings.HasSuffix(n.GetName(), "/dequant/Transpose") {
				kept++
			}
		}
		if recs, _ := quant.ReadLowered(sup); kept != len(recs)-len(meta.Modules) || kept == 0 {
			t.Fatalf("%+v: %d linears kept quantized, want %d (%d lowered, %d adapted)", c, kept, len(recs)-len(meta.Modules), len(recs), len(meta.Modules))
		}
		feeds, ranks := masksFor(meta, 6, 4)
		_, want := testkit.RunLogits(t, q, 2, testIDs, nil)
		if d := testkit.MaxDiff(logits(t, sup, feeds), want); !(d <= 1e-5) {
			t.Fatalf("%+v, B = 0: QA super-network differs from the quantized model by %g", c, d)
		}
		randomizeB(t, sup, meta, 3)
		got := logits(t, sup, feeds)
		if d := testkit.MaxDiff(got, want); !(d > 1e-3) {
			t.Fatalf("random B changed the logits by only %g", d)
		}
		// The merge, computed here: W' = W + M ⊙ s·A[:, :r]·B[:r, :], requantized, its
		// dequantized values written into the lowered base.
		recs, _ := quant.ReadLowered(sup)
		merged := &onnx.Model{Proto: protoClone(low.Proto), Dir: low.Dir}
		steps := 0.0
		refit, blocks := 0, 0
		for _, mod := range meta.Modules {
			var r quant.Lowered
			for _, x := range recs {
				if x.Node == mod.Node {
					r = x
				}
			}
			w, _ := sup.Float32s(sup.Initializer(mod.Weight))
			a, _ := sup.Float32s(sup.Initializer(mod.A))
			b, _ := sup.Float32s(sup.Initializer(mod.B))
			rk, in, out := ranks[mod.Group], int(mod.In), int(mod.Out)
			wp := make([]float32, len(w))
			for i := 0; i < in; i++ {
				for j := 0; j < out; j++ {
					d := 0.0
					for k := 0; k < rk; k++ {
						d += float64(a[i*meta.RMax+k]) * float64(b[k*out+j])
					}
					wp[i*out+j] = w[i*out+j]
					if w[i*out+j] != 0 {
						wp[i*out+j] += float32(meta.Scale * d)
					}
				}
			}
			grid, err := r.Grid(sup)
			if err != nil {
				t.Fatal(err)
			}
			ql, n, err := quant.Requantize(wp, grid)
			if err != nil {
				t.Fatal(err)
			}
			refit += n
			blocks += len(ql.Scales)
			changed := 0
			for i := range ql.Scales {
				if ql.Scales[i] != grid.Scales[i] || ql.Zeros[i] != grid.Zeros[i] {
					changed++
				}
			}
			if changed > n {
				t.Fatalf("%s: %d blocks changed grid, %d reported refit", mod.Name, changed, n)
			}
			deq := ql.Dequant()
			for i := range wp {
				if w[i] == 0 && deq[i] != 0 {
					t.Fatalf("%s: a zero of the base dequantizes to %g after the merge", mod.Name, deq[i])
				}
				g := ql.GridAt(i%out, i/out/r.BlockSize)
				if g.Scale == 0 {
					if wp[i] != 0 {
						t.Fatalf("%s: W'[%d] = %g in a block of scale 0", mod.Name, i, wp[i])
					}
					continue
				}
				steps = math.Max(steps, math.Abs(float64(wp[i]-deq[i]))/float64(g.Scale))
			}
			if err := onnx.SetFloat32s(merged.Initializer(mod.Weight), deq); err != nil {
				t.Fatal(err)
			}
		}
		onnx.RemoveDead(merged.Graph()) // the lowered base's grids: read by nothing here
		_, mlog := testkit.RunLogits(t, merged, 2, testIDs, nil)
		if d := testkit.MaxDiff(got, mlog); !(d <= 1e-4) {
			t.Fatalf("%+v: QA super-network and the quantized merge differ by %g", c, d)
		}
		if !(steps <= 0.5+1e-5) || refit == 0 {
			t.Fatalf("%+v: merged weights lie up to %g steps from W'; %d of %d blocks refit", c, steps, refit, blocks)
		}
		t.Logf("%+v: largest |W' − Q(W')| %.3f steps; %d of %d blocks refit", c, steps, refit, blocks)
	}
}

// TestQAStraightThroughGradients checks the QA-SparsePEFT train graph's gradients of A and B.
// The forward is piecewise constant in A and B (the rounding), so finite differences of it
// say nothing; the straight-through estimator is the exact gradient of the surrogate in which
// each module's rounding residual R = Q(W') − W' is the constant it has at the checked point.
// The test captures every R at that point, builds the surrogate (same forward value there),
// checks its gradients against central differences in float64, and requires the QA graph's
// own gradients to be identical to the surrogate's.
func TestQAStraightThroughGradients(t *testing.T) {
	testkit.ORT(t)
	_, _, sup, meta := qaSuper(t, quant.Config{Bits: 4, BlockSize: 32})
	randomizeB(t, sup, meta, 5)
	sup = weightedLoss(t, sup, 5)
	g64, err := autodiff.ToFloat64(sup)
	if err != nil {
		t.Fatal(err)
	}
	masks, _ := masksFor(meta, 6, 4)
	in := map[string]*runtime.Tensor{"input_ids": runtime.I64([]int64{2, 8}, testIDs)}
	for k, v := range masks {
		v64 := make([]float64, len(v))
		for i, x := range v {
			v64[i] = float64(x)
		}
		in[k] = runtime.F64([]int64{int64(len(v))}, v64)
	}
	// Capture each residual R at this point.
	var resid []string
	for _, n := range g64.Graph().GetNode() {
		if strings.HasSuffix(n.GetName(), "/lora_qa/ste/Residual") {
			resid = append(resid, n.GetOutput()[0])
		}
	}
	if len(resid) != len(meta.Modules) {
		t.Fatalf("%d residual nodes for %d modules", len(resid), len(meta.Modules))
	}
	probe := &onnx.Model{Proto: protoClone(g64.Proto), Dir: g64.Dir}
	for _, r := range resid {
		probe.Graph().Output = append(probe.Graph().Output, &onnxpb.ValueInfoProto{Name: &r, Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
			TensorType: &onnxpb.TypeProto_Tensor{ElemType: int32p(int32(onnxpb.TensorProto_DOUBLE))}}}})
	}
	raw, err := probe.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	s, err := runtime.OpenBytes(raw, sup.Dir, runtime.Options{Threads: 1, OptLevel: "basic"})
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Run(in, resid)
	s.Close()
	if err != nil {
		t.Fatal(err)
	}
	sur := &onnx.Model{Proto: protoClone(g64.Proto), Dir: g64.Dir}
	var nonzero int
	for _, r := range resid {
		g := sur.Graph()
		for i, n := range g.Node {
			if len(n.Output) > 0 && n.Output[0] == r {
				g.Node = append(g.Node[:i:i], g.Node[i+1:]...)
				break
			}
		}
		v := res[r]
		raw := make([]byte, 8*len(v.F64))
		for i, x := range v.F64 {
			if x != 0 {
				nonzero++
			}
			bits := math.Float64bits(x)
			for k := 0; k < 8; k++ {
				raw[8*i+k] = byte(bits >> (8 * k))
			}
		}
		g.Initializer = append(g.Initializer, onnx.NewTensor(r, onnxpb.TensorProto_DOUBLE, v.Shape, raw))
	}
	if nonzero == 0 {
		t.Fatal("every rounding residual is 0: the point checks nothing about the rounding")
	}
	q, down := meta.Modules[0], meta.Modules[4]
	wrt := []string{q.A, q.B, down.A, down.B}
	opts := gradcheck.Options{InputDims: map[string][]int64{"input_ids": {2, 8}}, MaxSamples: 24, Seed: 2}
	sres, err := gradcheck.Check(sur, "loss", wrt, in, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range gradcheck.Failures(sres, gradcheck.TolModel64) {
		t.Error("surrogate:", f)
	}
	qres, err := gradcheck.Check(g64, "loss", wrt, in, opts)
	if err != nil {
		t.Fatal(err)
	}
	for i := range sres {
		for k := range sres[i].Analytic {
			a, b := qres[i].Analytic[k], sres[i].Analytic[k]
			if !(math.Abs(a-b) <= 1e-12*math.Max(1, math.Abs(b))) {
				t.Fatalf("%s[%d]: QA gradient %g, surrogate's %g", sres[i].Name, sres[i].Indices[k], a, b)
			}
		}
		t.Logf("%s: STE gradient vs central differences of the surrogate: max relative error %.2g (scale %.2g)", sres[i].Name, sres[i].MaxRelErr, sres[i].Scale)
	}
}

func protoClone(m *onnxpb.ModelProto) *onnxpb.ModelProto { return proto.Clone(m).(*onnxpb.ModelProto) }

func int32p(v int32) *int32 { return &v }
