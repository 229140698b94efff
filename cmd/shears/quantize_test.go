package main

import (
	"encoding/json"
	"math"
	"os"
	path2 "path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shears-ml/shears/eval"
	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/pipeline"
	"github.com/shears-ml/shears/runtime"
	"github.com/shears-ml/shears/transform/quant"
	"google.golang.org/protobuf/proto"
)

// TestQuantizeStories takes the stories260K import through prune → quantize (int4 RTN) and
// checks the figures that do not need training: 35 MatMulNBits nodes (5 blocks × 7
// linears; the LM head stays float), every zero kept, ≤ 0.2× the float32 bytes; inspect
// reports them; eval and generate run the quantized model; pruning it is refused.
func TestQuantizeStories(t *testing.T) {
	tok := testkit.Tok512Shaped(t)
	data := testkit.Dataset(t, "boolq-test.json")
	testkit.ORT(t)
	dir := t.TempDir()
	model := importStories(t, dir)
	sparse := filepath.Join(dir, "sparse.onnx")
	prune50(t, model, sparse)
	q := filepath.Join(dir, "int4.onnx")
	o, e, code := shears(t, "quantize", sparse, "-o", q, "--bits", "4", "--json")
	if code != 0 {
		t.Fatal(e)
	}
	var rep pipeline.QuantizeReport
	if err := json.Unmarshal([]byte(o), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Layers) != 35 || !rep.ZerosKept || !(rep.Ratio <= 0.2) || !(rep.Sparsity >= 0.5) {
		t.Fatalf("report: %d layers, zeros kept %v, ratio %g, sparsity %g", len(rep.Layers), rep.ZerosKept, rep.Ratio, rep.Sparsity)
	}
	ins := inspectJSON(t, q)
	if ins.Ops["com.microsoft::MatMulNBits"] != 35 || len(ins.Quantized) != 35 || len(ins.Head) != 1 {
		t.Fatalf("inspect: %d MatMulNBits ops, %d quantized linears, %d heads", ins.Ops["com.microsoft::MatMulNBits"], len(ins.Quantized), len(ins.Head))
	}
	for _, l := range ins.Quantized {
		if l.Bits != 4 || l.BlockSize != 32 || l.Symmetric || !(l.Sparsity >= 0.5) {
			t.Fatalf("inspect: %+v", l)
		}
	}
	o, e, code = shears(t, "eval", q, "--task", "ppl", "--data", data, "--tokenizer", tok, "--seq-len", "128", "--limit", "5", "--json", "--threads", "2")
	if code != 0 {
		t.Fatalf("eval of the quantized model: %s", e)
	}
	var p eval.PPL
	if err := json.Unmarshal([]byte(o), &p); err != nil || !(p.PPL > 1 && p.PPL < 1e4) {
		t.Fatalf("ppl %+v (%v)", p, err)
	}
	if _, e, code = shears(t, "generate", q, "--tokenizer", tok, "--max-tokens", "8"); code != 0 {
		t.Fatalf("generate with the quantized model: %s", e)
	}
	// A model folder for serving runtimes (onnxruntime GenAI runs MatMulNBits): eval reads it.
	folder := filepath.Join(dir, "int4-folder")
	if _, e, code = shears(t, "quantize", sparse, "-o", folder, "--bits", "4", "--format", "folder", "--tokenizer", tok); code != 0 {
		t.Fatalf("quantize --format folder: %s", e)
	}
	for _, f := range []string{"genai_config.json", "config.json", "tokenizer.json", "onnx/model.onnx"} {
		if _, err := os.Stat(filepath.Join(folder, f)); err != nil {
			t.Errorf("model folder: %v", err)
		}
	}
	o, e, code = shears(t, "eval", folder, "--task", "ppl", "--data", data, "--seq-len", "128", "--limit", "5", "--json", "--threads", "2")
	var pf eval.PPL
	if code != 0 || json.Unmarshal([]byte(o), &pf) != nil || pf.PPL != p.PPL {
		t.Fatalf("eval of the quantized folder: ppl %v, the file's %v (%s)", pf.PPL, p.PPL, e)
	}
	if _, e, code = shears(t, "quantize", sparse, "-o", filepath.Join(dir, "hf"), "--bits", "4", "--format", "hf"); code == 0 || !strings.Contains(e, "format hf") {
		t.Fatalf("--format hf: exit %d, %q", code, e)
	}
	if _, e, code = shears(t, "prune", q, "-o", filepath.Join(dir, "p.onnx"), "--method", "magnitude"); code == 0 || !strings.Contains(e, "prune first") {
		t.Fatalf("pruning a quantized model: exit %d, %q", code, e)
	}
	if _, e, code = shears(t, "quantize", sparse, "-o", filepath.Join(dir, "b.onnx"), "--bits", "3"); code == 0 || !strings.Contains(e, "--bits 3") {
		t.Fatalf("--bits 3: exit %d, %q", code, e)
	}
}

