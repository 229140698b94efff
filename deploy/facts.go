package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/shears-ml/shears/onnx"
)

// Metadata keys other packages write and this one reads.
const (
	// HFConfigKey holds config.json's text verbatim (written by "shears import hf").
	HFConfigKey = "hf:config"
	// SourceDirKey names the checkpoint folder an import read (tokenizer and generation
	// config live there).
	SourceDirKey = "shears:source_dir"
)

// family is what deploy knows about one model_type: the architecture class name, the
// onnxruntime GenAI model type, and which config keys hold the sizes GenAI and the KV cache
// need (families spell them differently).
type family struct {
	arch, genai                                 string
	hidden, heads, kvHeads, layers, vocab, ctxt string
	// extra are written into a config.json built from facts when absent (the family's fixed
	// choices that transformers would otherwise default differently).
	extra map[string]any
	// conv1D: the checkpoint stores block linears as Conv1D, [in, out] (GPT-2), not [out, in].
	conv1D bool
}

// families is the one registry of model types deploy writes configs for.
var families = map[string]family{
	"llama":   llamaLike("LlamaForCausalLM", "llama", map[string]any{"hidden_act": "silu", "attention_bias": false, "mlp_bias": false}),
	"mistral": llamaLike("MistralForCausalLM", "mistral", map[string]any{"hidden_act": "silu"}),
	"qwen2":   llamaLike("Qwen2ForCausalLM", "qwen2", map[string]any{"hidden_act": "silu"}),
	"phi3":    llamaLike("Phi3ForCausalLM", "phi3", map[string]any{"hidden_act": "silu"}),
	"gemma":   llamaLike("GemmaForCausalLM", "gemma", map[string]any{"hidden_act": "gelu_pytorch_tanh"}),
	"gpt2": {arch: "GPT2LMHeadModel", genai: "gpt2", hidden: "n_embd", heads: "n_head", kvHeads: "n_head",
		layers: "n_layer", vocab: "vocab_size", ctxt: "n_positions", extra: map[string]any{"activation_function": "gelu_new"}, conv1D: true},
}

func llamaLike(arch, genai string, extra map[string]any) family {
	return family{arch: arch, genai: genai, hidden: "hidden_size", heads: "num_attention_heads", kvHeads: "num_key_value_heads",
		layers: "num_hidden_layers", vocab: "vocab_size", ctxt: "max_position_embeddings", extra: extra}
}

// required lists the keys a family's config.json cannot be written without.
func (f family) required() []string {
	keys := []string{f.hidden, f.heads, f.layers, f.vocab, f.ctxt}
	if f.kvHeads != f.heads {
		keys = append(keys, f.kvHeads)
	}
	if f.genai != "gpt2" {
		keys = append(keys, "intermediate_size", "rms_norm_eps", "rope_theta")
	}
	return keys
}

