package hf_test

import (
	"math/rand/v2"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/models/hf"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
)

// familyNames lists hf.FamilyConfigs' keys, sorted.
func familyNames() []string {
	var n []string
	for k := range hf.FamilyConfigs {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

// importTo imports the checkpoint in dir to out with every tensor in its checkpoint type
// widened to float32 (target FLOAT), the form a test can run without Casts.
func importTo(t *testing.T, dir, out string) *hf.Graph {
	t.Helper()
	ck, err := hf.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	g, err := ck.Build()
	if err != nil {
		t.Fatal(err)
	}
	so := g.Bind(hf.BindOptions{Target: func(string) onnxpb.TensorProto_DataType { return onnxpb.TensorProto_FLOAT }})
	if err := g.Model.Save(out, so); err != nil {
		t.Fatal(err)
	}
	return g
}

// Every family's random checkpoint imports into a graph whose logits (onnxruntime, empty past)
// equal the independent Go reference's to 1e-5 relative; F32, F16 and BF16 checkpoints alike
// (the reference reads the same rounded values).
func TestFamiliesMatchReference(t *testing.T) {
	testkit.ORT(t)
	for _, name := range familyNames() {
		for _, dt := range []string{"F32", "BF16"} {
			t.Run(name+"/"+dt, func(t *testing.T) {
				dir := filepath.Join(t.TempDir(), name)
				if err := hf.WriteRandom(dir, []byte(hf.FamilyConfigs[name]), hf.RandomOptions{Seed: 7, DType: dt, Shards: 2}); err != nil {
					t.Fatal(err)
				}
				out := filepath.Join(t.TempDir(), name+".onnx")
				g := importTo(t, dir, out)
				if len(g.Unused) != 0 {
					t.Errorf("unused tensors %v", g.Unused)
				}
				m, err := onnx.Load(out)
				if err != nil {
					t.Fatal(err)
				}
				c, _ := hf.ReadConfig(dir)
				r := rand.New(rand.NewPCG(1, 2))
				ids := make([]int64, 11)
				for i := range ids {
					ids[i] = int64(r.IntN(128))
				}
				_, got := testkit.RunLogits(t, m, 1, ids, nil)
				want := refForward(t, c, loadRef(t, dir), ids)
				d := relDiff(got, want)
				t.Logf("relative difference %.3g", d)
				if !(d <= 1e-5) {
					t.Fatalf("logits differ from the reference by %.3g relative (max |logit| scale)", d)
				}
			})
		}
	}
}

// Names follow Hugging Face: the initializers are the checkpoint's tensors, the nodes sit in
// module scopes, and the metadata carries config.json verbatim and the source folder.
func TestNamesAndMetadata(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "phi3")
	if err := hf.WriteRandom(dir, []byte(hf.FamilyConfigs["phi3"]), hf.RandomOptions{Seed: 1}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "phi3.onnx")
	importTo(t, dir, out)
	m, err := onnx.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	ix := onnx.NewIndex(m.Graph())
	for _, n := range []string{"/model/layers.1/self_attn/qkv_proj/MatMul", "/model/layers.0/mlp/gate_up_proj/MatMul", "/model/layers.0/mlp/down_proj/MatMul", "/lm_head/MatMul"} {
		if ix.Nodes[n] == nil {
			t.Errorf("no node %q", n)
		}
	}
	w := m.Initializer("model.layers.0.self_attn.qkv_proj.weight")
	if w == nil || w.GetDims()[0] != 64 || w.GetDims()[1] != 128 {
		t.Fatalf("qkv_proj weight %v, want [64 128] ([in, out])", w.GetDims())
	}
	meta := map[string]string{}
	for _, p := range m.Proto.GetMetadataProps() {
		meta[p.GetKey()] = p.GetValue()
	}
	abs, _ := filepath.Abs(dir)
	if meta[hf.MetaConfig] != hf.FamilyConfigs["phi3"] || meta[hf.MetaSourceDir] != abs {
		t.Fatalf("metadata %q = %.40q..., %q = %q", hf.MetaConfig, meta[hf.MetaConfig], hf.MetaSourceDir, meta[hf.MetaSourceDir])
	}
	// Phi-3's sliding window (5) masks attention; it does not cap the context.
	if meta["max_position_embeddings"] != "64" || ix.Nodes["/model/sliding_window_mask/Where"] == nil {
		t.Errorf("context %q (want 64), sliding window mask %v", meta["max_position_embeddings"], ix.Nodes["/model/sliding_window_mask/Where"] != nil)
	}
}

func TestUnknownArchitecture(t *testing.T) {
	dir := t.TempDir()
	err := hf.WriteRandom(dir, []byte(`{"architectures": ["FalconForCausalLM"]}`), hf.RandomOptions{})
	if err == nil || !strings.Contains(err.Error(), `architecture "FalconForCausalLM" is not supported (supported: GPT2LMHeadModel, GemmaForCausalLM, LlamaForCausalLM, MistralForCausalLM, Phi3ForCausalLM, Qwen2ForCausalLM)`) {
		t.Fatalf("error %v", err)
	}
}
