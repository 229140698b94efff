package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/shears-ml/shears/eval"
	"github.com/shears-ml/shears/lm"
	"github.com/shears-ml/shears/models/llama"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/runtime"
)

// quantizeGoal is quantize-1b's peak RSS limit as a multiple of the model's size on disk.
const quantizeGoal = 1.5

// quantCompare puts fp32 dense, fp32 50% sparse and the int8 / int4 sparse MatMulNBits models
// side by side, for stories260K and the 25M random LLaMA, in one run: file size, onnxruntime CPU
// prefill and decode tokens/s, and held-out perplexity.
func quantCompare(ctx context.Context, h *harness) (*Result, error) {
	return quantVariants(ctx, h, true)
}

// quantSpeed is quantCompare's speed columns alone (no perplexity, no calibration: magnitude
// pruning and RTN, whose models have the same shapes and formats as Wanda's and GPTQ's).
func quantSpeed(ctx context.Context, h *harness) (*Result, error) {
	return quantVariants(ctx, h, false)
}

// decodePast is the cache length of the decode tokens/s columns.
const decodePast = 128

func quantVariants(ctx context.Context, h *harness, full bool) (*Result, error) {
	in, err := h.shared(stories260K, tok512, arcTrain, arcTest)
	if err != nil {
		return nil, err
	}
	ckpt, tok, calib, held := in[0], in[1], in[2], in[3]
	dir := filepath.Join(h.Work, "quant")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	r := &Result{Header: []string{"model", "variant", "file size", "× fp32 dense", "prefill tokens/s", "× fp32 dense",
		fmt.Sprintf("decode tokens/s (past %d)", decodePast), "× fp32 dense", "decode, no pre-packing", "× fp32 dense"}, Figures: map[string]float64{}}
	if full {
		r.Header = append(r.Header, "held-out ppl", "× fp32 sparse")
	}
	stories := filepath.Join(dir, "stories260K.onnx")
	if _, err := h.shears(ctx, r, "import", "llama2c", ckpt, "-o", stories); err != nil {
		return nil, err
	}
	m25 := filepath.Join(dir, "llama-25m.onnx")
	if _, err := os.Stat(m25); err != nil {
		cfg, _ := llama.Preset("25m")
		h.logf("writing the 25M synthetic model to %s", m25)
		if err := llama.WriteSynthetic(m25, cfg, 0, onnxpb.TensorProto_FLOAT); err != nil {
			return nil, err
		}
	}
	calibArgs := []string{"--calib", calib, "--tokenizer", tok, "--samples", "64", "--seq-len", "256", "--seed", "0"}
	pruneArgs, sparseName, suffix := calibArgs, "fp32 50% sparse (Wanda)", ""
	if !full {
		pruneArgs, sparseName, suffix = []string{"--method", "magnitude"}, "fp32 50% sparse (magnitude)", "-speed"
	}
	for _, base := range []struct {
		name, path string
		limit      int // held-out prompts: the 25M model's forward costs ~100× stories260K's
	}{{"stories260K", stories, 300}, {"25M random", m25, 40}} {
		stem := filepath.Join(dir, filepath.Base(base.path[:len(base.path)-len(".onnx")])) + suffix
		sparse := stem + "-w50.onnx"
		if _, err := h.shears(ctx, r, append(append([]string{"prune", base.path, "-o", sparse, "--sparsity", "0.5"}, pruneArgs...), h.rtArgs()...)...); err != nil {
			return nil, err
		}
		variants := []struct{ name, path string }{{"fp32 dense", base.path}, {sparseName, sparse}}
		quants := []struct {
			name, file string
			args       []string
		}{
			{"int8 sparse (RTN)", "int8", []string{"--bits", "8"}},
			{"int4 sparse (RTN)", "int4-rtn", []string{"--bits", "4"}},
			{"int4 sparse (GPTQ)", "int4-gptq", append([]string{"--bits", "4", "--method", "gptq"}, calibArgs...)},
		}
		if !full {
			quants = quants[:2]
		}
		for _, q := range quants {
			out := fmt.Sprintf("%s-w50-%s.onnx", stem, q.file)
			m, err := h.shears(ctx, r, append(append([]string{"quantize", sparse, "-o", out, "--json"}, q.args...), h.rtArgs()...)...)
			if err != nil {
				return nil, err
			}
			var rep struct {
				Ratio     float64 `json:"ratio"`
				ZerosKept bool    `json:"zeros_kept"`
				Layers    []any   `json:"layers"`
			}
			if err := json.Unmarshal(m.Stdout, &rep); err != nil {
				return nil, fmt.Errorf("quantize --json output: %w", err)
			}
			r.Notes = append(r.Notes, fmt.Sprintf("%s %s: %d MatMulNBits, linears' bytes %.3f× float32, every zero kept: %v, quantize wall %.1f s",
				base.name, q.name, len(rep.Layers), rep.Ratio, rep.ZerosKept, m.Seconds))
			variants = append(variants, struct{ name, path string }{q.name, out})
		}
		var dense, denseOff *ForwardResult
		var denseSize, sparsePPL float64
		for i, v := range variants {
			size := fileBytes(v.path)
			f, err := h.forward(ctx, r, v.path, true)
			if err != nil {
				return nil, err
			}
			off, err := h.forward(ctx, r, v.path, false)
			if err != nil {
				return nil, err
			}
			if i == 0 {
				denseSize, dense, denseOff = float64(size), f, off
			}
			key := base.name + " " + v.name
			r.Figures[key+" bytes"] = float64(size)
			r.Figures[key+" tokens_per_s"] = f.TokensPerSecond
			r.Figures[key+" decode_tokens_per_s"] = f.DecodeTokensPerSecond
			r.Figures[key+" decode_tokens_per_s_no_prepack"] = off.DecodeTokensPerSecond
			row := []string{base.name, v.name, fmt.Sprintf("%.2f MB", float64(size)/1e6), fmt.Sprintf("%.3f", float64(size)/denseSize),
				fmt.Sprintf("%.0f", f.TokensPerSecond), fmt.Sprintf("%.2f", f.TokensPerSecond/dense.TokensPerSecond),
				fmt.Sprintf("%.0f", f.DecodeTokensPerSecond), fmt.Sprintf("%.2f", f.DecodeTokensPerSecond/dense.DecodeTokensPerSecond),
				fmt.Sprintf("%.0f", off.DecodeTokensPerSecond), fmt.Sprintf("%.2f", off.DecodeTokensPerSecond/denseOff.DecodeTokensPerSecond)}
			if full {
				m, err := h.shears(ctx, r, append([]string{"eval", v.path, "--task", "ppl", "--data", held, "--tokenizer", tok, "--seq-len", "256", "--limit", fmt.Sprint(base.limit), "--json"}, h.rtArgs()...)...)
				if err != nil {
					return nil, err
				}
				var p struct {
					PPL float64 `json:"ppl"`
				}
				if err := json.Unmarshal(m.Stdout, &p); err != nil {
					return nil, fmt.Errorf("eval --json output: %w", err)
				}
				if i == 1 {
					sparsePPL = p.PPL
				}
				pplRatio := "-"
				if i >= 1 {
					pplRatio = fmt.Sprintf("%.3f", p.PPL/sparsePPL)
				}
				r.Figures[key+" ppl"] = p.PPL
				row = append(row, fmt.Sprintf("%.3f", p.PPL), pplRatio)
			}
			r.Rows = append(r.Rows, row)
		}
	}
	r.Notes = append(r.Notes,
		"quantized: every linear inside the decoder blocks (35 for stories260K, 42 for the 25M), block 32, asymmetric (zero points), LM head and embeddings float32",
		fmt.Sprintf("prefill tokens/s: one onnxruntime CPU session per model (bench --forward-child), batch 4 × 128 tokens, no cache, 2 warm-up runs then the best of 5 timed runs of 4 forwards; decode tokens/s: the same session, one row, a KV cache of %d tokens (made by a prefill), steps of one new token fetching logits and presents, 3 warm-up steps then the best of 5 runs of %d steps", decodePast, decodeSteps),
		"pre-packing: onnxruntime's CPU provider re-lays out constant weights at session start (session.disable_prepacking off): every command's default for a model with MatMulNBits, shears generate's for any (runtime.Prepack: float models run without it elsewhere, it doubles their weight memory). The last two columns are a second child per model with it off (--prepack=off); MatMulNBits without pre-packing re-packs its weights on every run",
		"the machine is shared by other engineers' jobs, so absolute rates are noisy, ratios within this run less so")
	if full {
		r.Notes = append(r.Notes,
			"GPTQ and Wanda calibrate on 64 × 256 tokens of ARC-Easy-train.json (seed 0), damping 0.01",
			"held-out: the first 300 (stories260K) or 40 (25M) ARC-Easy-test.json prompts, 256-token windows; the 25M model is random, so its perplexity only shows how far each variant moves from its own float model")
	} else {
		r.Notes = append(r.Notes, "magnitude pruning and RTN (no calibration): the same shapes, formats and kernels as Wanda and GPTQ, so the same speed")
	}
	return r, nil
}

