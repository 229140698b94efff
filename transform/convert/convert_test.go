package convert_test

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/runtime"
	. "github.com/shears-ml/shears/transform/convert"
)

const (
	fp16 = onnxpb.TensorProto_FLOAT16
	bf16 = onnxpb.TensorProto_BFLOAT16
)

// unitRoundoff is the relative rounding error of round-to-nearest in dt: 2^-11 for float16
// (10 stored mantissa bits), 2^-8 for bfloat16 (7 bits).
func unitRoundoff(dt onnxpb.TensorProto_DataType) float64 {
	if dt == bf16 {
		return math.Ldexp(1, -8)
	}
	return math.Ldexp(1, -11)
}

func TestPlanStories(t *testing.T) {
	fp32 := storiesFP32(t, t.TempDir())
	m, err := onnx.Load(fp32)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	p, err := NewPlan(m, Options{DType: fp16})
	if err != nil {
		t.Fatal(err)
	}
	roles := map[string]int{}
	for _, x := range p.Tensors {
		roles[x.Role]++
	}
	// 5 blocks × 7 linears + the LM head; one embedding table.
	if roles["linear"] != 36 || roles["embedding"] != 1 || len(p.Tensors) != 37 {
		t.Errorf("weight-only plan converts %v", roles)
	}
	if len(p.Gathers) != 1 || p.Gathers[0] != "/model/embed_tokens/Gather" {
		t.Errorf("gather casts %v", p.Gathers)
	}
	for _, k := range []string{"model.norm.weight", "model.rotary_emb.cos_cached"} {
		if p.Converts(k) || !strings.Contains(p.String(), "fp32 kept      "+k+"\n") {
			t.Errorf("%s should stay float32 in weight-only mode", k)
		}
	}
	if p.BytesAfter*2 != p.BytesBefore || p.BytesBefore == 0 {
		t.Errorf("bytes %d → %d, want exactly half", p.BytesBefore, p.BytesAfter)
	}
	if !strings.HasPrefix(p.String(), "convert to fp16 (weight-only, compute float32)\n  fp16 embedding model.embed_tokens.weight [512 64]\n") {
		t.Errorf("plan text:\n%.300s", p.String())
	}
	n, err := NewPlan(m, Options{DType: fp16, Compute: ComputeNative})
	if err != nil {
		t.Fatal(err)
	}
	// Native: every float32 initializer but the Pow exponent.
	floats := 0
	for _, x := range m.Graph().GetInitializer() {
		if onnx.DataType(x) == onnxpb.TensorProto_FLOAT {
			floats++
		}
	}
	if len(n.Tensors) != floats-1 || len(n.Kept) != 1 || n.Kept[0] != "/model/constants/two" {
		t.Errorf("native plan: %d of %d float tensors, kept %v", len(n.Tensors), floats, n.Kept)
	}
	// The interface keeps float32: the past is cast in, logits and presents cast out.
	if len(n.Outputs) != 11 || n.Outputs[0] != "logits" || n.Outputs[1] != "present.0.key" || len(n.Inputs) != 10 || n.Inputs[0] != "past_key_values.0.key" {
		t.Errorf("native casts: in %v out %v", n.Inputs, n.Outputs)
	}
	if _, err := NewPlan(m, Options{DType: onnxpb.TensorProto_DOUBLE}); err == nil || !strings.Contains(err.Error(), "DOUBLE") {
		t.Errorf("double target: %v", err)
	}
	if _, err := ParseDType("fp8"); err == nil || !strings.Contains(err.Error(), `"fp8"`) {
		t.Errorf("ParseDType(fp8): %v", err)
	}
}

