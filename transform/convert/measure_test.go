package convert_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/models/llama"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/runtime"
	. "github.com/shears-ml/shears/transform/convert"
)

func rssKiB() int64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			n, _ := strconv.ParseInt(strings.Fields(l)[1], 10, 64)
			return n
		}
	}
	return 0
}

// TestMeasureSessionMemory is a measurement, not a check: with SHEARS_MEASURE=<opt level> it
// writes the 25m synthetic model (fp32, or fp16 weight-only with SHEARS_MEASURE_DTYPE=fp16)
// and logs the resident memory a session adds, to see whether onnxruntime's constant folding
// widens Cast(fp16 weight) back to float32. Run one level per process.
func TestMeasureSessionMemory(t *testing.T) {
	lvl := os.Getenv("SHEARS_MEASURE")
	if lvl == "" {
		t.Skip("set SHEARS_MEASURE=all|basic|disable to measure")
	}
	testkit.ORT(t)
	cfg, _ := llama.Preset("25m")
	dt := onnxpb.TensorProto_FLOAT
	o := Options{DType: dt}
	if os.Getenv("SHEARS_MEASURE_DTYPE") == "fp16" {
		o = Options{DType: onnxpb.TensorProto_FLOAT16, Compute: ComputeFP32}
	}
	p := filepath.Join(t.TempDir(), "m.onnx")
	if err := llama.WriteSyntheticAs(p, cfg, 0, Storage(o)); err != nil {
		t.Fatal(err)
	}
	before := rssKiB()
	s, err := runtime.OpenFile(p, runtime.Options{OptLevel: lvl, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	opened := rssKiB()
	ids := make([]int64, 64)
	if _, err := s.Run(testkit.Feeds(t, s.Inputs(), runtime.I64([]int64{1, 64}, ids), nil), []string{"logits"}); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s %s: session adds %.1f MiB resident, %.1f MiB after one 64-token run (weights %.1f MiB as float32)",
		DTypeName(o.DType), lvl, float64(opened-before)/1024, float64(rssKiB()-before)/1024, float64(4*cfg.Params())/(1<<20))
}
