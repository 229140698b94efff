package deploy

import (
	"bytes"
	"encoding/json"
	"maps"
)

// ids are the special-token ids the folder's files record (-1 where unknown).
type ids struct{ bos, eos, pad int }

// specialIDs takes the config's ids where it has them, the tokenizer's otherwise.
func (f *Facts) specialIDs(tok ids) ids {
	out := tok
	if v, ok := f.tokenID("bos_token_id"); ok {
		out.bos = v
	}
	if v, ok := f.tokenID("eos_token_id"); ok {
		out.eos = v
	}
	if v, ok := f.tokenID("pad_token_id"); ok {
		out.pad = v
	}
	return out
}

// tjsConfig is config.json's transformers.js_config: the external data file must be named
// there, or transformers.js loads the graph without its weights.
func tjsConfig(external bool) map[string]any {
	if !external {
		return nil
	}
	return map[string]any{"use_external_data_format": true}
}

// configJSON is the folder's config.json: hf:config verbatim when the model carries it (plus
// transformers.js_config when the weights are external), else the facts with the family's
// fixed choices, the architecture, the special ids and the storage dtype.
func configJSON(f *Facts, tok ids, dtype string, external bool) ([]byte, error) {
	tjs := tjsConfig(external)
	if f.Verbatim != nil {
		if tjs == nil {
			return f.Verbatim, nil
		}
		if _, has := f.Config["transformers.js_config"]; !has && len(bytes.TrimSpace(f.Verbatim)) > 1 {
			// Keep the checkpoint's text (key order, number spelling) and add one key first.
			rest := bytes.TrimSpace(bytes.TrimSpace(f.Verbatim)[1:])
			var out bytes.Buffer
			out.WriteString("{\n  \"transformers.js_config\": {\"use_external_data_format\": true}")
			if !bytes.Equal(rest, []byte("}")) {
				out.WriteString(",")
			}
			out.WriteString("\n  ")
			out.Write(rest)
			out.WriteString("\n")
			if json.Valid(out.Bytes()) {
				return out.Bytes(), nil
			}
		}
		cfg := maps.Clone(f.Config)
		tj, _ := cfg["transformers.js_config"].(map[string]any)
		tj = maps.Clone(tj)
		if tj == nil {
			tj = map[string]any{}
		}
		tj["use_external_data_format"] = true
		cfg["transformers.js_config"] = tj
		return marshalJSON(cfg)
	}
	cfg := maps.Clone(f.Config)
	for k, v := range f.fam.extra {
		if _, ok := cfg[k]; !ok {
			cfg[k] = v
		}
	}
	cfg["architectures"] = []string{f.fam.arch}
	if _, ok := cfg["head_dim"]; !ok && f.fam.genai != "gpt2" {
		cfg["head_dim"] = f.HeadSize()
	}
	if _, ok := cfg["use_cache"]; !ok {
		cfg["use_cache"] = true
	}
	if dtype != "" {
		cfg["torch_dtype"] = dtype
	}
	id := f.specialIDs(tok)
	setID := func(k string, v int) {
		if v >= 0 {
			cfg[k] = v
		}
	}
	setID("bos_token_id", id.bos)
	setID("eos_token_id", id.eos)
	if tjs != nil {
		cfg["transformers.js_config"] = tjs
	}
	return marshalJSON(cfg)
}

// generationConfigJSON is a generation_config.json for greedy decoding with the special ids.
func generationConfigJSON(f *Facts, tok ids) ([]byte, error) {
	id := f.specialIDs(tok)
	cfg := map[string]any{"do_sample": false}
	if id.bos >= 0 {
		cfg["bos_token_id"] = id.bos
	}
	if id.eos >= 0 {
		cfg["eos_token_id"] = id.eos
	}
	if id.pad >= 0 {
		cfg["pad_token_id"] = id.pad
	}
	return marshalJSON(cfg)
}

// genaiConfigJSON is onnxruntime GenAI's genai_config.json for the folder's decoder (the
// schema of onnxruntime-genai's src/config.cpp and its config reference): the model's sizes,
// the special ids, the interface names with the %d templates of the past and present
// tensors, and greedy search defaults. past_present_share_buffer is false: our attention
// concatenates past and new keys, so present is one longer than past, which buffer sharing
// (in-place, max-length past) does not allow.
func genaiConfigJSON(f *Facts, tok ids, in iface) ([]byte, error) {
	id := f.specialIDs(tok)
	if id.pad < 0 {
		id.pad = id.eos
	}
	inputs := map[string]any{
		"input_ids":        inputIDsName,
		"attention_mask":   attentionMaskName,
		"past_key_names":   pastKeyTemplate,
		"past_value_names": pastValueTemplate,
	}
	if in.positions {
		inputs["position_ids"] = positionIDsName
	}
	cfg := map[string]any{
		"model": map[string]any{
			"bos_token_id":   id.bos,
			"eos_token_id":   id.eos,
			"pad_token_id":   id.pad,
			"context_length": f.Context(),
			"type":           f.fam.genai,
			"vocab_size":     f.Vocab(),
			"decoder": map[string]any{
				"session_options":     map[string]any{"log_id": "onnxruntime-genai", "provider_options": []any{}},
				"filename":            folderModelRelative,
				"head_size":           f.HeadSize(),
				"hidden_size":         f.Hidden(),
				"num_attention_heads": f.Heads(),
				"num_key_value_heads": f.KVHeads(),
				"num_hidden_layers":   f.Layers(),
				"inputs":              inputs,
				"outputs": map[string]any{
					"logits":              logitsName,
					"present_key_names":   presentKeyTemplate,
					"present_value_names": presentValueTmpl,
				},
			},
		},
		"search": map[string]any{
			"diversity_penalty":         0.0,
			"do_sample":                 false,
			"early_stopping":            true,
			"length_penalty":            1.0,
			"max_length":                f.Context(),
			"min_length":                0,
			"no_repeat_ngram_size":      0,
			"num_beams":                 1,
			"num_return_sequences":      1,
			"past_present_share_buffer": false,
			"repetition_penalty":        1.0,
			"temperature":               1.0,
			"top_k":                     1,
			"top_p":                     1.0,
		},
	}
	return marshalJSON(cfg)
}

// marshalJSON writes v indented with sorted keys, without escaping <, > and &, ending in a
// newline.
func marshalJSON(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