// TestQuantizeStoriesPerplexity: stories260K Wanda-pruned to 50%, then int4 (block 32,
// asymmetric) by RTN and by GPTQ; held-out perplexity (ARC-Easy test prompts, 256-token
// windows) of GPTQ ≤ 1.1× and of RTN ≤ 1.25× the sparse float model's, GPTQ below RTN.
func TestQuantizeStoriesPerplexity(t *testing.T) {
	testkit.Shared(t, "models/stories260K/stories260K.bin") // ratios of a trained model's perplexity
	tok := testkit.Tok512Shaped(t)
	calib := testkit.Dataset(t, "ARC-Easy-train.json")
	held := testkit.Dataset(t, "ARC-Easy-test.json")
	testkit.ORT(t)
	dir := t.TempDir()
	model := importStories(t, dir)
	sparse := filepath.Join(dir, "sparse.onnx")
	if _, e, code := shears(t, "prune", model, "-o", sparse, "--sparsity", "0.5", "--calib", calib, "--tokenizer", tok, "--samples", "16", "--seq-len", "256"); code != 0 {
		t.Fatal(e)
	}
	ppl := func(m string) float64 {
		o, e, code := shears(t, "eval", m, "--task", "ppl", "--data", held, "--tokenizer", tok, "--seq-len", "256", "--limit", "300", "--json", "--threads", "2")
		if code != 0 {
			t.Fatalf("eval %s: %s", m, e)
		}
		var p eval.PPL
		if err := json.Unmarshal([]byte(o), &p); err != nil {
			t.Fatal(err)
		}
		return p.PPL
	}
	rtn, gptq := filepath.Join(dir, "rtn.onnx"), filepath.Join(dir, "gptq.onnx")
	if _, e, code := shears(t, "quantize", sparse, "-o", rtn, "--bits", "4"); code != 0 {
		t.Fatal(e)
	}
	o, e, code := shears(t, "quantize", sparse, "-o", gptq, "--bits", "4", "--method", "gptq", "--calib", calib, "--tokenizer", tok,
		"--samples", "32", "--seq-len", "256", "--json")
	if code != 0 {
		t.Fatal(e)
	}
	var rep pipeline.QuantizeReport
	if err := json.Unmarshal([]byte(o), &rep); err != nil || !rep.ZerosKept || len(rep.Layers) != 35 || !(rep.Ratio <= 0.2) {
		t.Fatalf("gptq report %+v (%v)", rep, err)
	}
	ps, pr, pg := ppl(sparse), ppl(rtn), ppl(gptq)
	t.Logf("held-out ppl: sparse float %.3f, rtn int4 %.3f (%.3f×), gptq int4 %.3f (%.3f×)", ps, pr, pr/ps, pg, pg/ps)
	if !(pg <= 1.1*ps) || !(pr <= 1.25*ps) || !(pg < pr) {
		t.Fatalf("ppl: sparse %g, rtn %g, gptq %g; want gptq ≤ 1.1×, rtn ≤ 1.25×, gptq < rtn", ps, pr, pg)
	}
}