// TestLogitsWithinDtypeTolerance compares stories260K's logits (64 tokens × 512) after
// conversion with float32's, as max|Δ| / max|logit|, in units of the type's unit roundoff u.
// Weight-only: each weight carries a relative error ≤ u; the five blocks and the head add
// such errors up (measured 1.3u for both types), so 4u leaves margin yet catches truncation or
// a wrong rounding (≥ 2u systematic). Native fp16 also rounds every activation (measured 3u):
// the bound is 8u. bfloat16 native needs kernels the CPU provider lacks (Pow has no bfloat16
// kernel in onnxruntime 1.24); the test then requires that error, naming the kernel.
func TestLogitsWithinDtypeTolerance(t *testing.T) {
	dir := t.TempDir()
	fp32 := storiesFP32(t, dir)
	testkit.ORT(t)
	ids := testIDs(64)
	ref, err := runLogits(t, fp32, ids, runtime.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		dt  onnxpb.TensorProto_DataType
		c   Compute
		tol float64
	}{{fp16, ComputeFP32, 4}, {bf16, ComputeFP32, 4}, {fp16, ComputeNative, 8}, {bf16, ComputeNative, 8}} {
		name := DTypeName(tc.dt) + "-" + string(tc.c)
		out := filepath.Join(dir, name+".onnx")
		convertFile(t, fp32, out, tc.dt, tc.c)
		got, err := runLogits(t, out, ids, runtime.Options{})
		if err != nil {
			if tc.dt == bf16 && tc.c == ComputeNative && strings.Contains(err.Error(), "Could not find an implementation for") {
				t.Logf("%s: the CPU provider lacks a kernel: %.160s", name, err.Error()[strings.Index(err.Error(), "Could not"):])
				continue
			}
			t.Fatalf("%s: %v", name, err)
		}
		e := relErr(got, ref)
		u := unitRoundoff(tc.dt)
		t.Logf("%s: relative logit error %.3g = %.2fu", name, e, e/u)
		if !(e <= tc.tol*u) || e == 0 {
			t.Errorf("%s: relative logit error %.3g, want (0, %g·u = %.3g]", name, e, tc.tol, tc.tol*u)
		}
	}
}

// TestConvertedFileIsHalf checks the bytes on disk: the converted weights take half the space,
// everything else is unchanged. (stories260K's float32 causal mask [512, 512] and RoPE tables
// are about half its file and stay float32, so the whole file shrinks by a quarter.)
func TestConvertedFileIsHalf(t *testing.T) {
	dir := t.TempDir()
	fp32 := storiesFP32(t, dir)
	size := func(p string) int64 {
		var n int64
		for _, f := range []string{p, p + ".data"} {
			if st, err := os.Stat(f); err == nil {
				n += st.Size()
			}
		}
		return n
	}
	for _, dt := range []onnxpb.TensorProto_DataType{fp16, bf16} {
		for _, ext := range []bool{false, true} {
			m, err := onnx.Load(fp32)
			if err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(dir, DTypeName(dt)+map[bool]string{false: ".onnx", true: "-ext.onnx"}[ext])
			p, err := Convert(m, out, Options{DType: dt}, onnx.SaveOptions{ExternalData: ext})
			m.Close()
			if err != nil {
				t.Fatal(err)
			}
			a, b := size(fp32), size(out)
			saved := a - b
			t.Logf("%s external=%v: %d → %d bytes (weights %d → %d)", DTypeName(dt), ext, a, b, p.BytesBefore, p.BytesAfter)
			slack := int64(8192) // 37 Cast nodes and their names in the protobuf
			if ext {
				slack = int64(len(p.Tensors)+8) * onnx.ExternalAlign // alignment padding
			}
			if d := saved - (p.BytesBefore - p.BytesAfter); d > slack || d < -slack {
				t.Errorf("%s external=%v: saved %d bytes, the weights' half is %d", DTypeName(dt), ext, saved, p.BytesBefore-p.BytesAfter)
			}
			c, err := onnx.Load(out)
			if err != nil {
				t.Fatal(err)
			}
			if err := onnx.Validate(c); err != nil {
				t.Errorf("%s: converted model invalid: %v", out, err)
			}
			c.Close()
		}
	}
}