func familyNames() []string {
	var n []string
	for k := range families {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

// Facts are a model's Hugging Face config: config.json's keys and values, read from the
// verbatim hf:config metadata when an HF import recorded it, else from the metadata_props the
// model builders write under config.json's names.
type Facts struct {
	Config map[string]any
	// Verbatim is hf:config's text (nil for facts from metadata_props); config.json carries it.
	Verbatim []byte
	// SourceDir is the checkpoint folder recorded by an import ("" when none).
	SourceDir string
	fam       family
}

// ReadFacts reads the model's config facts. A model without them, or without some a
// config.json needs, is an error that names what is missing.
func ReadFacts(m *onnx.Model) (*Facts, error) {
	name := m.Path
	f := &Facts{Config: map[string]any{}}
	var have []string
	for _, p := range m.Proto.GetMetadataProps() {
		k, v := p.GetKey(), p.GetValue()
		switch {
		case k == HFConfigKey:
			f.Verbatim = []byte(v)
		case k == SourceDirKey:
			f.SourceDir = v
		case !strings.ContainsAny(k, ":.") && k != "":
			f.Config[k] = parseValue(v)
			have = append(have, k)
		}
	}
	if f.Verbatim != nil {
		cfg := map[string]any{}
		d := json.NewDecoder(bytes.NewReader(f.Verbatim))
		d.UseNumber()
		if err := d.Decode(&cfg); err != nil {
			return nil, fmt.Errorf("deploy: %s: metadata %s is not a JSON object: %w", name, HFConfigKey, err)
		}
		f.Config = cfg
	}
	mt, _ := f.Config["model_type"].(string)
	if mt == "" {
		return nil, fmt.Errorf("deploy: %s has no model_type in its metadata_props (and no %s): config.json cannot be written; "+
			"models made by \"shears import\" record their config (the model's metadata has: %s)", name, HFConfigKey, listOrNone(have))
	}
	fam, ok := families[mt]
	if !ok {
		return nil, fmt.Errorf("deploy: %s: model_type %q is not one deploy writes configs for (supported: %s)", name, mt, strings.Join(familyNames(), ", "))
	}
	f.fam = fam
	var missing []string
	for _, k := range fam.required() {
		if _, ok := f.Config[k]; !ok {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("deploy: %s lacks the facts config.json needs for model_type %q: %s (the model's metadata has: %s)",
			name, mt, strings.Join(missing, ", "), listOrNone(have))
	}
	for _, k := range []string{fam.hidden, fam.heads, fam.kvHeads, fam.layers, fam.vocab, fam.ctxt} {
		if _, ok := f.Config[k]; !ok && k == fam.kvHeads {
			continue // absent kv heads mean as many as the heads (transformers' default)
		}
		if n, ok := f.int(k); !ok || n <= 0 {
			return nil, fmt.Errorf("deploy: %s: config %s = %v is not a positive integer", name, k, f.Config[k])
		}
	}
	if f.HeadSize() <= 0 {
		return nil, fmt.Errorf("deploy: %s: head size is not a positive integer (%s %d, %s %d)", name, fam.hidden, f.Hidden(), fam.heads, f.Heads())
	}
	return f, nil
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "nothing"
	}
	return strings.Join(s, ", ")
}

// parseValue turns a metadata string into the JSON value config.json holds.
func parseValue(v string) any {
	switch v {
	case "true":
		return true
	case "false":
		return false
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		return n
	}
	if x, err := strconv.ParseFloat(v, 64); err == nil {
		return x
	}
	return v
}

func (f *Facts) int(k string) (int, bool) {
	switch v := f.Config[k].(type) {
	case int64:
		return int(v), true
	case int:
		return v, true
	case float64:
		if v == float64(int(v)) {
			return int(v), true
		}
	case json.Number:
		if n, err := v.Int64(); err == nil {
			return int(n), true
		}
	}
	return 0, false
}

func (f *Facts) get(k string) int { n, _ := f.int(k); return n }

// ModelType is config.json's model_type.
func (f *Facts) ModelType() string { s, _ := f.Config["model_type"].(string); return s }

// Hidden is the hidden size.
func (f *Facts) Hidden() int { return f.get(f.fam.hidden) }

// Heads is the number of attention heads.
func (f *Facts) Heads() int { return f.get(f.fam.heads) }

// KVHeads is the number of key/value heads (the heads when the config does not say).
func (f *Facts) KVHeads() int {
	if n, ok := f.int(f.fam.kvHeads); ok {
		return n
	}
	return f.Heads()
}

// Layers is the number of decoder blocks.
func (f *Facts) Layers() int { return f.get(f.fam.layers) }

// Vocab is the vocabulary size.
func (f *Facts) Vocab() int { return f.get(f.fam.vocab) }

// Context is the maximum sequence length.
func (f *Facts) Context() int { return f.get(f.fam.ctxt) }

// HeadSize is head_dim when the config gives it, else hidden / heads.
func (f *Facts) HeadSize() int {
	if n, ok := f.int("head_dim"); ok && n > 0 {
		return n
	}
	if f.Heads() == 0 || f.Hidden()%f.Heads() != 0 {
		return 0
	}
	return f.Hidden() / f.Heads()
}

// tokenID reads a special-token id of the config (the first one when it is a list).
func (f *Facts) tokenID(k string) (int, bool) {
	switch v := f.Config[k].(type) {
	case []any:
		if len(v) > 0 {
			c := &Facts{Config: map[string]any{k: v[0]}}
			return c.int(k)
		}
		return 0, false
	}
	return f.int(k)
}

// HistoryKey holds the commands that made a model, oldest first, as a JSON list of strings
// (appended by each pipeline stage that writes a model); the model card lists them.
const HistoryKey = "shears:history"

// ReadHistory returns the model's recorded commands (nil when none).
func ReadHistory(m *onnx.Model) []string {
	for _, p := range m.Proto.GetMetadataProps() {
		if p.GetKey() == HistoryKey {
			var h []string
			if json.Unmarshal([]byte(p.GetValue()), &h) == nil {
				return h
			}
		}
	}
	return nil
}