// TestQASparsePEFTStories: stories260K pruned to 50%, int4 RTN, adapted (QA-SparsePEFT is
// automatic on a quantized base), trained briefly on ARC-Easy prompts, exported merged
// (MatMulNBits on the base's grid) and unmerged (quantized base + float sparse adapters): the
// merged export keeps every zero and has a lower held-out loss than the int4 base; inside
// each block's range the merged weights are within half a step of the unmerged W'.
func TestQASparsePEFTStories(t *testing.T) {
	tok := testkit.Tok512Shaped(t)
	held := testkit.Dataset(t, "ARC-Easy-test.json")
	testkit.ORT(t)
	dir := t.TempDir()
	model := importStories(t, dir)
	sparse, q4, super := filepath.Join(dir, "sparse.onnx"), filepath.Join(dir, "q4.onnx"), filepath.Join(dir, "super.onnx")
	prune50(t, model, sparse)
	if _, e, code := shears(t, "quantize", sparse, "-o", q4, "--bits", "4"); code != 0 {
		t.Fatal(e)
	}
	o, e, code := shears(t, "adapt", q4, "-o", super, "--ranks", "8,6,4", "--alpha", "16")
	if code != 0 || !strings.Contains(o, "QA-SparsePEFT") {
		t.Fatalf("adapt: %s %s", o, e)
	}
	train := arcSlice(t, dir, "arc128.json", 0, 128)
	run := filepath.Join(dir, "run")
	if _, e, code := shears(t, "train", super, "--data", train, "--tokenizer", tok, "--out", run, "--epochs", "3", "--batch", "16",
		"--micro-batch", "8", "--cutoff", "96", "--lr", "2e-3", "--threads", "2", "--no-progress"); code != 0 {
		t.Fatalf("train: %s", e)
	}
	// search runs the QA super-network (its sub-adapters as the merge will quantize them).
	val := arcSlice(t, dir, "val.json", 200, 216)
	best := filepath.Join(dir, "best.json")
	if _, e, code := shears(t, "search", run, "--data", val, "--tokenizer", tok, "--strategy", "hill-climb", "--budget", "2",
		"-o", best, "--threads", "2", "--plot", "-", "--no-progress"); code != 0 {
		t.Fatalf("search on a QA-SparsePEFT run: %s", e)
	}
	if _, e, code := shears(t, "export", run, "-o", filepath.Join(dir, "searched.onnx"), "--merge", "sparse", "--config", best); code != 0 {
		t.Fatalf("export of the searched sub-adapter: %s", e)
	}
	merged, unmerged := filepath.Join(dir, "merged.onnx"), filepath.Join(dir, "unmerged.onnx")
	var rep pipeline.ExportResult
	for _, c := range []struct{ out, mode string }{{merged, "sparse"}, {unmerged, "none"}} {
		o, e, code := shears(t, "export", run, "-o", c.out, "--merge", c.mode, "--ranks", "heuristic", "--json")
		if code != 0 {
			t.Fatalf("export --merge %s: %s", c.mode, e)
		}
		var r pipeline.ExportResult
		if err := json.Unmarshal([]byte(o), &r); err != nil || r.Quantized == nil || !r.Quantized.ZerosKept || len(r.Quantized.Layers) != 35 {
			t.Fatalf("export --merge %s: %s (%v)", c.mode, o, err)
		}
		if c.mode == "sparse" {
			rep = r
		}
	}
	q := rep.Quantized
	if !(q.MaxSteps <= 0.5+1e-5) || q.RefitBlocks == 0 {
		t.Fatalf("export report: merged weights up to %.3f steps from W', %d of %d blocks refit", q.MaxSteps, q.RefitBlocks, q.Blocks)
	}
	// From the two files: every weight of the merged export within one step (of its block's
	// grid in the merged file) of the unmerged export's base + ΔW; in fact within half a step.
	um, mm := effectiveWeights(t, unmerged), effectiveWeights(t, merged)
	steps, n := 0.0, 0
	for node, ml := range mm {
		uw, w := um[node].w, ml.w
		if len(uw) != len(w) {
			t.Fatalf("%s: %d weights in the unmerged export, %d merged", node, len(uw), len(w))
		}
		for i := range w {
			g := ml.l.GridAt(i%ml.l.N, i/ml.l.N/ml.l.Config.BlockSize)
			d := math.Abs(float64(w[i] - uw[i]))
			if g.Scale == 0 {
				d = math.Inf(1)
				if w[i] == uw[i] {
					d = 0
				}
			} else {
				d /= float64(g.Scale)
			}
			if !(d <= 1) {
				t.Fatalf("%s weight %d: merged %g, unmerged %g: %.3f steps apart", node, i, w[i], uw[i], d)
			}
			steps = math.Max(steps, d)
			n++
		}
	}
	if len(mm) != 35 || !(steps <= 0.5+1e-3) {
		t.Fatalf("%d linears; merged and unmerged exports up to %.4f steps apart", len(mm), steps)
	}
	t.Logf("merged vs unmerged export: all %d weights within %.4f steps; %d of %d blocks refit (scale ≤ %.2f× the base's)", n, steps, q.RefitBlocks, q.Blocks, q.MaxScaleRatio)
	ins := inspectJSON(t, merged)
	if len(ins.Quantized) != 35 || ins.Ops["com.microsoft::MatMulNBits"] != 35 || len(ins.Head) != 1 {
		t.Fatalf("merged export: %d quantized linears, ops %v", len(ins.Quantized), ins.Ops)
	}
	loss := func(m string) float64 {
		o, e, code := shears(t, "eval", m, "--task", "ppl", "--data", held, "--tokenizer", tok, "--seq-len", "256", "--limit", "100", "--json", "--threads", "2")
		if code != 0 {
			t.Fatalf("eval %s: %s", m, e)
		}
		var p eval.PPL
		if err := json.Unmarshal([]byte(o), &p); err != nil {
			t.Fatal(err)
		}
		return math.Log(p.PPL)
	}
	lb, lm, lu := loss(q4), loss(merged), loss(unmerged)
	t.Logf("held-out loss: int4 base %.4f, QA-SparsePEFT merged int4 %.4f, unmerged %.4f", lb, lm, lu)
	if !(lm < lb) {
		t.Fatalf("merged int4 held-out loss %.4f is not below the int4 base's %.4f", lm, lb)
	}
}

