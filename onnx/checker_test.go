package onnx

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// python3WithOnnx returns the interpreter when the official onnx package imports, or skips.
func python3WithOnnx(t *testing.T) string {
	t.Helper()
	const py = "/usr/bin/python3"
	if out, err := exec.Command(py, "-c", "import onnx").CombinedOutput(); err != nil {
		t.Skipf("official checker unavailable: %s -c 'import onnx' failed (install python3-onnx): %v %s", py, err, strings.TrimSpace(string(out)))
	}
	return py
}

// TestOfficialChecker runs onnx.checker.check_model(full_check=True) on files written by Save,
// inline and with external data.
func TestOfficialChecker(t *testing.T) {
	py := python3WithOnnx(t)
	dir := t.TempDir()
	var models []*Model
	models = append(models, tcTiny())
	if p := fuzzFixture(); p != "" {
		m, err := Load(p)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		models = append(models, m)
	}
	for i, m := range models {
		for _, ext := range []bool{false, true} {
			p := filepath.Join(dir, "m"+string(rune('0'+i))+map[bool]string{false: "_inline", true: "_ext"}[ext]+".onnx")
			if err := m.Save(p, SaveOptions{ExternalData: ext}); err != nil {
				t.Fatal(err)
			}
			script := "import sys, onnx; onnx.checker.check_model(sys.argv[1], full_check=True); " +
				"m = onnx.load(sys.argv[1]); from onnx import numpy_helper as nh; " +
				"print(sum(nh.to_array(x).size for x in m.graph.initializer))"
			out, err := exec.Command(py, "-c", script, p).CombinedOutput()
			if err != nil {
				t.Fatalf("checker on %s: %v\n%s", p, err, out)
			}
			// the checker read the same number of weights we wrote
			var want int64
			for _, x := range m.Graph().GetInitializer() {
				want += NumElements(x.GetDims())
			}
			var got int64
			if err := json.Unmarshal([]byte(strings.TrimSpace(string(out))), &got); err != nil || got != want {
				t.Fatalf("%s: python counted %s elements, want %d", p, out, want)
			}
		}
	}
}

// TestShapesMatchOnnxInference compares InferShapes with onnx.shape_inference (data_prop on) on
// the torch fixture with input_ids fixed to [2,64], on every tensor the official inference types.
func TestShapesMatchOnnxInference(t *testing.T) {
	py := python3WithOnnx(t)
	m, err := Load(coreFixture(t))
	if err != nil {
		t.Fatal(err)
	}
	ty, err := InferShapes(m, map[string][]int64{"input_ids": {2, 64}})
	if err != nil {
		t.Fatal(err)
	}
	script := `import sys, json, onnx
from onnx import shape_inference
m = onnx.load(sys.argv[1])
d = m.graph.input[0].type.tensor_type.shape.dim
d[0].dim_value = 2; d[1].dim_value = 64
mi = shape_inference.infer_shapes(m, data_prop=True)
out = {}
for v in list(mi.graph.value_info) + list(mi.graph.output):
    tt = v.type.tensor_type
    if tt.HasField("shape"):
        out[v.name] = [tt.elem_type, [x.dim_value if x.HasField("dim_value") else -1 for x in tt.shape.dim]]
print(json.dumps(out))`
	out, err := exec.Command(py, "-c", script, m.Path).Output()
	if err != nil {
		t.Fatalf("onnx shape inference: %v", err)
	}
	var ref map[string][2]json.RawMessage
	if err := json.Unmarshal(out, &ref); err != nil {
		t.Fatal(err)
	}
	if len(ref) < 1500 {
		t.Fatalf("onnx typed only %d tensors", len(ref))
	}
	for name, r := range ref {
		var elem int32
		var dims []int64
		json.Unmarshal(r[0], &elem)
		json.Unmarshal(r[1], &dims)
		mine, ok := ty[name]
		if !ok {
			t.Errorf("%s: not inferred", name)
			continue
		}
		if int32(mine.Elem) != elem || len(mine.Shape) != len(dims) {
			t.Errorf("%s: %v, onnx says elem %d dims %v", name, mine, elem, dims)
			continue
		}
		for i, d := range dims {
			if d >= 0 && mine.Shape[i] != d {
				t.Errorf("%s: %v, onnx says %v", name, mine.Shape, dims)
				break
			}
		}
	}
}