func fileBytes(p string) int64 {
	var n int64
	for _, f := range []string{p, p + ".data"} {
		if fi, err := os.Stat(f); err == nil {
			n += fi.Size()
		}
	}
	return n
}

// forward measures the model's onnxruntime CPU prefill and decode throughput in a child
// process, with onnxruntime's weight pre-packing explicitly on (what every command does for a
// MatMulNBits model, and shears generate for any) or off (--prepack=off; float models' default).
func (h *harness) forward(ctx context.Context, r *Result, model string, prepack bool) (*ForwardResult, error) {
	args := append([]string{"bench", "--forward-child", model}, h.rtArgs()...)
	if prepack {
		args = append(args, "--forward-prepack=on")
	} else {
		args = append(args, "--forward-prepack=off")
	}
	m, err := h.shears(ctx, r, args...)
	if err != nil {
		return nil, err
	}
	var f ForwardResult
	if err := json.Unmarshal(m.Stdout, &f); err != nil {
		return nil, fmt.Errorf("forward child output: %w", err)
	}
	if f.DecodePast == 0 {
		return nil, fmt.Errorf("forward child: %s has no KV cache to decode with", model)
	}
	return &f, nil
}

// ForwardResult is what Forward measured: prefill (a batch of whole windows, no cache) and,
// for a model with a KV cache, decode (one new token per step on a cache of DecodePast tokens).
type ForwardResult struct {
	Tokens          int     `json:"tokens"`
	Seconds         float64 `json:"seconds"`
	TokensPerSecond float64 `json:"tokens_per_second"`
	// DecodePast is the cache length each decode step attends to; DecodeSteps steps took
	// DecodeSeconds (best of five runs): DecodeTokensPerSecond new tokens per second.
	DecodePast            int     `json:"decode_past,omitempty"`
	DecodeSteps           int     `json:"decode_steps,omitempty"`
	DecodeSeconds         float64 `json:"decode_seconds,omitempty"`
	DecodeTokensPerSecond float64 `json:"decode_tokens_per_second,omitempty"`
}

