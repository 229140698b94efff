package nls_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"github.com/shears-ml/shears/nls"
	"github.com/shears-ml/shears/pipeline"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/shears-ml/shears/data"
	"github.com/shears-ml/shears/internal/progress"
	"github.com/shears-ml/shears/internal/safetensors"
	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/runtime"
	"github.com/shears-ml/shears/tokenizer"
	"github.com/shears-ml/shears/train"
	"github.com/shears-ml/shears/transform/layers"
	"github.com/shears-ml/shears/transform/lora"
	"github.com/shears-ml/shears/transform/trainstep"
)

// questions writes the instructions of n LLM-Adapters nls.Examples (from skip) as {"text"} JSONL:
// short texts of varied length, so micro-batches fall into several length buckets.
func questions(t testing.TB, dir, rel string, skip, n int) string {
	t.Helper()
	var b bytes.Buffer
	for _, e := range nls.Window(nls.Examples(t, rel), skip, n) {
		q := e.Instruction
		if i := strings.Index(q, "\n"); i > 0 {
			q = q[:i]
		}
		line, _ := json.Marshal(map[string]string{"text": q})
		b.Write(line)
		b.WriteByte('\n')
	}
	p := filepath.Join(dir, "questions.jsonl")
	if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func smallRun(super, dataPath, tok, out string) pipeline.TrainOptions {
	o := pipeline.DefaultTrainOptions()
	o.Super, o.Data, o.Tokenizer, o.Out = super, dataPath, tok, out
	o.Epochs, o.Batch, o.MicroBatch, o.Cutoff, o.LR = 2, 8, 4, 128, 2e-3
	o.CheckpointEvery = 2
	o.MaxGraphs = 2
	o.Runtime = runtime.Options{Threads: 2}
	return o
}

// A run killed after step 5 (last checkpoint at step 4) and resumed ends with the same adapter,
// bit for bit, as an uninterrupted run; the metrics and the sampled sub-adapters are replayed
// identically. 22 sequences in micro-batches of 4 (the last one short) and steps of 2 (the
// epoch's last step short), 2 epochs, dropout 0.1, several length buckets.
func TestKillAndResumeIsExact(t *testing.T) {
	testkit.ORT(t)
	dir := t.TempDir()
	_, super := nls.SuperNet(t, dir, 0.1)
	qs := questions(t, dir, "data/llm-adapters/ARC-Easy-train.json", 0, 22)
	tok := nls.TokPath(t)

	full := filepath.Join(dir, "full")
	ref, err := pipeline.Train(smallRun(super, qs, tok, full))
	if err != nil {
		t.Fatal(err)
	}
	if ref.Steps != 6 || ref.Total != 6 || ref.Stopped || len(ref.Buckets) != 2 {
		t.Fatalf("uninterrupted run: %+v (want 6 steps, 2 buckets)", ref)
	}
	cfg, err := pipeline.ReadRunConfig(full)
	if err != nil {
		t.Fatal(err)
	}
	samples, _ := pipeline.ReadSamples(full)
	distinct := map[int]bool{}
	for _, s := range samples {
		distinct[s.Len] = true
	}
	t.Logf("buckets %v for the run's micro-batch lengths; padded %d of %d real tokens; %v", cfg.Buckets, cfg.PaddedTokens, cfg.RealTokens, cfg.Deviations)
	if len(distinct) != 2 || !slices.Equal(cfg.Buckets, ref.Buckets) {
		t.Fatalf("micro-batches ran at lengths %v, buckets %v", distinct, cfg.Buckets)
	}

	part := filepath.Join(dir, "part")
	o := smallRun(super, qs, tok, part)
	o.StopAfter = 5
	res, err := pipeline.Train(o)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Stopped || res.Steps != 5 {
		t.Fatalf("killed run: %+v", res)
	}
	if _, err := os.Stat(filepath.Join(part, pipeline.AdapterFile)); !os.IsNotExist(err) {
		t.Fatalf("a killed run wrote an adapter (%v)", err)
	}
	if recs, _ := pipeline.ReadMetrics(part); len(recs) != 5 {
		t.Fatalf("killed run has %d metric records, want 5 (step 5 after the last checkpoint)", len(recs))
	}
	// Resuming with other numbers is refused, naming what differs.
	bad := smallRun(super, qs, tok, part)
	bad.Resume, bad.LR = true, 1e-3
	if _, err := pipeline.Train(bad); err == nil || !strings.Contains(err.Error(), "lr: run.json has 0.002, now 0.001") {
		t.Fatalf("resume with another lr: %v", err)
	}
	// Starting over in a run directory is refused.
	if _, err := pipeline.Train(smallRun(super, qs, tok, part)); !errors.Is(err, pipeline.ErrRunExists) {
		t.Fatalf("train into an existing run: %v", err)
	}
	o = smallRun(super, qs, tok, part)
	o.Resume = true
	res, err = pipeline.Train(o)
	if err != nil {
		t.Fatal(err)
	}
	if res.ResumedFrom != 4 || res.Steps != 6 || res.Stopped {
		t.Fatalf("resumed run: %+v (want resumed from 4 to 6)", res)
	}

	a, err := os.ReadFile(filepath.Join(full, pipeline.AdapterFile))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(part, pipeline.AdapterFile))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatalf("resumed adapter differs from the uninterrupted run's (%d vs %d bytes)", len(a), len(b))
	}
	// The training actually moved B away from zero.
	f, err := safetensors.Decode(a)
	if err != nil {
		t.Fatal(err)
	}
	bv, err := f.Float32s("model.layers.0.self_attn.q_proj.lora_B.weight")
	if err != nil {
		bv, err = firstB(f)
		if err != nil {
			t.Fatal(err)
		}
	}
	if maxAbs(bv) == 0 {
		t.Fatal("B is still zero after training")
	}
	m1, _ := pipeline.ReadMetrics(full)
	m2, _ := pipeline.ReadMetrics(part)
	if len(m1) != 6 || len(m2) != 6 {
		t.Fatalf("metrics: %d and %d records", len(m1), len(m2))
	}
	for i := range m1 {
		x, y := m1[i], m2[i]
		if x.Loss != y.Loss || x.LR != y.LR || x.GradNorm != y.GradNorm || x.Tokens != y.Tokens || x.Step != i+1 || y.Step != i+1 {
			t.Fatalf("step %d: %+v vs %+v", i+1, x, y)
		}
	}
	s1, _ := pipeline.ReadSamples(full)
	s2, _ := pipeline.ReadSamples(part)
	if len(s1) != 12 || len(s2) != 12 {
		t.Fatalf("samples: %d and %d records, want 12 micro-batches", len(s1), len(s2))
	}
	for i := range s1 {
		if s1[i].T != i || s2[i].T != i || s1[i].Loss != s2[i].Loss || !slices.Equal(s1[i].Ranks, s2[i].Ranks) {
			t.Fatalf("micro-batch %d: %+v vs %+v", i, s1[i], s2[i])
		}
	}
}

