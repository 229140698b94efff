package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"

	"github.com/shears-ml/shears/models/llama"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
)

// gen25M is the ~25M-parameter LLaMA of issue 11's speed check: hidden 512, 8 layers, 8 heads,
// 4 kv heads (random weights; vocabulary 6144 keeps the total near 25M).
var gen25M = llama.Config{Dim: 512, HiddenDim: 1024, Layers: 8, Heads: 8, KVHeads: 4, Vocab: 6144, MaxSeq: 512, NormEps: 1e-5, RopeTheta: 10000}

// cacheGoal is how much faster generation with the KV cache must be than without (whole
// processes, model load included).
const cacheGoal = 5.0

// genNew is the number of tokens generate-25m makes from a one-token prompt.
const genNew = 200

// model25M writes the generation benchmark's model into the work folder (reused when there).
func (h *harness) model25M() (string, error) {
	p := filepath.Join(h.Work, "gen25m", "model.onnx")
	if m, err := onnx.Load(p); err == nil {
		m.Close()
		h.logf("reusing %s", p)
		return p, nil
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return "", err
	}
	h.logf("writing the 25M generation model to %s ...", p)
	return p, llama.WriteSynthetic(p, gen25M, 0, onnxpb.TensorProto_FLOAT)
}

// generate25M times shears generate with the KV cache against --no-cache on the 25M model,
// 200 new tokens from a one-token prompt, whole processes.
func generate25M(ctx context.Context, h *harness) (*Result, error) {
	model, err := h.model25M()
	if err != nil {
		return nil, err
	}
	r := &Result{Header: []string{"generate", "process wall", "generation only", "tokens/s (generation)", "peak RSS", "wall / cached"},
		Figures: map[string]float64{"params": float64(gen25M.Params()), "new_tokens": genNew}}
	type run struct {
		IDs          []int   `json:"ids"`
		Caching      string  `json:"caching"`
		Seconds      float64 `json:"seconds"`
		TokensPerSec float64 `json:"tokens_per_second"`
	}
	var ids [][]int
	var walls []float64
	for _, v := range []struct{ key, label string }{{"cached", "with the KV cache"}, {"recompute", "--no-cache (whole sequence every token)"}} {
		args := []string{"generate", model, "--prompt-ids", "1", "--max-tokens", fmt.Sprint(genNew), "--ignore-eos", "--json"}
		if v.key == "recompute" {
			args = append(args, "--no-cache")
		}
		m, err := h.shears(ctx, r, append(args, h.rtArgs()...)...)
		if err != nil {
			return nil, err
		}
		var out run
		if err := json.Unmarshal(m.Stdout, &out); err != nil {
			return nil, fmt.Errorf("generate --json output: %w", err)
		}
		if len(out.IDs) != genNew {
			return nil, fmt.Errorf("generate made %d tokens, want %d", len(out.IDs), genNew)
		}
		ids = append(ids, out.IDs)
		walls = append(walls, m.Seconds)
		r.Figures[v.key+"_wall_seconds"] = m.Seconds
		r.Figures[v.key+"_generation_seconds"] = out.Seconds
		r.Figures[v.key+"_peak_rss_bytes"] = float64(m.PeakRSS)
		r.Rows = append(r.Rows, []string{v.label + " (" + out.Caching + ")", secs(m.Seconds), secs(out.Seconds),
			fmt.Sprintf("%.1f", out.TokensPerSec), mb(m.PeakRSS), fmt.Sprintf("%.2f", m.Seconds/walls[0])})
	}
	ratio := walls[1] / walls[0]
	r.Figures["speedup_wall"] = ratio
	r.Figures["speedup_generation"] = r.Figures["recompute_generation_seconds"] / r.Figures["cached_generation_seconds"]
	verdict := "met"
	if !(ratio >= cacheGoal) {
		verdict = "NOT met"
	}
	same := "identical"
	if !reflect.DeepEqual(ids[0], ids[1]) {
		same = "DIFFERENT (a bug)"
	}
	r.Notes = append(r.Notes,
		fmt.Sprintf("model: random LLaMA, %.1fM params (hidden %d, intermediate %d, %d layers, %d heads, %d kv heads, vocab %d), fp32, opset 17 with-past interface; written by the scenario into --work",
			float64(gen25M.Params())/1e6, gen25M.Dim, gen25M.HiddenDim, gen25M.Layers, gen25M.Heads, gen25M.KVHeads, gen25M.Vocab),
		fmt.Sprintf("goal: with the cache ≥ %.0f× faster than without, whole processes (load included): %s (%.2f×; generation alone %.2f×)", cacheGoal, verdict, ratio, r.Figures["speedup_generation"]),
		fmt.Sprintf("greedy ids of the two runs: %s", same))
	return r, nil
}

