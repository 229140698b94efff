package convert_test

import (
	"math"
	"path/filepath"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/models/llama"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/runtime"
	"github.com/shears-ml/shears/transform/convert"
)

// TestWriteSyntheticHalf writes (through llama.WriteSyntheticAs with Storage) the tiny preset as float32, fp16/bf16 weight-only and fp16
// native: every converted weight must be exactly the float32 weight rounded (Narrow), the
// norms stay float32 in weight-only mode, and the logits agree with float32 within the type's
// tolerance (see transform/convert's tests for the reasoning behind 4u and 8u).
func TestWriteSyntheticHalf(t *testing.T) {
	c, _ := llama.Preset("tiny")
	dir := t.TempDir()
	ref := filepath.Join(dir, "fp32.onnx")
	if err := llama.WriteSynthetic(ref, c, 5, onnxpb.TensorProto_FLOAT); err != nil {
		t.Fatal(err)
	}
	rm, err := onnx.Load(ref)
	if err != nil {
		t.Fatal(err)
	}
	defer rm.Close()
	cases := []struct {
		dt      onnxpb.TensorProto_DataType
		compute convert.Compute
		tol     float64 // relative to max |logit|, in units of the type's rounding u
	}{
		{onnxpb.TensorProto_FLOAT16, convert.ComputeFP32, 4},
		{onnxpb.TensorProto_BFLOAT16, convert.ComputeFP32, 4},
		{onnxpb.TensorProto_FLOAT16, convert.ComputeNative, 8},
	}
	ids := make([]int64, 32)
	for i := range ids {
		ids[i] = int64(i*37+1) % int64(c.Vocab)
	}
	testkit.ORT(t)
	want := logitsOf(t, ref, ids)
	for _, tc := range cases {
		name := convert.DTypeName(tc.dt) + "-" + string(tc.compute)
		p := filepath.Join(dir, name+".onnx")
		if err := llama.WriteSyntheticAs(p, c, 5, convert.Storage(convert.Options{DType: tc.dt, Compute: tc.compute})); err != nil {
			t.Fatal(err)
		}
		m, err := onnx.Load(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range []string{"model.embed_tokens.weight", llama.LayerWeight(1, "mlp.down_proj"), "lm_head.weight", llama.LayerWeight(0, "input_layernorm")} {
			got, exp := m.Initializer(w), rm.Initializer(w)
			wantDT := tc.dt
			if len(exp.GetDims()) == 1 && tc.compute == convert.ComputeFP32 {
				wantDT = onnxpb.TensorProto_FLOAT
			}
			if onnx.DataType(got) != wantDT {
				t.Fatalf("%s: %s stored as %s, want %s", name, w, onnx.DataType(got), wantDT)
			}
			a, _ := m.Float32s(got)
			b, _ := rm.Float32s(exp)
			for i := range b {
				r := b[i]
				if wantDT != onnxpb.TensorProto_FLOAT {
					r = convert.Widen(tc.dt, convert.Narrow(tc.dt, b[i]))
				}
				if a[i] != r {
					t.Fatalf("%s: %s[%d] = %v, want %v", name, w, i, a[i], r)
				}
			}
		}
		m.Close()
		got := logitsOf(t, p, ids)
		u := math.Ldexp(1, -11)
		if tc.dt == onnxpb.TensorProto_BFLOAT16 {
			u = math.Ldexp(1, -8)
		}
		var d, s float64
		for i := range want {
			d = math.Max(d, math.Abs(float64(got[i]-want[i])))
			s = math.Max(s, math.Abs(float64(want[i])))
		}
		t.Logf("%s: max|Δlogit|/max|logit| = %.3g (%.2fu)", name, d/s, d/s/u)
		if !(d/s <= tc.tol*u) {
			t.Errorf("%s: relative logit error %.3g > %g·u = %.3g", name, d/s, tc.tol, tc.tol*u)
		}
	}
}

func logitsOf(t *testing.T, path string, ids []int64) []float32 {
	t.Helper()
	s, err := runtime.OpenFile(path, runtime.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	res, err := s.Run(testkit.Feeds(t, s.Inputs(), runtime.I64([]int64{1, int64(len(ids))}, ids), nil), []string{"logits"})
	if err != nil {
		t.Fatal(err)
	}
	return res["logits"].F32
}
