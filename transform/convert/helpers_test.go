package convert_test

import (
	"math"
	"path/filepath"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/models/llama2c"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/runtime"
	. "github.com/shears-ml/shears/transform/convert"
)

// storiesFP32 imports the shared stories260K checkpoint and saves it (float32) in dir.
func storiesFP32(t *testing.T, dir string) string {
	t.Helper()
	ckpt := testkit.StoriesShaped(t)
	m, err := llama2c.Import(ckpt)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "fp32.onnx")
	if err := m.Save(p, onnx.SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	return p
}

// convertFile converts the model at in to out.
func convertFile(t *testing.T, in, out string, dt onnxpb.TensorProto_DataType, c Compute) *Plan {
	t.Helper()
	m, err := onnx.Load(in)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	p, err := Convert(m, out, Options{DType: dt, Compute: c}, onnx.SaveOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// testIDs is a fixed token sequence (stories260K has 512 tokens).
func testIDs(n int) []int64 {
	ids := make([]int64, n)
	ids[0] = 1
	for i := 1; i < n; i++ {
		ids[i] = int64((i*131 + 7) % 512)
	}
	return ids
}

// runLogits runs the model at path on ids (batch 1) and returns the logits.
func runLogits(t *testing.T, path string, ids []int64, opts runtime.Options) ([]float32, error) {
	t.Helper()
	s, err := runtime.OpenFile(path, opts)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	res, err := s.Run(testkit.Feeds(t, s.Inputs(), runtime.I64([]int64{1, int64(len(ids))}, ids), nil), []string{"logits"})
	if err != nil {
		return nil, err
	}
	return res["logits"].F32, nil
}

// relErr is max|a−b| / max|b|.
func relErr(a, b []float32) float64 {
	var d, s float64
	for i := range b {
		d = math.Max(d, math.Abs(float64(a[i]-b[i])))
		s = math.Max(s, math.Abs(float64(b[i])))
	}
	return d / s
}
