package layers_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/models/gpt2"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/transform/layers"
)

type shapeRole struct {
	block   int
	role    string
	in, out int64
	head    bool
}

func shapeRoles(t *testing.T, m *onnx.Model) []shapeRole {
	t.Helper()
	ls, err := layers.Find(m)
	if err != nil {
		t.Fatal(err)
	}
	var out []shapeRole
	for _, l := range ls {
		out = append(out, shapeRole{l.Block, l.Role, l.In, l.Out, l.Head})
	}
	return out
}

// Graphs named the way torch's dynamo exporter names them (opset 18, node_MatMul_12, val_34,
// weights [out, in] under their parameter names behind a Transpose, or anonymous too) get the
// roles the named graph gets: from the weights' names where they have them, from structure
// where they don't.
func TestDynamoStyleGraphsKeepRoles(t *testing.T) {
	m := tinyModel(t)
	want := shapeRoles(t, m)
	for _, keep := range []bool{true, false} {
		d, err := testkit.Dynamo(m, keep)
		if err != nil {
			t.Fatal(err)
		}
		if v := d.Proto.GetOpsetImport()[0].GetVersion(); v != 18 {
			t.Fatalf("opset %d", v)
		}
		ls, err := layers.Find(d)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range ls {
			if !strings.HasPrefix(l.Node, "node_MatMul_") || l.Transposed != keep {
				t.Fatalf("keep weight names %v: linear %+v", keep, l)
			}
			if named := strings.HasPrefix(l.Weight, "model.") || strings.HasPrefix(l.Weight, "lm_head."); named != keep {
				t.Fatalf("keep weight names %v: weight %s", keep, l.Weight)
			}
		}
		if got := shapeRoles(t, d); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("keep weight names %v: roles %v\nwant %v", keep, got, want)
		}
	}
}

// GPT-2 without names: the fused c_attn is qkv by structure, c_proj after the attention is o;
// its ungated MLP keeps the depth roles.
func TestStructuralRolesGPT2(t *testing.T) {
	m, err := gpt2.Build(gpt2.Tiny, 7)
	if err != nil {
		t.Fatal(err)
	}
	d, err := testkit.Dynamo(m, false)
	if err != nil {
		t.Fatal(err)
	}
	ls, err := layers.Find(d)
	if err != nil {
		t.Fatal(err)
	}
	var roles []string
	for _, l := range ls {
		if l.Block == 0 {
			roles = append(roles, l.Role)
		}
	}
	if fmt.Sprint(roles) != "[qkv o mlp_in mlp_out]" {
		t.Errorf("block 0 roles %v, want [qkv o mlp_in mlp_out] (all: %v)", roles, labels(ls))
	}
}

// PyTorch's own with-past export (optimum's names, anonymous onnx::MatMul_* weights), renamed
// dynamo-style with anonymous weights: the same roles as its node names give.
func TestStructuralRolesTorchExport(t *testing.T) {
	e := testkit.TorchRandom(t, testkit.TorchTinySpec, 3)
	m, err := onnx.Load(e.WithPast)
	if err != nil {
		t.Fatal(err)
	}
	want := shapeRoles(t, m)
	if len(want) != 15 {
		t.Fatalf("torch export: %d linears, want 15", len(want))
	}
	d, err := testkit.Dynamo(m, false)
	if err != nil {
		t.Fatal(err)
	}
	if got := shapeRoles(t, d); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("roles %v\nwant %v", got, want)
	}
}
