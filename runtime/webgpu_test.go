package runtime_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/runtime"
)

// TestWebGPUReachesTheProvider: the library "make ort" fetches carries the WebGPU execution
// provider, and --device webgpu reaches it through the generic append call. On a machine without
// a GPU adapter the error comes from inside the provider (Dawn found no adapter), wraps
// ErrProvider and carries the hint; a build without the provider would say "not supported in
// this build" instead. Where an adapter exists, the session runs and computes what the CPU does.
func TestWebGPUReachesTheProvider(t *testing.T) {
	testkit.ORT(t)
	s, err := runtime.OpenBytes(tinyModel(t), "", runtime.Options{Device: "webgpu"})
	if err == nil {
		defer s.Close()
		out, err := s.RunWithShapes(map[string]*runtime.Tensor{"x": runtime.F32([]int64{1, 3}, []float32{1, 2, 3})}, nil, map[string][]int64{"h": {1, 3}})
		if err != nil {
			t.Fatal(err)
		}
		if got := out["y"].F32; len(got) != 3 || got[0] != 2 || got[1] != 4 || got[2] != 6 {
			t.Errorf("y = %v on webgpu, want [2 4 6]", got)
		}
		t.Log("a WebGPU adapter is available here")
		return
	}
	msg := err.Error()
	if !errors.Is(err, runtime.ErrProvider) || strings.Contains(msg, "not supported in this build") {
		t.Fatalf("got %v, want the provider's own failure wrapped in ErrProvider", err)
	}
	for _, want := range []string{"webgpu execution provider", "WebGPU adapter", "Vulkan (libvulkan.so.1) and a GPU adapter"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	t.Logf("webgpu here: %v", err)
}