// Forward is the measured work of the forward child: one session on model. Prefill: batch ×
// seqLen random ids below 256, two warm-up forwards, then the best of five timed runs of four
// forwards each. Decode (when the model takes a KV cache and past > 0): see decode.
func Forward(model string, o runtime.Options, batch, seqLen, past int) (*ForwardResult, error) {
	s, err := runtime.OpenFile(model, o)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	windows := make([][]int, batch)
	for i := range windows {
		windows[i] = make([]int, seqLen)
		for j := range windows[i] {
			windows[i][j] = rng.IntN(256)
		}
	}
	feeds, err := eval.Feeds(s.Inputs(), windows, nil)
	if err != nil {
		return nil, err
	}
	out := s.Outputs()[0].Name
	best, err := bestOf(2, 5, 4, func() error {
		_, err := s.Run(feeds, []string{out})
		return err
	})
	if err != nil {
		return nil, err
	}
	n := 4 * batch * seqLen
	r := &ForwardResult{Tokens: n, Seconds: best, TokensPerSecond: float64(n) / best}
	if past > 0 {
		if err := decode(s, rng, past, r); err != nil {
			return nil, fmt.Errorf("decode: %w", err)
		}
	}
	return r, nil
}

// decodeSteps is the number of decode steps in one timed run.
const decodeSteps = 32

// decode times generation's steady state: one row, a cache of past tokens made by a prefill of
// past random ids, then steps of one new token that attend to it (input_ids [1, 1],
// attention_mask [1, past + 1], the cache fed back), fetching the logits and the presents as
// generate does. Every step sees the same cache (the cost of a step at past length past):
// three warm-up steps, then the best of five runs of decodeSteps steps. A model without a KV
// cache is skipped (DecodePast stays 0).
func decode(s *runtime.Session, rng *rand.Rand, past int, r *ForwardResult) error {
	it, err := lm.FromIO(runtime.LMIO(s.Inputs()), runtime.LMIO(s.Outputs()))
	if err != nil {
		return err
	}
	if !it.HasPast() || it.Presents != it.Layers {
		return nil
	}
	prompt := make([]int, past)
	for i := range prompt {
		prompt[i] = rng.IntN(256)
	}
	feeds, fetch, err := decodeStep(s, it, prompt, rng.IntN(256))
	if err != nil {
		return err
	}
	best, err := bestOf(3, 5, decodeSteps, func() error {
		_, err := s.Run(feeds, fetch)
		return err
	})
	if err != nil {
		return err
	}
	r.DecodePast, r.DecodeSteps, r.DecodeSeconds, r.DecodeTokensPerSecond = past, decodeSteps, best, decodeSteps/best
	return nil
}

