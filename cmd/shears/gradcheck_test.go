package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/onnx"
)

func TestGradcheckStories(t *testing.T) {
	testkit.ORT(t)
	dir := t.TempDir()
	model := importStories(t, dir)
	saved := filepath.Join(dir, "step.onnx")
	o, e, code := shears(t, "gradcheck", model, "--wrt", `layers\.1\..*norm|layers\.3\.self_attn\.v_proj`,
		"--batch", "2", "--seq-len", "8", "--samples", "6", "--json", "--save-graph", saved)
	if code != 0 {
		t.Fatalf("gradcheck exit %d: %s%s", code, o, e)
	}
	var rep struct {
		Tensors []struct {
			Name      string  `json:"name"`
			MaxRelErr float64 `json:"max_rel_err"`
		} `json:"tensors"`
		MaxRelErr float64 `json:"max_rel_err"`
	}
	if err := json.Unmarshal([]byte(o), &rep); err != nil {
		t.Fatalf("%v: %s", err, o)
	}
	want := []string{"model.layers.1.input_layernorm.weight", "model.layers.1.post_attention_layernorm.weight",
		"model.layers.3.self_attn.v_proj.weight"}
	if len(rep.Tensors) != len(want) {
		t.Fatalf("tensors %+v, want %v", rep.Tensors, want)
	}
	for i, w := range want {
		if rep.Tensors[i].Name != w {
			t.Fatalf("tensor %d is %q, want %q", i, rep.Tensors[i].Name, w)
		}
	}
	if !(rep.MaxRelErr <= 1e-4) { // gradcheck.TolModel64, the whole-model float64 row
		t.Fatalf("max rel err %g", rep.MaxRelErr)
	}
	// The saved step graph opens elsewhere: loss and one gradient per tensor as outputs.
	m, err := onnx.Load(saved)
	if err != nil {
		t.Fatal(err)
	}
	var outs []string
	for _, v := range m.Graph().GetOutput() {
		outs = append(outs, v.GetName())
	}
	if got := strings.Join(outs, ","); got != "loss,"+strings.Join(want, ".grad,")+".grad" {
		t.Fatalf("saved step outputs %s", got)
	}

	// No match and a failing tolerance are errors.
	if _, e, code := shears(t, "gradcheck", model, "--wrt", "nothing-matches"); code == 0 || !strings.Contains(e, "matches no initializer") {
		t.Fatalf("no-match: exit %d, %s", code, e)
	}
	if _, e, code := shears(t, "gradcheck", model, "--wrt", "model.norm.weight", "--float32", "--eps", "1e-6", "--tol", "1e-9"); code != 1 || !strings.Contains(e, "above the tolerance") {
		t.Fatalf("tolerance: exit %d, %s", code, e)
	}
}