// quantLinear is one MatMulNBits linear of an export with the weight it computes with.
type quantLinear struct {
	l *quant.Layer
	w []float32 // [K, N]
}

// effectiveWeights reads each MatMulNBits linear of an exported model as the weight it
// multiplies by: the dequantized MatMulNBits weight, plus, in an unmerged QA-SparsePEFT
// export, the masked adapter product M ⊙ s·A_r·B_r that onnxruntime computes for it (the
// output of its delta_mask node, run once).
func effectiveWeights(t *testing.T, path string) map[string]quantLinear {
	t.Helper()
	m, err := onnx.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	_, layers, err := quant.Quantized(m)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]quantLinear{}
	deltas := map[string]string{} // linear → its ΔW tensor
	ix := onnx.NewIndex(m.Graph())
	for node, l := range layers {
		out[node] = quantLinear{l: l, w: l.Dequant()}
		if dm := ix.Nodes[path2.Dir(node)+"/lora_qa/delta_mask/Mul"]; dm != nil {
			deltas[node] = dm.GetOutput()[0]
		}
	}
	if len(deltas) == 0 {
		return out
	}
	float := onnxpb.TensorProto_FLOAT
	var names []string
	for _, name := range deltas {
		m.Graph().Output = append(m.Graph().Output, &onnxpb.ValueInfoProto{Name: proto.String(name), Type: &onnxpb.TypeProto{
			Value: &onnxpb.TypeProto_TensorType{TensorType: &onnxpb.TypeProto_Tensor{ElemType: proto.Int32(int32(float))}}}})
		names = append(names, name)
	}
	raw, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	s, err := runtime.OpenBytes(raw, m.Dir, runtime.Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	res, err := s.Run(testkit.LMFeeds(t, s.Inputs(), 1, []int64{1}, nil), names)
	if err != nil {
		t.Fatal(err)
	}
	for node, name := range deltas {
		w, d := out[node].w, res[name].F32
		if len(d) != len(w) {
			t.Fatalf("%s: ΔW has %d values, the weight %d", node, len(d), len(w))
		}
		for i := range w {
			w[i] += d[i]
		}
	}
	return out
}
