package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"

	"github.com/shears-ml/shears/deploy"
	"github.com/shears-ml/shears/onnx"
)

// serveGoal is how much slower than transformers.js "shears generate" may be on the same
// model folder (whole processes, model load included).
const serveGoal = 1.2

// serveReps is how many times each client runs; the median is kept (the machine is shared).
const serveReps = 3

// serveClient is one measured process of serve-25m.
type serveClient struct {
	key, label string
	node       bool // transformers.js through scripts/transformersjs/generate.mjs
	args       []string
}

// serve25M times "shears generate" (with the KV cache) against transformers.js on the same
// model folder: the 25M random LLaMA of generate-25m, 200 new tokens from a one-token prompt,
// greedy, whole processes (process start and model load included), the clients alternating.
// Each side runs with its defaults and with the other's session settings: shears pre-packs the
// weights for generation and turns onnxruntime's thread spinning off; onnxruntime-node spins.
func serve25M(ctx context.Context, h *harness) (*Result, error) {
	if h.Repo == "" {
		return nil, fmt.Errorf("no repository folder (scripts/transformersjs and .cache/transformers-js live there)")
	}
	tjs := filepath.Join(h.Repo, ".cache", "transformers-js")
	if _, err := os.Stat(filepath.Join(tjs, "node_modules", "@huggingface", "transformers")); err != nil {
		return nil, fmt.Errorf("transformers.js is not installed in %s (run scripts/fetch-transformersjs.sh)", tjs)
	}
	script := filepath.Join(h.Repo, "scripts", "transformersjs", "generate.mjs")
	model, err := h.model25M()
	if err != nil {
		return nil, err
	}
	folder := filepath.Join(h.Work, "serve-25m")
	m, err := onnx.Load(model)
	if err != nil {
		return nil, err
	}
	_, err = deploy.WriteFolder(m, onnx.SaveOptions{}, folder, true, deploy.Options{Source: model, Warn: func(s string) { h.logf("folder: %s", s) }})
	m.Close()
	if err != nil {
		return nil, err
	}
	gen := append([]string{"generate", folder, "--prompt-ids", "1", "--max-tokens", fmt.Sprint(genNew), "--ignore-eos", "--json"}, h.rtArgs()...)
	node := func(spin string) []string {
		return []string{script, tjs, folder, "ids:1", fmt.Sprint(genNew), "ignore-eos", fmt.Sprint(h.Threads), spin}
	}
	clients := []serveClient{
		{"shears", "`shears generate DIR` (KV cache; defaults: pre-packed weights, no spinning)", false, gen},
		{"shears_noprepack", "`shears generate DIR --prepack=false`", false, append(append([]string{}, gen...), "--prepack=false")},
		{"tjs_nospin", "transformers.js, spinning off (shears' thread setting)", true, node("nospin")},
		{"tjs", "transformers.js, onnxruntime-node defaults (spinning on)", true, node("spin")},
	}
	r := &Result{Header: []string{"client", "process wall (median)", "runs", "generation only", "load", "wall / shears"},
		Figures: map[string]float64{"new_tokens": genNew, "reps": serveReps}}
	for _, c := range clients {
		name := "shears"
		if c.node {
			name = "node"
		}
		r.Commands = append(r.Commands, commandLine(name, c.args))
	}
	type out struct {
		IDs        []int   `json:"ids"`
		Seconds    float64 `json:"seconds"`     // shears: generation only
		LoadMS     float64 `json:"load_ms"`     // transformers.js
		GenerateMS float64 `json:"generate_ms"` // transformers.js
	}
	walls := map[string][]float64{}
	gens := map[string][]float64{}
	loads := map[string][]float64{}
	ids := map[string][]int{}
	for i := 0; i < serveReps; i++ {
		for _, c := range clients {
			var ms Measurement
			if c.node {
				h.logf("$ %s", commandLine("node", c.args))
				ms, err = Measure(ctx, h.Log, "node", c.args...)
			} else {
				h.logf("$ %s", commandLine("shears", c.args))
				ms, err = Measure(ctx, h.Log, h.Bin, c.args...)
			}
			if err != nil {
				return nil, err
			}
			var o out
			if err := json.Unmarshal(ms.Stdout, &o); err != nil {
				return nil, fmt.Errorf("%s output: %w", c.key, err)
			}
			if len(o.IDs) != genNew {
				return nil, fmt.Errorf("%s made %d tokens, want %d", c.key, len(o.IDs), genNew)
			}
			ids[c.key] = o.IDs
			walls[c.key] = append(walls[c.key], ms.Seconds)
			if c.node {
				gens[c.key] = append(gens[c.key], o.GenerateMS/1000)
				loads[c.key] = append(loads[c.key], o.LoadMS/1000)
			} else {
				gens[c.key] = append(gens[c.key], o.Seconds)
			}
		}
	}
	med := func(v []float64) float64 {
		if len(v) == 0 {
			return 0
		}
		s := append([]float64(nil), v...)
		sort.Float64s(s)
		return s[len(s)/2]
	}
	base := med(walls["shears"])
	for _, c := range clients {
		w := med(walls[c.key])
		var runs []string
		for _, x := range walls[c.key] {
			runs = append(runs, fmt.Sprintf("%.2f", x))
		}
		load := "—"
		if c.node {
			load = secs(med(loads[c.key]))
		}
		r.Rows = append(r.Rows, []string{c.label, secs(w), strings.Join(runs, ", "), secs(med(gens[c.key])), load, fmt.Sprintf("%.2f", w/base)})
		r.Figures[c.key+"_wall_seconds"] = w
		r.Figures[c.key+"_generation_seconds"] = med(gens[c.key])
	}
	verdict := func(tjsKey string) string {
		ratio := base / med(walls[tjsKey])
		r.Figures["ratio_vs_"+tjsKey] = ratio
		v := "met"
		if !(ratio <= serveGoal) {
			v = "NOT met"
		}
		return fmt.Sprintf("%s (%.2f×)", v, ratio)
	}
	same := "identical"
	for _, c := range clients[1:] {
		if !reflect.DeepEqual(ids[c.key], ids["shears"]) {
			same = "different for " + c.key + " (near-tied logits of a random model may flip between onnxruntime builds; the make-test agreements use trained and seeded models)"
		}
	}
	threadNote := "onnxruntime's default thread count"
	if h.Threads > 0 {
		threadNote = fmt.Sprintf("%d intra-op threads", h.Threads)
	}
	r.Notes = append(r.Notes,
		fmt.Sprintf("one model folder (written by deploy.WriteFolder from generate-25m's %.1fM-parameter random LLaMA), %d new tokens from the prompt [1], greedy, EOS ignored; %s in every client; median of %d alternating runs; transformers.js 4.3.2 on onnxruntime-node 1.30, shears on onnxruntime 1.24",
			float64(gen25M.Params())/1e6, genNew, threadNote, serveReps),
		fmt.Sprintf("goal: shears (defaults) ≤ %.1f× transformers.js's wall time: against transformers.js with shears' thread setting %s; against its defaults %s",
			serveGoal, verdict("tjs_nospin"), verdict("tjs")),
		fmt.Sprintf("greedy ids of the clients: %s", same))
	return r, nil
}