// genGSM8K times eval --task gen on gsm8k test items with stories260K, greedy (100 items) and
// with 4 beams (5 items), each with the KV cache and without (--no-cache), in one run; the
// predictions must agree.
func genGSM8K(ctx context.Context, h *harness) (*Result, error) {
	in, err := h.shared(stories260K, tok512, gsm8kTest)
	if err != nil {
		return nil, err
	}
	ckpt, tok, data := in[0], in[1], in[2]
	dir := filepath.Join(h.Work, "stories")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	r := &Result{Header: []string{"eval --task gen", "wall", "new tokens", "tokens/s", "accuracy"}, Figures: map[string]float64{}}
	model := filepath.Join(dir, "stories260K.onnx")
	if _, err := h.shears(ctx, r, "import", "llama2c", ckpt, "-o", model); err != nil {
		return nil, err
	}
	type summary struct {
		Items     int     `json:"items"`
		Correct   int     `json:"correct"`
		Accuracy  float64 `json:"accuracy"`
		NewTokens int     `json:"new_tokens"`
		Seconds   float64 `json:"seconds"`
		Caching   string  `json:"caching"`
	}
	// 100 items greedy; recomputing 4 beams costs about 4× that per item, so they get 5.
	limits := map[string]string{"1": "100", "4": "5"}
	agree := "the same"
	for _, beams := range []string{"1", "4"} {
		var sums []summary
		for _, key := range []string{"cached", "recompute"} {
			args := []string{"eval", model, "--task", "gen", "--data", data, "--tokenizer", tok, "--limit", limits[beams], "--beams", beams, "--json"}
			if key == "recompute" {
				args = append(args, "--no-cache")
			}
			m, err := h.shears(ctx, r, append(args, h.rtArgs()...)...)
			if err != nil {
				return nil, err
			}
			var s summary
			if err := json.Unmarshal(m.Stdout, &s); err != nil {
				return nil, fmt.Errorf("eval --json output: %w", err)
			}
			sums = append(sums, s)
			k := "beams" + beams + "_" + key
			r.Figures[k+"_wall_seconds"] = m.Seconds
			r.Figures[k+"_eval_seconds"] = s.Seconds
			r.Figures[k+"_new_tokens"] = float64(s.NewTokens)
			r.Rows = append(r.Rows, []string{fmt.Sprintf("--beams %s, %d items, %s", beams, s.Items, s.Caching), secs(m.Seconds), fmt.Sprint(s.NewTokens),
				fmt.Sprintf("%.0f", float64(s.NewTokens)/s.Seconds), fmt.Sprintf("%.2f (%d/%d)", s.Accuracy, s.Correct, s.Items)})
		}
		k := "beams" + beams
		r.Figures[k+"_speedup"] = r.Figures[k+"_recompute_wall_seconds"] / r.Figures[k+"_cached_wall_seconds"]
		if sums[0].NewTokens != sums[1].NewTokens || sums[0].Correct != sums[1].Correct {
			agree = "DIFFERENT (a bug)"
		}
	}
	r.Notes = append(r.Notes,
		fmt.Sprintf("stories260K (llama2.c import, with-past interface) on gsm8k-test.json (first 100 items greedy, first 5 with 4 beams: the reference's setting, eval's default), 256 new tokens at most, context 512 (prompts truncated to fit); with the cache %.2f× faster greedy, %.2f× with 4 beams (whole processes)", r.Figures["beams1_speedup"], r.Figures["beams4_speedup"]),
		fmt.Sprintf("new tokens and correct answers with and without the cache: %s (a 260K-parameter story model cannot do arithmetic: accuracy is not the point)", agree))
	return r, nil
}
