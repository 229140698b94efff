package llama2c_test

import (
	"encoding/binary"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/lm"
	"github.com/shears-ml/shears/models/llama2c"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/runtime"
	"google.golang.org/protobuf/proto"
)

func openModel(t *testing.T, m *onnx.Model) *runtime.Session {
	t.Helper()
	raw, err := proto.Marshal(m.Proto)
	if err != nil {
		t.Fatal(err)
	}
	s, err := runtime.OpenBytes(raw, "", runtime.Options{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// logits runs ids [batch, seq] and returns the logits [batch, seq, vocab] flattened.
func logits(t *testing.T, s *runtime.Session, batch int, ids []int64) ([]float32, []int64) {
	t.Helper()
	out, err := s.Run(testkit.LMFeeds(t, s.Inputs(), batch, ids, nil), []string{"logits"})
	if err != nil {
		t.Fatal(err)
	}
	return out["logits"].F32, out["logits"].Shape
}

const vocab = 512

// Provenance: llama2.c's reference forward (run.c of karpathy/llama2.c at 350e04f) on
// stories260K.bin with tok512.bin, `run stories260K.bin -z tok512.bin -t 0 -n 21 -i ""`, with
// the pos-0 logits printed: top-5 403 17.023516, 385 15.406213, 410 13.108263, 317 12.769166,
// 407 12.418087, and the greedy ids below ("Once upon a time, there was a little girl named Lily. She loved to play") (re-run 2026-12-03; testdata/stories260K-golden.sh;
// also ONNX-NOTES §8, where the torch export agrees).
var greedyIDs = []int64{403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337}

func importStories(t *testing.T) *onnx.Model {
	t.Helper()
	m, err := llama2c.Import(testkit.Shared(t, "models/stories260K/stories260K.bin"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestStories260KGolden(t *testing.T) {
	m := importStories(t)
	testkit.ORT(t)
	s := openModel(t, m)

	// Top-5 logits after BOS (llama2.c's run.c; provenance at greedyIDs).
	l, shape := logits(t, s, 1, []int64{1})
	if len(shape) != 3 || shape[0] != 1 || shape[1] != 1 || shape[2] != vocab {
		t.Fatalf("logits shape %v", shape)
	}
	idx := make([]int, vocab)
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return l[idx[a]] > l[idx[b]] })
	want := []struct {
		id int
		v  float32
	}{{403, 17.0235}, {385, 15.4062}, {410, 13.1083}, {317, 12.7692}, {407, 12.4181}}
	for k, w := range want {
		if idx[k] != w.id || !(math.Abs(float64(l[w.id]-w.v)) <= 1e-3) {
			t.Errorf("top %d: id %d logit %.4f, want id %d logit %.4f", k, idx[k], l[idx[k]], w.id, w.v)
		}
	}

	// Greedy generation of 20 tokens from BOS (full recompute each step; no KV cache).
	seq := []int64{1}
	for step := 0; step < 20; step++ {
		l, _ := logits(t, s, 1, seq)
		last := l[(len(seq)-1)*vocab:]
		best := 0
		for i, v := range last {
			if v > last[best] {
				best = i
			}
		}
		seq = append(seq, int64(best))
	}
	for i, id := range greedyIDs {
		if seq[i+1] != id {
			t.Fatalf("greedy ids %v, want %v", seq[1:], greedyIDs)
		}
	}
}

// Our import and PyTorch's export of the same checkpoint (stories260K, or without ../shared and
// network the random-weight stand-in both are made from) compute the same logits.
func TestStories260KMatchesTorchExport(t *testing.T) {
	torchPath := testkit.TorchStories(t).Path
	m, err := llama2c.Import(testkit.StoriesShaped(t))
	if err != nil {
		t.Fatal(err)
	}
	testkit.ORT(t)
	ours := openModel(t, m)
	ref, err := runtime.OpenFile(torchPath, runtime.Options{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	rng := rand.New(rand.NewSource(42))
	ids := make([]int64, 2*64)
	for i := range ids {
		ids[i] = int64(rng.Intn(vocab))
	}
	a, sa := logits(t, ours, 2, ids)
	b, sb := logits(t, ref, 2, ids)
	if len(a) != len(b) || len(sa) != 3 || sa[0] != 2 || sa[1] != 64 || sa[2] != vocab || sb[2] != vocab {
		t.Fatalf("shapes %v vs %v", sa, sb)
	}
	maxDiff := 0.0
	for i := range a {
		maxDiff = math.Max(maxDiff, math.Abs(float64(a[i]-b[i])))
	}
	t.Logf("max |ours - torch export| = %.3g over %d logits", maxDiff, len(a))
	if !(maxDiff < 1e-4) {
		t.Errorf("max abs logit difference %.3g, want < 1e-4", maxDiff)
	}
}

func TestImportGraphShape(t *testing.T) {
	m := importStories(t)
	g := m.Proto.Graph
	allowed := map[string]bool{}
	for _, op := range strings.Fields("Gather MatMul Mul Add Sub Div Pow Sqrt ReduceMean Reshape Transpose Softmax Sigmoid Slice Concat Split Unsqueeze Neg Shape Expand Cast Where") {
		allowed[op] = true
	}
	// The causal mask is computed from the input lengths (Range, comparisons, And): off the
	// gradient path, so those ops may appear there only.
	maskOps := map[string]bool{"Range": true, "LessOrEqual": true, "And": true}
	nodes := map[string]string{}
	for _, n := range g.Node {
		if !allowed[n.GetOpType()] && !(maskOps[n.GetOpType()] && strings.HasPrefix(n.GetName(), "/model/causal_mask/")) {
			t.Errorf("node %s uses op %s outside the differentiable set", n.GetName(), n.GetOpType())
		}
		nodes[n.GetName()] = n.GetOpType()
	}
	for _, name := range []string{"/model/embed_tokens/Gather", "/model/layers.0/input_layernorm/Pow", "/model/layers.4/self_attn/k_proj/MatMul",
		"/model/layers.2/mlp/down_proj/MatMul", "/model/layers.3/post_attention_layernorm/Mul_1", "/model/norm/Sqrt", "/lm_head/MatMul"} {
		if nodes[name] == "" {
			t.Errorf("node %s missing", name)
		}
	}
	dims := map[string][]int64{}
	for _, init := range g.Initializer {
		dims[init.GetName()] = init.Dims
	}
	for name, want := range map[string][]int64{
		"model.embed_tokens.weight":              {512, 64},
		"model.layers.0.self_attn.k_proj.weight": {64, 32},
		"model.layers.4.mlp.down_proj.weight":    {172, 64},
		"model.layers.1.mlp.gate_proj.weight":    {64, 172},
		"model.layers.1.input_layernorm.weight":  {64},
		"lm_head.weight":                         {64, 512},
		"model.rotary_emb.cos_cached":            {512, 4},
	} {
		if got := dims[name]; len(got) != len(want) || (len(got) > 0 && (got[0] != want[0] || got[len(got)-1] != want[len(want)-1])) {
			t.Errorf("initializer %s dims %v, want %v", name, got, want)
		}
	}
	it, err := lm.Read(m)
	if err != nil {
		t.Fatal(err)
	}
	var ins, outs []string
	for _, x := range it.Inputs {
		ins = append(ins, x.Name)
	}
	for _, x := range it.Outputs {
		outs = append(outs, x.Name)
	}
	if len(ins) != 13 || ins[0] != "input_ids" || ins[1] != "attention_mask" || ins[2] != "position_ids" || ins[3] != "past_key_values.0.key" || ins[12] != "past_key_values.4.value" {
		t.Errorf("inputs %v, want optimum's with-past order", ins)
	}
	if len(outs) != 11 || outs[0] != "logits" || outs[1] != "present.0.key" || outs[10] != "present.4.value" {
		t.Errorf("outputs %v, want logits then present.{i}.key|value", outs)
	}
	if it.Layers != 5 || it.KVHeads != 4 || it.HeadDim != 8 || it.PastType != onnxpb.TensorProto_FLOAT || it.Presents != 5 {
		t.Errorf("interface %+v", it)
	}
	meta := map[string]string{}
	for _, p := range m.Proto.MetadataProps {
		meta[p.GetKey()] = p.GetValue()
	}
	if meta["max_position_embeddings"] != "512" || meta["num_key_value_heads"] != "4" || meta["rms_norm_eps"] != "1e-05" || meta["tie_word_embeddings"] != "true" {
		t.Errorf("metadata %v", meta)
	}
	// 35 linears with rank-2 weights + the head.
	matmulW := 0
	for _, n := range g.Node {
		if n.GetOpType() == "MatMul" && len(dims[n.Input[1]]) == 2 {
			matmulW++
		}
	}
	if matmulW != 36 {
		t.Errorf("%d MatMuls with a constant weight, want 36", matmulW)
	}
	// Transposed layout: k_proj weight [in, out] element (i, o) is checkpoint wk[o][i].
	raw, _ := os.ReadFile(testkit.Shared(t, "models/stories260K/stories260K.bin"))
	wkOff := 28 + 4*(512*64+5*64+5*64*64) // layer 0 of wk
	var kw []float32
	for _, init := range g.Initializer {
		if init.GetName() == "model.layers.0.self_attn.k_proj.weight" {
			for i := 0; i < len(init.RawData); i += 4 {
				kw = append(kw, math.Float32frombits(binary.LittleEndian.Uint32(init.RawData[i:])))
			}
		}
	}
	for _, p := range [][2]int{{0, 0}, {3, 17}, {63, 31}} { // (in, out)
		ck := math.Float32frombits(binary.LittleEndian.Uint32(raw[wkOff+4*(p[1]*64+p[0]):]))
		if kw[p[0]*32+p[1]] != ck {
			t.Errorf("k_proj[%d,%d] = %v, checkpoint wk[%d][%d] = %v", p[0], p[1], kw[p[0]*32+p[1]], p[1], p[0], ck)
		}
	}
}

func TestImportErrors(t *testing.T) {
	raw, err := os.ReadFile(testkit.Shared(t, "models/stories260K/stories260K.bin"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	badHeader := append([]byte(nil), raw...)
	binary.LittleEndian.PutUint32(badHeader[12:], 7) // n_heads 7 does not divide dim 64
	magic := append([]byte(nil), raw...)
	binary.LittleEndian.PutUint32(magic, 0x616b3432) // "ak42", the version-1/2 header
	cases := []struct {
		file string
		data []byte
		want string
	}{
		{"trunc.bin", raw[:len(raw)-100], "truncated: freq_cis_imag"},
		{"trunc_w.bin", raw[:200000], "truncated: wq"},
		{"header.bin", raw[:10], "truncated header"},
		{"heads.bin", badHeader, "not a multiple of heads 7"},
		{"magic.bin", magic, "versioned llama2.c export"},
		{"trailing.bin", append(append([]byte(nil), raw...), 1, 2, 3, 4), "4 trailing bytes"},
	}
	for _, c := range cases {
		p := write(c.file, c.data)
		_, err := llama2c.Import(p)
		if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one naming the file and %q", c.file, err, c.want)
		}
	}
	ck, err := llama2c.ReadHeader(testkit.Shared(t, "models/stories260K/stories260K.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if c := ck.Config; c.Dim != 64 || c.HiddenDim != 172 || c.Layers != 5 || c.Heads != 8 || c.KVHeads != 4 || c.Vocab != 512 || c.MaxSeq != 512 || !ck.SharedClassifier {
		t.Errorf("header %+v", ck)
	}
}