func firstB(f *safetensors.File) ([]float32, error) {
	for _, t := range f.Tensors {
		if strings.Contains(t.Name, "lora_B") || strings.HasSuffix(t.Name, ".B") {
			return t.Float32s()
		}
	}
	return nil, errors.New("no B tensor in the adapter")
}

func maxAbs(v []float32) float64 {
	var m float64
	for _, x := range v {
		m = max(m, math.Abs(float64(x)))
	}
	return m
}

// heldOutLoss is the mean loss of held-out sequences under the heuristic sub-adapter of a
// super-network, as the deliverable would run it (lora.Extract at the middle rank): each batch
// goes through a train step of the extracted model (its loss output; the gradient of the one
// trainable norm weight is ignored), so labels of −100 are honoured.
func heldOutLoss(t *testing.T, super *onnx.Model, seqs []data.Sequence) float64 {
	t.Helper()
	meta, err := lora.ReadConfig(super)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := meta.Space(nil)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := lora.Extract(super, sp.Heuristic())
	if err != nil {
		t.Fatal(err)
	}
	st, err := trainstep.Build(sub, trainstep.Config{Batch: len(seqs), Seq: 256, Trainable: []string{"model.norm.weight"}})
	if err != nil {
		t.Fatal(err)
	}
	r, err := train.New(st, train.Options{Runtime: runtime.Options{Threads: 2}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := data.Pad(seqs, 0, 256)
	if err != nil {
		t.Fatal(err)
	}
	loss, err := r.Accumulate(b.IDs, b.Labels, 0)
	if err != nil {
		t.Fatal(err)
	}
	return loss
}

// NLS training of a 50%-sparse stories260K on LLM-Adapters math training nls.Examples lowers the
// loss of held-out nls.Examples (after the template they all share, so the fixed text does not
// count) at the heuristic sub-adapter, and leaves the base's zeros exactly where they
// were. Also checks metrics.jsonl's fields, the PNG and LoadRun.
func TestNLSLowersHeldOutLossKeepsSparsity(t *testing.T) {
	testkit.ORT(t)
	dir := t.TempDir()
	sparsePath, super := nls.SuperNet(t, dir, 0.1)
	trainPath := nls.Subset(t, dir, "data/llm-adapters/math_data.json", 0, 48)
	tokp := nls.TokPath(t)
	tok, err := tokenizer.Load(tokp)
	if err != nil {
		t.Fatal(err)
	}
	held := nls.Subset(t, t.TempDir(), "data/llm-adapters/math_data.json", 2000, 32)
	hs, err := data.TrainSequences(held, tok, data.TrainOptions{Cutoff: 256, TrainOnInputs: true})
	if err != nil {
		t.Fatal(err)
	}
	// The template's tokens are the same in every example and trivially learnt: the held-out
	// loss counts only what follows the longest common prefix (the question and response).
	prefix := len(hs[0].IDs)
	for _, s := range hs[1:] {
		k := 0
		for k < prefix && k < len(s.IDs) && s.IDs[k] == hs[0].IDs[k] {
			k++
		}
		prefix = k
	}
	if prefix < 20 || prefix > 160 {
		t.Fatalf("common template prefix of %d tokens", prefix)
	}
	for _, s := range hs {
		for k := 0; k < prefix; k++ {
			s.Labels[k] = data.IgnoreIndex
		}
	}

	sm, err := onnx.Load(super)
	if err != nil {
		t.Fatal(err)
	}
	before := heldOutLoss(t, sm, hs)
	sm.Close()

	run := filepath.Join(dir, "run")
	o := pipeline.DefaultTrainOptions()
	o.Super, o.Data, o.Tokenizer, o.Out = super, trainPath, tokp, run
	o.Epochs, o.Batch, o.MicroBatch, o.Cutoff, o.LR = 2, 8, 4, 256, 3e-3
	o.Runtime = runtime.Options{Threads: 2}
	var seen []progress.Event
	o.Progress = func(p progress.Event) { seen = append(seen, p) }
	res, err := pipeline.Train(o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Steps != 12 || len(seen) != 12 || seen[11].Done != 12 || seen[11].Total != 12 || !seen[5].Saved || seen[4].Saved {
		t.Fatalf("result %+v, %d progress calls", res, len(seen))
	}

	r, err := pipeline.OpenRun(run)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Model.Close()
	if !r.Final || r.Steps != 12 || r.Config.Hyper.LR != 3e-3 || !slices.Equal(r.Space.Ranks, nls.TestRanks) {
		t.Fatalf("LoadRun: final %v steps %d config %+v", r.Final, r.Steps, r.Config.Hyper)
	}
	after := heldOutLoss(t, r.Model, hs)
	t.Logf("held-out loss after the %d-token template at the heuristic rank %d: %.4f before, %.4f after (%d nls.Examples); train loss %.4f → %.4f; %.0f tokens/s",
		prefix, lora.HeuristicRank(nls.TestRanks), before, after, len(hs), res.FirstLoss, res.LastLoss, res.TokensPerS)
	if after > before-0.1 {
		t.Fatalf("held-out loss %.4f → %.4f: did not drop by 0.1", before, after)
	}

	// LoadRun's A/B equal the adapter file's; the base weights are untouched: same zeros.
	f, err := safetensors.Read(filepath.Join(run, pipeline.AdapterFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, mod := range r.Meta.Modules[:3] {
		want, _ := f.Float32s(mod.B)
		got, err := r.Model.Float32s(r.Model.Initializer(mod.B))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) || maxAbs(got) == 0 {
			t.Fatalf("module %s: LoadRun's B differs from the adapter's or is zero", mod.Name)
		}
	}
	sp, err := onnx.Load(sparsePath)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	ls, err := layers.Find(sp)
	if err != nil {
		t.Fatal(err)
	}
	var zeros, total int
	for _, l := range ls {
		w0, _ := sp.Float32s(sp.Initializer(l.Weight))
		w1, err := r.Model.Float32s(r.Model.Initializer(l.Weight))
		if err != nil {
			t.Fatal(err)
		}
		for i := range w0 {
			if (w0[i] == 0) != (w1[i] == 0) || w0[i] != w1[i] {
				t.Fatalf("%s[%d]: %v before, %v after training", l.Weight, i, w0[i], w1[i])
			}
			if w1[i] == 0 {
				zeros++
			}
			total++
		}
	}
	if frac := float64(zeros) / float64(total); frac < 0.49 || frac > 0.51 {
		t.Fatalf("base sparsity %.3f, want 0.5", frac)
	}

	// metrics.jsonl: one record per step with every field filled in and consistent.
	raw, err := os.ReadFile(filepath.Join(run, pipeline.MetricsFile))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	if len(lines) != 12 {
		t.Fatalf("%d metric lines", len(lines))
	}
	var first map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"step", "epoch", "micro_batches", "loss", "lr", "grad_norm", "tokens", "loss_tokens", "padded_tokens", "tokens_per_s", "elapsed_s", "ranks"} {
		if _, ok := first[k]; !ok {
			t.Errorf("metrics record lacks %q: %s", k, lines[0])
		}
	}
	recs, _ := pipeline.ReadMetrics(run)
	samples, _ := pipeline.ReadSamples(run)
	sched := nls.Schedule{LR0: 3e-3, Micro: 24, Steps: 12}
	for i, rec := range recs {
		// 2 micro-batches of 4 per step; every sequence has len−1 predictions; each micro-batch
		// is padded to its multiple of 8.
		padded := 4 * (samples[2*i].Len + samples[2*i+1].Len)
		if rec.Step != i+1 || rec.Epoch != i/6+1 || rec.MicroBatches != 2 || rec.Tokens < 8*100 || rec.LossTokens != rec.Tokens-8 ||
			rec.PaddedTokens != padded || rec.PaddedTokens < rec.Tokens || rec.TokensPerS <= 0 || rec.GradNorm <= 0 || rec.LR != sched.LR(i, 2*i+1) {
			t.Fatalf("record %d: %+v", i, rec)
		}
		var mean float64
		counts := map[string]int{}
		for _, s := range samples[2*i : 2*i+2] {
			for _, rk := range s.Ranks {
				mean += float64(rk)
				counts[strconv.Itoa(rk)]++
			}
		}
		mean /= 30
		if !(math.Abs(rec.Ranks.Mean-mean) <= 1e-12) || len(counts) != len(rec.Ranks.Counts) {
			t.Fatalf("record %d ranks %+v, samples give mean %v counts %v", i, rec.Ranks, mean, counts)
		}
		if want := (samples[2*i].Loss + samples[2*i+1].Loss) / 2; !(math.Abs(rec.Loss-want) <= 1e-12) {
			t.Fatalf("record %d loss %v, mean of its micro-batches %v", i, rec.Loss, want)
		}
	}
	// loss.png is a valid PNG of the plot's size (8 × 4.5 in at 96 dpi).
	pf, err := os.Open(filepath.Join(run, pipeline.PlotFile))
	if err != nil {
		t.Fatal(err)
	}
	defer pf.Close()
	img, err := png.Decode(pf)
	if err != nil {
		t.Fatalf("loss.png: %v", err)
	}
	if b := img.Bounds(); b.Dx() != 768 || b.Dy() != 432 {
		t.Fatalf("loss.png is %v", b)
	}
}

// Cancelling the context stops after the current step with a checkpoint; LoadRun then gives the
// checkpoint's weights (Final false). A directory that is not a run is a clear error.
func TestCancelCheckpointsAndLoadRun(t *testing.T) {
	testkit.ORT(t)
	dir := t.TempDir()
	_, super := nls.SuperNet(t, dir, 0)
	d := nls.Subset(t, dir, "data/llm-adapters/ARC-Easy-train.json", 0, 16)
	o := smallRun(super, d, nls.TokPath(t), filepath.Join(dir, "run"))
	o.Cutoff, o.CheckpointEvery = 32, 0
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	o.Context = ctx
	o.Progress = func(p progress.Event) {
		if p.Done == 1 {
			cancel()
		}
	}
	res, err := pipeline.Train(o)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Stopped || res.Steps != 1 {
		t.Fatalf("cancelled run: %+v", res)
	}
	r, err := pipeline.OpenRun(o.Out)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Model.Close()
	if r.Final || r.Steps != 1 || r.Meta.Dropout != 0 {
		t.Fatalf("LoadRun of a stopped run: final %v, steps %d", r.Final, r.Steps)
	}
	ck, err := safetensors.Read(filepath.Join(o.Out, pipeline.CheckpointFile))
	if err != nil {
		t.Fatal(err)
	}
	mod := r.Meta.Modules[0]
	want, _ := ck.Float32s(mod.A)
	got, _ := r.Model.Float32s(r.Model.Initializer(mod.A))
	if !slices.Equal(got, want) {
		t.Fatal("LoadRun's A differs from the checkpoint's")
	}
	if m, _ := ck.Float32s("adam_v/" + mod.B); maxAbs(m) == 0 {
		t.Fatal("the checkpoint's AdamW second moment of B is zero after a step")
	}
	if _, err := pipeline.OpenRun(dir); err == nil || !strings.Contains(err.Error(), "run.json") {
		t.Fatalf("LoadRun of a non-run: %v", err)
	}
}