// decodeStep makes the feeds of one decode step: the cache of prompt (a prefill with an empty
// past) and the new token next after it; fetch is the logits and the presents.
func decodeStep(s *runtime.Session, it *lm.Interface, prompt []int, next int) (feeds map[string]*runtime.Tensor, fetch []string, err error) {
	fetch = []string{lm.Logits}
	for i := 0; i < it.Layers; i++ {
		fetch = append(fetch, lm.Present(i, lm.Key), lm.Present(i, lm.Value))
	}
	pf, err := lmFeeds(it, lm.Batch{IDs: [][]int{prompt}})
	if err != nil {
		return nil, nil, err
	}
	cache, err := s.Run(pf, fetch)
	if err != nil {
		return nil, nil, err
	}
	mask := make([]int64, len(prompt))
	for i := range mask {
		mask[i] = 1
	}
	if feeds, err = lmFeeds(it, lm.Batch{IDs: [][]int{{next}}, PastMask: [][]int64{mask}}); err != nil {
		return nil, nil, err
	}
	for i := 0; i < it.Layers; i++ {
		for _, k := range []lm.Kind{lm.Key, lm.Value} {
			feeds[lm.Past(i, k)] = cache[lm.Present(i, k)]
		}
	}
	return feeds, fetch, nil
}

// lmFeeds is it.Feeds as session tensors.
func lmFeeds(it *lm.Interface, b lm.Batch) (map[string]*runtime.Tensor, error) {
	lf, err := it.Feeds(b)
	if err != nil {
		return nil, err
	}
	out := map[string]*runtime.Tensor{}
	for name, t := range lf {
		if out[name], err = runtime.LMTensor(t); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// bestOf runs f warm times, then reps timed runs of n calls each, and returns the fastest
// run's seconds.
func bestOf(warm, reps, n int, f func() error) (float64, error) {
	for i := 0; i < warm; i++ {
		if err := f(); err != nil {
			return 0, err
		}
	}
	best := 0.0
	for rep := 0; rep < reps; rep++ {
		t0 := time.Now()
		for i := 0; i < n; i++ {
			if err := f(); err != nil {
				return 0, err
			}
		}
		if d := time.Since(t0).Seconds(); best == 0 || d < best {
			best = d
		}
	}
	return best, nil
}

// quantize1B quantizes the 1B synthetic LLaMA to int4 (RTN) and measures peak RSS against its
// size: the weights stream layer by layer, only the packed result stays.
func quantize1B(ctx context.Context, h *harness) (*Result, error) {
	model, size, err := h.model1B()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(h.Work, "quantize")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	out := filepath.Join(dir, "llama-1b-int4.onnx")
	defer func() {
		os.Remove(out)
		os.Remove(out + ".data")
	}()
	r := &Result{Header: []string{"command", "load", "quantize", "save", "wall", "peak RSS", "RSS / model size", "output size"},
		Figures: map[string]float64{"model_bytes": float64(size)}}
	m, err := h.shears(ctx, r, "quantize", model, "-o", out, "--bits", "4", "--json")
	if err != nil {
		return nil, err
	}
	var rep struct {
		Seconds map[string]float64 `json:"seconds"`
		Layers  []any              `json:"layers"`
		Ratio   float64            `json:"ratio"`
	}
	if err := json.Unmarshal(m.Stdout, &rep); err != nil {
		return nil, fmt.Errorf("quantize --json output: %w", err)
	}
	ratio := float64(m.PeakRSS) / float64(size)
	osize := fileBytes(out)
	r.Rows = append(r.Rows, []string{"`quantize MODEL --bits 4`", secs(rep.Seconds["load"]), secs(rep.Seconds["quantize"]), secs(rep.Seconds["save"]),
		secs(m.Seconds), gb(m.PeakRSS), fmt.Sprintf("%.2f", ratio), gb(osize)})
	r.Figures["wall_seconds"] = m.Seconds
	r.Figures["peak_rss_bytes"] = float64(m.PeakRSS)
	r.Figures["rss_over_model"] = ratio
	r.Figures["output_bytes"] = float64(osize)
	verdict := "met"
	if ratio >= quantizeGoal {
		verdict = "NOT met"
	}
	r.Notes = append(r.Notes, fmt.Sprintf("%d linears → MatMulNBits int4 block 32 (linears' bytes %.3f× float32; embeddings and LM head stay float32); goal peak RSS < %.1f × model size (%s): %s (%.2f×)",
		len(rep.Layers), rep.Ratio, quantizeGoal, gb(int64(quantizeGoal*float64(size))), verdict, ratio))
	return r, nil
}
