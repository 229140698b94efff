package testkit

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/runtime"
)

// The script makes ../shared's export byte for byte from ../shared's checkpoint (under the
// torch that made it, 1.13), and PyTorch's own logits after BOS are run.c's goldens.
func TestTorchStoriesReproducesShared(t *testing.T) {
	shared := Shared(t, TorchStoriesRel)
	ckpt := Shared(t, "models/stories260K/stories260K.bin")
	NeedTorch(t)
	p, afterBOS := exportTorchStories(t, ckpt)
	want, errShared := os.ReadFile(shared)
	got, errOurs := os.ReadFile(p)
	if err := errors.Join(errShared, errOurs); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		v, _ := exec.Command(Python, "-c", "import torch; print(torch.__version__)").Output()
		if !strings.HasPrefix(string(v), "1.13") {
			t.Skipf("torch %s writes other bytes than 1.13 did (%d vs %d)", strings.TrimSpace(string(v)), len(got), len(want))
		}
		t.Fatalf("%s (%d bytes) differs from %s (%d bytes)", p, len(got), shared, len(want))
	}
	// run.c's top-5 after BOS (ONNX-NOTES §8; runtime's goldenTop5).
	for _, g := range []struct {
		id    int
		logit float32
	}{{403, 17.0235}, {385, 15.4062}, {410, 13.1083}, {317, 12.7692}, {407, 12.4181}} {
		if d := afterBOS[g.id] - g.logit; !(d <= 1e-3 && d >= -1e-3) {
			t.Errorf("eager logit %d after BOS = %g, want %g", g.id, afterBOS[g.id], g.logit)
		}
	}
}

// The stand-in (random weights of stories260K's shape, what a clone without network gets) has the
// shared export's graph — the same nodes in the same order, the same weight names and shapes —
// and onnxruntime computes on it what PyTorch computed.
func TestTorchStoriesStandIn(t *testing.T) {
	NeedTorch(t)
	ckpt := filepath.Join(t.TempDir(), standInName)
	if err := os.WriteFile(ckpt, llama2cCheckpoint(64, 172, 5, 8, 4, 512, 512, 1), 0o644); err != nil {
		t.Fatal(err)
	}
	p, afterBOS := exportTorchStories(t, ckpt)
	m, err := onnx.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if n := len(m.Graph().GetNode()); n != 1750 || m.Proto.GetProducerName() != "pytorch" || m.Proto.GetOpsetImport()[0].GetVersion() != 17 {
		t.Errorf("%d nodes by %s, opset %d; want 1750 by pytorch, 17", n, m.Proto.GetProducerName(), m.Proto.GetOpsetImport()[0].GetVersion())
	}
	if shared, _ := FindShared(t, TorchStoriesRel); shared != "" {
		s, err := onnx.Load(shared)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		a, b := m.Graph(), s.Graph()
		for i, n := range a.GetNode() {
			o := b.GetNode()[i]
			if n.GetName() != o.GetName() || n.GetOpType() != o.GetOpType() || len(n.GetInput()) != len(o.GetInput()) {
				t.Fatalf("node %d: %s %s, shared has %s %s", i, n.GetOpType(), n.GetName(), o.GetOpType(), o.GetName())
			}
		}
		for i, w := range a.GetInitializer() {
			o := b.GetInitializer()[i]
			if w.GetName() != o.GetName() || !slices.Equal(w.GetDims(), o.GetDims()) {
				t.Fatalf("initializer %d: %s %v, shared has %s %v", i, w.GetName(), w.GetDims(), o.GetName(), o.GetDims())
			}
		}
	} else {
		t.Logf("%s absent: graph compared by its node count only", TorchStoriesRel)
	}
	ORT(t)
	s := open(t, p)
	out, err := s.Run(map[string]*runtime.Tensor{"input_ids": runtime.I64([]int64{1, 1}, []int64{1})}, []string{"logits"})
	if err != nil {
		t.Fatal(err)
	}
	if d := MaxDiff(out["logits"].F32, afterBOS); !(d <= 1e-4) {
		t.Errorf("max |onnxruntime - torch eager| after BOS = %.3g", d)
	} else {
		t.Logf("max |onnxruntime - torch eager| after BOS = %.3g", d)
	}
}
