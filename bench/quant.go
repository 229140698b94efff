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
	"github.com/shears-ml/shears/models/llama"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/runtime"
)

// quantizeGoal is quantize-1b's peak RSS limit as a multiple of the model's size on disk.
const quantizeGoal = 1.5

// quantCompare puts fp32 dense, fp32 50% sparse and the int8 / int4 sparse MatMulNBits models
// side by side, for stories260K and the 25M random LLaMA, in one run: file size, onnxruntime CPU
// forward tokens/s and held-out perplexity.
func quantCompare(ctx context.Context, h *harness) (*Result, error) {
	in, err := h.shared(stories260K, tok512, arcTrain, arcTest)
	if err != nil {
		return nil, err
	}
	ckpt, tok, calib, held := in[0], in[1], in[2], in[3]
	dir := filepath.Join(h.Work, "quant")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	r := &Result{Header: []string{"model", "variant", "file size", "× fp32 dense", "forward tokens/s", "× fp32 dense", "held-out ppl", "× fp32 sparse"},
		Figures: map[string]float64{}}
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
	for _, base := range []struct {
		name, path string
		limit      int // held-out prompts: the 25M model's forward costs ~100× stories260K's
	}{{"stories260K", stories, 300}, {"25M random", m25, 40}} {
		stem := filepath.Join(dir, filepath.Base(base.path[:len(base.path)-len(".onnx")]))
		sparse := stem + "-w50.onnx"
		if _, err := h.shears(ctx, r, append(append([]string{"prune", base.path, "-o", sparse, "--sparsity", "0.5"}, calibArgs...), h.rtArgs()...)...); err != nil {
			return nil, err
		}
		variants := []struct{ name, path string }{{"fp32 dense", base.path}, {"fp32 50% sparse (Wanda)", sparse}}
		for _, q := range []struct {
			name string
			args []string
		}{
			{"int8 sparse (RTN)", []string{"--bits", "8"}},
			{"int4 sparse (RTN)", []string{"--bits", "4"}},
			{"int4 sparse (GPTQ)", append([]string{"--bits", "4", "--method", "gptq"}, calibArgs...)},
		} {
			out := fmt.Sprintf("%s-w50-%s.onnx", stem, map[string]string{"int8 sparse (RTN)": "int8", "int4 sparse (RTN)": "int4-rtn", "int4 sparse (GPTQ)": "int4-gptq"}[q.name])
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
		var denseSize, denseTPS, sparsePPL float64
		for i, v := range variants {
			size := fileBytes(v.path)
			tps, err := h.forward(ctx, r, v.path)
			if err != nil {
				return nil, err
			}
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
			if i == 0 {
				denseSize, denseTPS = float64(size), tps
			}
			if i == 1 {
				sparsePPL = p.PPL
			}
			pplRatio := "-"
			if i >= 1 {
				pplRatio = fmt.Sprintf("%.3f", p.PPL/sparsePPL)
			}
			key := base.name + " " + v.name
			r.Figures[key+" bytes"] = float64(size)
			r.Figures[key+" tokens_per_s"] = tps
			r.Figures[key+" ppl"] = p.PPL
			r.Rows = append(r.Rows, []string{base.name, v.name, fmt.Sprintf("%.2f MB", float64(size)/1e6), fmt.Sprintf("%.3f", float64(size)/denseSize),
				fmt.Sprintf("%.0f", tps), fmt.Sprintf("%.2f", tps/denseTPS), fmt.Sprintf("%.3f", p.PPL), pplRatio})
		}
	}
	r.Notes = append(r.Notes,
		"quantized: every linear inside the decoder blocks (35 for stories260K, 42 for the 25M), block 32, asymmetric (zero points), LM head and embeddings float32; GPTQ and Wanda calibrate on 64 × 256 tokens of ARC-Easy-train.json (seed 0), damping 0.01",
		"held-out: the first 300 (stories260K) or 40 (25M) ARC-Easy-test.json prompts, 256-token windows; the 25M model is random, so its perplexity only shows how far each variant moves from its own float model",
		"forward tokens/s: one onnxruntime CPU session per model (bench --forward-child), batch 4 × 128 tokens, 2 warm-up runs then the best of 5 timed runs of 4 forwards; the machine is shared by other engineers' jobs, so absolute rates are noisy, ratios within this run less so")
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

// forward measures the model's onnxruntime CPU forward throughput in a child process.
func (h *harness) forward(ctx context.Context, r *Result, model string) (float64, error) {
	args := append([]string{"bench", "--forward-child", model}, h.rtArgs()...)
	m, err := h.shears(ctx, r, args...)
	if err != nil {
		return 0, err
	}
	var f ForwardResult
	if err := json.Unmarshal(m.Stdout, &f); err != nil {
		return 0, fmt.Errorf("forward child output: %w", err)
	}
	return f.TokensPerSecond, nil
}

// ForwardResult is what Forward measured.
type ForwardResult struct {
	Tokens          int     `json:"tokens"`
	Seconds         float64 `json:"seconds"`
	TokensPerSecond float64 `json:"tokens_per_second"`
}

// Forward is the measured work of the forward child: one session on model, batch × seqLen
// random ids below 256, two warm-up forwards, then the best of five timed runs of four
// forwards each.
func Forward(model string, o runtime.Options, batch, seqLen int) (*ForwardResult, error) {
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
	for i := 0; i < 2; i++ {
		if _, err := s.Run(feeds, []string{out}); err != nil {
			return nil, err
		}
	}
	best := 0.0
	for rep := 0; rep < 5; rep++ {
		t0 := time.Now()
		for i := 0; i < 4; i++ {
			if _, err := s.Run(feeds, []string{out}); err != nil {
				return nil, err
			}
		}
		if d := time.Since(t0).Seconds(); best == 0 || d < best {
			best = d
		}
	}
	n := 4 * batch * seqLen
	return &ForwardResult{Tokens: n, Seconds: best, TokensPerSecond: float64(n) / best}, nil
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
