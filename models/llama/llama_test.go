package llama_test

import (
	"encoding/binary"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/models/llama"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/runtime"
	"google.golang.org/protobuf/proto"
)

func TestPresets(t *testing.T) {
	for name, want := range map[string][2]float64{"tiny": {0.05e6, 0.3e6}, "25m": {24e6, 27e6}, "1b": {1.05e9, 1.15e9}, "7b": {6.6e9, 6.8e9}} {
		c, err := llama.Preset(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if p := float64(c.Params()); p < want[0] || p > want[1] {
			t.Errorf("%s: %d params, want %g..%g", name, c.Params(), want[0], want[1])
		}
	}
	// 7b is LLaMA-2-7B: 6,738,415,616 parameters.
	if c, _ := llama.Preset("7b"); c.Params() != 6738415616 {
		t.Errorf("7b params %d", c.Params())
	}
	if _, err := llama.Preset("3b"); err == nil || !strings.Contains(err.Error(), `"3b"`) {
		t.Errorf("unknown preset: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	c, _ := llama.Preset("tiny")
	bad := []func(*llama.Config){
		func(c *llama.Config) { c.Heads = 5 },
		func(c *llama.Config) { c.KVHeads = 3 },
		func(c *llama.Config) { c.Dim, c.Heads = 60, 4 }, // head dim 15 is odd
		func(c *llama.Config) { c.NormEps = 0 },
		func(c *llama.Config) { c.Layers = 0 },
	}
	for i, f := range bad {
		cc := c
		f(&cc)
		if cc.Validate() == nil {
			t.Errorf("case %d: %+v accepted", i, cc)
		}
	}
}

// reference is an independent forward pass in Go, position by position as llama2.c's
// run.c computes it, over the same [in, out] weights.
func reference(c llama.Config, w map[string][]float32, ids []int) [][]float32 {
	d, hd, kvd := c.Dim, c.HeadDim(), c.KVDim()
	rep := c.Heads / c.KVHeads
	matvec := func(x []float32, W []float32, out int) []float32 {
		y := make([]float32, out)
		for i, xv := range x {
			for o := 0; o < out; o++ {
				y[o] += xv * W[i*out+o]
			}
		}
		return y
	}
	rms := func(x, g []float32) []float32 {
		ss := float32(0)
		for _, v := range x {
			ss += v * v
		}
		s := 1 / float32(math.Sqrt(float64(ss/float32(len(x))+c.NormEps)))
		y := make([]float32, len(x))
		for i := range x {
			y[i] = g[i] * s * x[i]
		}
		return y
	}
	rope := func(v []float32, pos int) {
		for i := 0; i < len(v); i += 2 {
			j := (i % hd) / 2
			a := float64(pos) * math.Pow(c.RopeTheta, -float64(2*j)/float64(hd))
			co, si := float32(math.Cos(a)), float32(math.Sin(a))
			v0, v1 := v[i], v[i+1]
			v[i], v[i+1] = v0*co-v1*si, v0*si+v1*co
		}
	}
	keys := make([][][]float32, c.Layers)
	vals := make([][][]float32, c.Layers)
	var out [][]float32
	for pos, id := range ids {
		x := append([]float32(nil), w["model.embed_tokens.weight"][id*d:(id+1)*d]...)
		for l := 0; l < c.Layers; l++ {
			h := rms(x, w[llama.LayerWeight(l, "input_layernorm")])
			q := matvec(h, w[llama.LayerWeight(l, "self_attn.q_proj")], d)
			k := matvec(h, w[llama.LayerWeight(l, "self_attn.k_proj")], kvd)
			v := matvec(h, w[llama.LayerWeight(l, "self_attn.v_proj")], kvd)
			rope(q, pos)
			rope(k, pos)
			keys[l] = append(keys[l], k)
			vals[l] = append(vals[l], v)
			att := make([]float32, d)
			for head := 0; head < c.Heads; head++ {
				kh := head / rep
				sc := make([]float64, pos+1)
				mx := math.Inf(-1)
				for p := 0; p <= pos; p++ {
					s := 0.0
					for i := 0; i < hd; i++ {
						s += float64(q[head*hd+i] * keys[l][p][kh*hd+i])
					}
					sc[p] = s / math.Sqrt(float64(hd))
					mx = math.Max(mx, sc[p])
				}
				sum := 0.0
				for p := range sc {
					sc[p] = math.Exp(sc[p] - mx)
					sum += sc[p]
				}
				for p := range sc {
					for i := 0; i < hd; i++ {
						att[head*hd+i] += float32(sc[p]/sum) * vals[l][p][kh*hd+i]
					}
				}
			}
			o := matvec(att, w[llama.LayerWeight(l, "self_attn.o_proj")], d)
			for i := range x {
				x[i] += o[i]
			}
			h = rms(x, w[llama.LayerWeight(l, "post_attention_layernorm")])
			g := matvec(h, w[llama.LayerWeight(l, "mlp.gate_proj")], c.HiddenDim)
			u := matvec(h, w[llama.LayerWeight(l, "mlp.up_proj")], c.HiddenDim)
			for i := range g {
				g[i] = g[i] / (1 + float32(math.Exp(float64(-g[i])))) * u[i]
			}
			dn := matvec(g, w[llama.LayerWeight(l, "mlp.down_proj")], d)
			for i := range x {
				x[i] += dn[i]
			}
		}
		out = append(out, matvec(rms(x, w["model.norm.weight"]), w["lm_head.weight"], c.Vocab))
	}
	return out
}

func randomWeights(c llama.Config, seed int64) map[string][]float32 {
	rng := rand.New(rand.NewSource(seed))
	w := map[string][]float32{}
	vec := func(name string, n int, std float64, mean float32) {
		v := make([]float32, n)
		for i := range v {
			v[i] = mean + float32(rng.NormFloat64()*std)
		}
		w[name] = v
	}
	d, h, kv := c.Dim, c.HiddenDim, c.KVDim()
	vec("model.embed_tokens.weight", c.Vocab*d, 1, 0)
	vec("model.norm.weight", d, 0.1, 1)
	vec("lm_head.weight", d*c.Vocab, 1/math.Sqrt(float64(d)), 0)
	for l := 0; l < c.Layers; l++ {
		vec(llama.LayerWeight(l, "input_layernorm"), d, 0.1, 1)
		vec(llama.LayerWeight(l, "post_attention_layernorm"), d, 0.1, 1)
		for _, m := range []struct {
			name    string
			in, out int
		}{{"self_attn.q_proj", d, d}, {"self_attn.k_proj", d, kv}, {"self_attn.v_proj", d, kv}, {"self_attn.o_proj", d, d},
			{"mlp.gate_proj", d, h}, {"mlp.up_proj", d, h}, {"mlp.down_proj", h, d}} {
			vec(llama.LayerWeight(l, m.name), m.in*m.out, 1/math.Sqrt(float64(m.in)), 0)
		}
	}
	return w
}

// TestBuildMatchesReference checks the graph against the Go forward pass, with GQA (2 query
// heads per kv head) and without, on a batch of two different sequences.
func TestBuildMatchesReference(t *testing.T) {
	testkit.ORT(t)
	for _, kvh := range []int{2, 4} {
		c := llama.Config{Dim: 32, HiddenDim: 48, Layers: 2, Heads: 4, KVHeads: kvh, Vocab: 40, MaxSeq: 16, NormEps: 1e-5, RopeTheta: 10000}
		w := randomWeights(c, int64(kvh))
		m, err := llama.Build(c, llama.Weights(w))
		if err != nil {
			t.Fatal(err)
		}
		raw, err := proto.Marshal(m.Proto)
		if err != nil {
			t.Fatal(err)
		}
		s, err := runtime.OpenBytes(raw, "", runtime.Options{Threads: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		const T = 7
		seqs := [][]int{{1, 5, 9, 39, 0, 12, 3}, {20, 20, 21, 2, 38, 7, 7}}
		var ids []int64
		for _, sq := range seqs {
			for _, id := range sq {
				ids = append(ids, int64(id))
			}
		}
		res, err := s.Run(testkit.Feeds(t, s.Inputs(), runtime.I64([]int64{2, T}, ids), nil), []string{"logits"})
		if err != nil {
			t.Fatal(err)
		}
		got := res["logits"]
		if sh := got.Shape; len(sh) != 3 || sh[0] != 2 || sh[1] != T || sh[2] != int64(c.Vocab) {
			t.Fatalf("shape %v", sh)
		}
		maxDiff := 0.0
		for b, sq := range seqs {
			want := reference(c, w, sq)
			for p := range want {
				for v, x := range want[p] {
					maxDiff = math.Max(maxDiff, math.Abs(float64(got.F32[(b*T+p)*c.Vocab+v]-x)))
				}
			}
		}
		t.Logf("kv heads %d: max |graph - reference| = %.3g", kvh, maxDiff)
		if !(maxDiff <= 1e-4) {
			t.Errorf("kv heads %d: graph differs from the reference by %.3g", kvh, maxDiff)
		}
	}
}

func TestWriteSyntheticTiny(t *testing.T) {
	c, err := llama.Preset("tiny")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "tiny.onnx")
	if err := llama.WriteSynthetic(path, c, 1, onnxpb.TensorProto_FLOAT); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, ",") != "tiny.onnx,tiny.onnx.data" {
		t.Errorf("files %v, want the model and one data file", names)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var mp onnxpb.ModelProto
	if err := proto.Unmarshal(raw, &mp); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path + ".data")
	if err != nil {
		t.Fatal(err)
	}
	ext, end := 0, int64(0)
	var params int64
	for _, init := range mp.Graph.Initializer {
		if init.GetDataLocation() != onnxpb.TensorProto_EXTERNAL {
			if init.GetDataType() == int32(onnxpb.TensorProto_FLOAT) && len(init.Dims) > 0 {
				t.Errorf("%s is inline", init.GetName())
			}
			continue
		}
		ext++
		kv := map[string]string{}
		for _, e := range init.ExternalData {
			kv[e.GetKey()] = e.GetValue()
		}
		off, _ := strconv.ParseInt(kv["offset"], 10, 64)
		n, _ := strconv.ParseInt(kv["length"], 10, 64)
		elems := int64(1)
		for _, d := range init.Dims {
			elems *= d
		}
		if kv["location"] != "tiny.onnx.data" || off%4096 != 0 || n != 4*elems || off < end {
			t.Errorf("%s: external %v (elements %d, previous end %d)", init.GetName(), kv, elems, end)
		}
		end = off + n
		if !strings.HasPrefix(init.GetName(), "model.rotary") {
			params += elems
		}
	}
	if end != fi.Size() || ext == 0 {
		t.Errorf("data file %d bytes, tensors end at %d (%d external)", fi.Size(), end, ext)
	}
	if params != c.Params() {
		t.Errorf("%d stored parameters, config says %d", params, c.Params())
	}

	testkit.ORT(t)
	s, err := runtime.OpenFile(path, runtime.Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ids := []int64{1, 2, 3, 500, 7, 8, 9, 10, 1, 511, 0, 4}
	res, err := s.Run(testkit.Feeds(t, s.Inputs(), runtime.I64([]int64{2, 6}, ids), nil), []string{"logits"})
	if err != nil {
		t.Fatal(err)
	}
	l := res["logits"]
	if sh := l.Shape; len(sh) != 3 || sh[0] != 2 || sh[1] != 6 || sh[2] != 512 {
		t.Fatalf("shape %v", sh)
	}
	var sum2 float64
	for _, v := range l.F32 {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			t.Fatal("non-finite logit")
		}
		sum2 += float64(v) * float64(v)
	}
	// N(0, 1/in) weights keep the logits at unit scale: their RMS is O(1), not 0 or huge.
	if rms := math.Sqrt(sum2 / float64(len(l.F32))); rms < 0.1 || rms > 10 {
		t.Errorf("logit rms %.3g", rms)
	}

	// Same seed → same bytes; another seed → other weights.
	again := filepath.Join(t.TempDir(), "tiny.onnx")
	if err := llama.WriteSynthetic(again, c, 1, onnxpb.TensorProto_FLOAT); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(path + ".data")
	b, _ := os.ReadFile(again + ".data")
	if string(a) != string(b) {
		t.Error("same seed gave different data")
	}
	other := filepath.Join(t.TempDir(), "tiny.onnx")
	if err := llama.WriteSynthetic(other, c, 2, onnxpb.TensorProto_FLOAT); err != nil {
		t.Fatal(err)
	}
	o, _ := os.ReadFile(other + ".data")
	if string(a) == string(o) {
		t.Error("different seeds gave the same data")
	}
}

func TestWriteSyntheticTied(t *testing.T) {
	c, _ := llama.Preset("tiny")
	c.TiedEmbeddings = true
	path := filepath.Join(t.TempDir(), "tied.onnx")
	if err := llama.WriteSynthetic(path, c, 3, onnxpb.TensorProto_FLOAT); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(path)
	data, _ := os.ReadFile(path + ".data")
	var mp onnxpb.ModelProto
	if err := proto.Unmarshal(raw, &mp); err != nil {
		t.Fatal(err)
	}
	get := func(name string) []float32 {
		for _, init := range mp.Graph.Initializer {
			if init.GetName() == name {
				var off, n int64
				for _, e := range init.ExternalData {
					v, _ := strconv.ParseInt(e.GetValue(), 10, 64)
					switch e.GetKey() {
					case "offset":
						off = v
					case "length":
						n = v
					}
				}
				f := make([]float32, n/4)
				for i := range f {
					f[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[off+4*int64(i):]))
				}
				return f
			}
		}
		t.Fatalf("no %s", name)
		return nil
	}
	emb, head := get("model.embed_tokens.weight"), get("lm_head.weight")
	for _, p := range [][2]int{{0, 0}, {7, 3}, {511, 63}} { // (token, dim)
		if emb[p[0]*64+p[1]] != head[p[1]*512+p[0]] {
			t.Errorf("head[%d,%d] != embed[%d,%d]", p[1], p[0], p[0], p[1])
		}
	}
}

func TestWriteSyntheticErrors(t *testing.T) {
	c, _ := llama.Preset("tiny")
	dir := t.TempDir()
	err := llama.WriteSynthetic(filepath.Join(dir, "h.onnx"), c, 1, onnxpb.TensorProto_DOUBLE)
	if err == nil || !strings.Contains(err.Error(), "h.onnx") || !strings.Contains(err.Error(), "DOUBLE") {
		t.Errorf("double: %v", err)
	}
	c.Heads = 7
	if err := llama.WriteSynthetic(filepath.Join(dir, "b.onnx"), c, 1, onnxpb.TensorProto_FLOAT); err == nil {
		t.Error("bad config accepted")
	}
	if err := llama.WriteSynthetic(filepath.Join(dir, "missing", "m.onnx"), c, 1, onnxpb.TensorProto_FLOAT); err == nil {
		t.Error("missing folder accepted")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("left files behind: %v", entries)
	}
}

func TestBuildSourceErrors(t *testing.T) {
	c, _ := llama.Preset("tiny")
	w := randomWeights(c, 1)
	delete(w, llama.LayerWeight(1, "mlp.up_proj"))
	if _, err := llama.Build(c, llama.Weights(w)); err == nil || !strings.Contains(err.Error(), "model.layers.1.mlp.up_proj.weight") {
		t.Errorf("missing weight: %v", err)
	}
	w = randomWeights(c, 1)
	w["model.norm.weight"] = w["model.norm.weight"][:3]
	if _, err := llama.Build(c, llama.Weights(w)); err == nil || !strings.Contains(err.Error(), "model.norm.weight") {
		t.Errorf("short weight: %v", err)
	}
}

// BenchmarkWriteSynthetic25m measures the streaming writer on the 25m preset (~100 MB).
func BenchmarkWriteSynthetic25m(b *testing.B) {
	c, _ := llama.Preset("25m")
	for i := 0; i < b.N; i++ {
		if err := llama.WriteSynthetic(filepath.Join(b.TempDir(), "m.onnx"), c, 1, onnxpb.TensorProto_FLOAT); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(4 * c.Params())
}
