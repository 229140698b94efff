package deploy

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/transform/layers"
	"github.com/shears-ml/shears/transform/lora"
	"github.com/shears-ml/shears/transform/merge"
)

// Card is what the model card says beyond what the model itself records (its config, merge
// record, adapter ranks and sparsity are read from the graph).
type Card struct {
	Base     string    // the base model (a checkpoint, a file or a name) when the model records no source folder
	Commands []string  // the commands that made the model, in order
	Eval     []EvalRow // the run's evaluation table, if any
}

// EvalRow is one evaluation figure.
type EvalRow struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Note  string  `json:"note,omitempty"`
}

// adapterRecord is what the model records of its adapter: the merge mode and the ranks per
// group (from merge's export record, or an unmerged export's fixed ranks).
type adapterRecord struct {
	Mode  string
	Ranks map[string]int
	Exact bool
	Scale float64
}

func readAdapter(m *onnx.Model) *adapterRecord {
	for _, p := range m.Proto.GetMetadataProps() {
		if p.GetKey() != merge.MetaKey {
			continue
		}
		var r struct {
			Mode  string         `json:"mode"`
			Ranks map[string]int `json:"ranks"`
			Exact bool           `json:"exact"`
			Scale float64        `json:"scale"`
		}
		if json.Unmarshal([]byte(p.GetValue()), &r) == nil {
			return &adapterRecord{Mode: r.Mode, Ranks: r.Ranks, Exact: r.Exact, Scale: r.Scale}
		}
	}
	if meta, err := lora.ReadConfig(m); err == nil {
		if len(meta.Fixed) > 0 {
			return &adapterRecord{Mode: string(merge.None), Ranks: meta.Fixed, Exact: true, Scale: meta.Scale}
		}
		return &adapterRecord{Mode: "super-network (rank-mask inputs)", Scale: meta.Scale}
	}
	return nil
}

// roleSparsity is the zero fraction of the linears of one kind.
type roleSparsity struct {
	Role          string
	Layers        int
	Zeros, Values int64
}

// sparsityByRole counts the zeros of every linear layer's weight, by role (the LM head apart).
func sparsityByRole(m *onnx.Model) ([]roleSparsity, error) {
	ls, err := layers.Find(m)
	if err != nil {
		return nil, err
	}
	by := map[string]*roleSparsity{}
	var order []string
	for _, l := range ls {
		role := l.Role
		if l.Head {
			role = "lm_head"
		}
		z, n, err := layers.CountZeros(m, l)
		if err != nil {
			return nil, err
		}
		r := by[role]
		if r == nil {
			r = &roleSparsity{Role: role}
			by[role] = r
			order = append(order, role)
		}
		r.Layers++
		r.Zeros += z
		r.Values += n
	}
	out := make([]roleSparsity, len(order))
	for i, k := range order {
		out[i] = *by[k]
	}
	return out, nil
}

