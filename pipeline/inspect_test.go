package pipeline

import (
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/onnx"
)

// Inspect reports the tiny synthetic LLaMA's interface and its 2 × 7 block linears (roles from
// the names), the tied-free head apart, parameter counts that add up, and no sparsity.
func TestInspectSynthetic(t *testing.T) {
	path := testkit.Synthetic(t, "tiny")
	rep, err := Inspect(InspectOptions{Model: path, Sparsity: true})
	if err != nil {
		t.Fatal(err)
	}
	m, err := onnx.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var params int64
	for _, init := range m.Graph().GetInitializer() {
		params += onnx.NumElements(onnx.Dims(init))
	}
	roles := map[string]int{}
	for _, l := range rep.Linears {
		roles[l.Role]++
	}
	if len(rep.Linears) != 14 || roles["q"] != 2 || roles["down"] != 2 || len(rep.Head) != 1 || rep.Params != params ||
		rep.Sparsity != 0 || !rep.External || rep.Opset == 0 || len(rep.Inputs) == 0 || rep.Outputs[0].Name != "logits" {
		t.Fatalf("report %+v", rep)
	}
	if _, err := Inspect(InspectOptions{Model: path + ".missing"}); err == nil {
		t.Error("inspect of a missing file succeeded")
	}
}
