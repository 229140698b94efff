package runtime_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/runtime"
)

// TestProfileNamesProviders: with Options.Profile (or $SHEARS_ORT_PROFILE) set, closing the session
// leaves one onnxruntime profile whose node events name each node's op type and provider; this is
// what bench/gpu reads to list the ops a GPU provider left to the CPU.
func TestProfileNamesProviders(t *testing.T) {
	testkit.ORT(t)
	for _, viaEnv := range []bool{false, true} {
		dir := t.TempDir()
		opts := testOpts
		if viaEnv {
			t.Setenv(runtime.ProfileEnv, filepath.Join(dir, "ort"))
		} else {
			opts.Profile = filepath.Join(dir, "ort")
		}
		s, err := runtime.OpenBytes(tinyModel(t), "", opts)
		if err != nil {
			t.Fatal(err)
		}
		x := runtime.F32([]int64{2, 3}, []float32{0.5, -1, 2, 10, 20, 30})
		if _, err := s.RunWithShapes(map[string]*runtime.Tensor{"x": x}, nil, map[string][]int64{"h": {2, 3}}); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		ops := profiledOps(t, dir)
		for _, op := range []string{"Add", "Cast", "ReduceSum"} {
			if ops[op] != "CPUExecutionProvider" {
				t.Errorf("env %v: %s ran on %q, want CPUExecutionProvider (all: %v)", viaEnv, op, ops[op], ops)
			}
		}
	}
}

// profiledOps maps the op type of each node event in the one profile under dir to the
// execution provider that ran it.
func profiledOps(t *testing.T, dir string) map[string]string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "ort*.json"))
	if len(files) != 1 {
		t.Fatalf("profiles %v, want one", files)
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	var events []struct {
		Cat  string `json:"cat"`
		Args struct {
			OpName   string `json:"op_name"`
			Provider string `json:"provider"`
		} `json:"args"`
	}
	if err := json.Unmarshal(b, &events); err != nil {
		t.Fatalf("%s: %v", files[0], err)
	}
	ops := map[string]string{}
	for _, e := range events {
		if e.Cat == "Node" && e.Args.OpName != "" {
			ops[e.Args.OpName] = e.Args.Provider
		}
	}
	return ops
}