// cardMarkdown renders README.md.
func cardMarkdown(name string, f *Facts, c Card, adapter *adapterRecord, sp []roleSparsity, dtype, tokenizer string, genai, hf bool) string {
	var b strings.Builder
	base := f.SourceDir // the checkpoint an import read is the true base
	if base == "" {
		base = c.Base
	}
	fmt.Fprintf(&b, "---\nlibrary_name: transformers.js\ntags: [shears, onnx, sparse, lora]\n")
	if base != "" {
		fmt.Fprintf(&b, "base_model: %q\n", base)
	}
	fmt.Fprintf(&b, "---\n\n# %s\n\n", name)
	// Say what this model is, not what the toolkit can do: sparsity and adapter only when present.
	var zeros, values int64
	for _, r := range sp {
		if r.Role != "lm_head" {
			zeros, values = zeros+r.Zeros, values+r.Values
		}
	}
	b.WriteString("Written by shears ([Shears](https://arxiv.org/abs/2404.10934): a sparse base with elastic low-rank adapters).")
	if values > 0 && zeros > 0 {
		fmt.Fprintf(&b, " %.1f%% of the decoder blocks' linear weights are zero.", 100*float64(zeros)/float64(values))
	} else {
		b.WriteString(" The weights are dense.")
	}
	if adapter != nil {
		b.WriteString(" It carries a low-rank adapter: the merge mode and ranks are below.")
	}
	b.WriteString("\n\n")
	b.WriteString("| | |\n| --- | --- |\n")
	row := func(k, v string) { fmt.Fprintf(&b, "| %s | %s |\n", k, v) }
	if base != "" {
		row("base", "`"+base+"`")
	}
	row("architecture", fmt.Sprintf("%s: %d layers, hidden %d, %d heads (%d key/value), head size %d, vocabulary %d, context %d",
		f.ModelType(), f.Layers(), f.Hidden(), f.Heads(), f.KVHeads(), f.HeadSize(), f.Vocab(), f.Context()))
	row("weights", dtype)
	switch {
	case adapter == nil:
		row("adapter", "none")
	default:
		mode := adapter.Mode
		switch mode {
		case string(merge.None):
			mode = "none: sparse base + the sliced adapter (unmerged)"
		case string(merge.Dense):
			mode = "dense: W + s·A·B (fills the base's zeros)"
		case string(merge.Sparse):
			mode = "sparse: W + (W ≠ 0) ⊙ s·A·B (keeps every zero)"
		}
		row("merge", mode)
		if len(adapter.Ranks) > 0 {
			row("sub-adapter ranks", rankSummary(adapter.Ranks))
		}
		if adapter.Scale != 0 {
			row("adapter scale", fmt.Sprintf("%g", adapter.Scale))
		}
	}
	row("tokenizer", tokenizer)
	if len(sp) > 0 {
		b.WriteString("\n## Sparsity per layer kind\n\n| kind | layers | sparsity |\n| --- | ---: | ---: |\n")
		for _, r := range sp {
			fmt.Fprintf(&b, "| %s | %d | %.2f%% |\n", r.Role, r.Layers, 100*float64(r.Zeros)/float64(max(r.Values, 1)))
		}
	}
	if len(adapter.groups()) > 0 {
		b.WriteString("\n## Ranks per group\n\n| group | rank |\n| --- | ---: |\n")
		for _, g := range adapter.groups() {
			fmt.Fprintf(&b, "| %s | %d |\n", g, adapter.Ranks[g])
		}
	}
	b.WriteString("\n## Evaluation\n\n")
	if len(c.Eval) == 0 {
		b.WriteString("No evaluation was recorded with this model.\n")
	} else {
		b.WriteString("| metric | value | note |\n| --- | ---: | --- |\n")
		for _, e := range c.Eval {
			fmt.Fprintf(&b, "| %s | %.4g | %s |\n", e.Name, e.Value, e.Note)
		}
	}
	if len(c.Commands) > 0 {
		b.WriteString("\n## How it was made\n\n```sh\n")
		for _, cmd := range c.Commands {
			b.WriteString(cmd + "\n")
		}
		b.WriteString("```\n")
	}
	if hf {
		b.WriteString("\n## Files\n\nA Hugging Face checkpoint: `model.safetensors` (or shards with `model.safetensors.index.json`), " +
			"weights merged, in [out, in] layout under the checkpoint's names, with `config.json` and the tokenizer.\n\n" +
			"```python\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n" +
			"model = AutoModelForCausalLM.from_pretrained(\"" + name + "\")\n```\n")
		return b.String()
	}
	b.WriteString("\n## Files and serving\n\n`onnx/model.onnx` (+ `onnx/model.onnx_data` when the weights are external) has optimum's " +
		"causal-LM interface; `config.json`, `generation_config.json` and the tokenizer sit at the top")
	if genai {
		b.WriteString(", with `genai_config.json` for onnxruntime GenAI")
	}
	b.WriteString(".\n\n```js\n// transformers.js, from local files\nimport { env, pipeline } from '@huggingface/transformers';\n" +
		"env.allowRemoteModels = false; env.localModelPath = '/path/to/parent/';\n" +
		"const generate = await pipeline('text-generation', '" + name + "');\n" +
		"console.log(await generate('Once upon a time', { max_new_tokens: 50, do_sample: false }));\n```\n")
	return b.String()
}

func (a *adapterRecord) groups() []string {
	if a == nil {
		return nil
	}
	var g []string
	for k := range a.Ranks {
		g = append(g, k)
	}
	sort.Strings(g)
	return g
}

// rankSummary says how many groups sit at each rank, highest first.
func rankSummary(ranks map[string]int) string {
	count := map[int]int{}
	for _, r := range ranks {
		count[r]++
	}
	var rs []int
	for r := range count {
		rs = append(rs, r)
	}
	sort.Sort(sort.Reverse(sort.IntSlice(rs)))
	var parts []string
	for _, r := range rs {
		parts = append(parts, fmt.Sprintf("r=%d × %d groups", r, count[r]))
	}
	return strings.Join(parts, ", ")
}

// withHistory lists the commands the model records (which end with the one writing the
// folder), then any of the card's own commands not among them.
func withHistory(c Card, m *onnx.Model) Card {
	hist := ReadHistory(m)
	for _, cmd := range c.Commands {
		if !slices.Contains(hist, cmd) {
			hist = append(hist, cmd)
		}
	}
	c.Commands = hist
	return c
}
