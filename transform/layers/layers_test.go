package layers_test

import (
	"fmt"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/transform/layers"
)

func tinyModel(t *testing.T) *onnx.Model { return testkit.LoadSynthetic(t, "tiny") }

type blockRole struct {
	block int
	role  string
}

func labels(ls []layers.Linear) []blockRole {
	var out []blockRole
	for _, l := range ls {
		out = append(out, blockRole{l.Block, l.Role})
	}
	return out
}

func TestFindLabelsLlamaNames(t *testing.T) {
	ls, err := layers.Find(tinyModel(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 15 {
		t.Fatalf("found %d linears, want 2×7 + head", len(ls))
	}
	count := map[blockRole]int{}
	for _, l := range ls {
		count[blockRole{l.Block, l.Role}]++
	}
	for b := 0; b < 2; b++ {
		for _, r := range []string{"q", "k", "v", "o", "gate", "up", "down"} {
			if count[blockRole{b, r}] != 1 {
				t.Errorf("block %d role %s: %d layers", b, r, count[blockRole{b, r}])
			}
		}
	}
	if !ls[len(ls)-1].Head || count[blockRole{-1, "lm_head"}] != 1 {
		t.Errorf("LM head not recognised: %+v", ls[len(ls)-1])
	}
	targets, _ := layers.Select(ls, "", "")
	if len(targets) != 14 {
		t.Errorf("targets %d, want 14 (head excluded)", len(targets))
	}
	withHead, _ := layers.Select(ls, "lm_head", "")
	if len(withHead) != 1 || !withHead[0].Head {
		t.Errorf("explicit include of the head: %+v", withHead)
	}
	noDown, _ := layers.Select(ls, "", "down")
	if len(noDown) != 12 {
		t.Errorf("exclude down: %d targets, want 12", len(noDown))
	}
	if _, err := layers.Select(ls, "(", ""); err == nil {
		t.Error("bad regexp accepted")
	}
}

// Names that say nothing: roles come from the graph's structure (q/k/v by where they enter
// the attention, o after it, gate/up by the gated product, down after it), blocks from depth.
func TestFindStructuralRoles(t *testing.T) {
	m := tinyModel(t)
	named, err := layers.Find(m)
	if err != nil {
		t.Fatal(err)
	}
	g := m.Graph()
	rename := map[string]string{}
	for i, init := range g.GetInitializer() {
		rename[init.GetName()] = fmt.Sprintf("w%04d", i+1000)
	}
	for i, n := range g.GetNode() {
		n.Name = ptr(fmt.Sprintf("node_%d", i))
		for k, in := range n.Input {
			if r, ok := rename[in]; ok {
				n.Input[k] = r
			}
		}
	}
	for _, init := range g.GetInitializer() {
		init.Name = ptr(rename[init.GetName()])
	}
	ls, err := layers.Find(m)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := labels(ls), labels(named); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("structural roles %v\nwant (from names) %v", got, want)
	}
	if !ls[len(ls)-1].Head {
		t.Errorf("structural head not found: %+v", ls[len(ls)-1])
	}
}

// Gemm with transB and a MatMul through Transpose store the weight as [out, in].
func TestFindGemmAndTransposedWeights(t *testing.T) {
	b := onnx.NewBuilder("g", 17)
	x := b.Input("x", onnxpb.TensorProto_FLOAT, 2, 4)
	w1 := b.Const("h.0.mlp.c_fc.weight", onnx.Float32Tensor("", []int64{6, 4}, make([]float32, 24)))
	y := b.Op("Gemm", "/h.0/mlp/c_fc/Gemm", []string{x, w1}, onnx.AttrInt("transB", 1))
	w2 := b.Const("h.0.mlp.c_proj.weight", onnx.Float32Tensor("", []int64{3, 6}, make([]float32, 18)))
	w2t := b.Op("Transpose", "/h.0/mlp/c_proj/Transpose", []string{w2}, onnx.AttrInts("perm", 1, 0))
	z := b.Op("MatMul", "/h.0/mlp/c_proj/MatMul", []string{y, w2t})
	attn := b.Op("MatMul", "/h.0/attn/scores", []string{z, b.Op("Transpose", "/t", []string{z}, onnx.AttrInts("perm", 1, 0))})
	b.Output(attn, onnxpb.TensorProto_FLOAT, 2, 2)
	m, err := b.Model()
	if err != nil {
		t.Fatal(err)
	}
	ls, err := layers.Find(m)
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 2 {
		t.Fatalf("found %d linears (the activation×activation MatMul must not count): %+v", len(ls), ls)
	}
	if l := ls[0]; l.Op != "Gemm" || !l.Transposed || l.In != 4 || l.Out != 6 || l.Role != "up" {
		t.Errorf("gemm: %+v", l)
	}
	if l := ls[1]; !l.Transposed || l.In != 6 || l.Out != 3 || l.Weight != "h.0.mlp.c_proj.weight" || l.Role != "down" {
		t.Errorf("transposed matmul: %+v", l)
	}
}

func ptr(s string) *string { return &s }
