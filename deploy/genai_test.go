package deploy

import (
	"encoding/json"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
)

// genaiKeys are the keys onnxruntime GenAI's config parser (src/config.cpp: Model_Element,
// Decoder_Element, DecoderInputs/Outputs, SessionOptions_Element, Search_Element) accepts at each
// level of genai_config.json; any other key makes it throw "unknown value", so the file must
// hold none.
var genaiKeys = map[string][]string{
	"":                              {"model", "search"},
	"model":                         {"bos_token_id", "eos_token_id", "pad_token_id", "context_length", "type", "vocab_size", "decoder"},
	"model.decoder":                 {"session_options", "filename", "head_size", "hidden_size", "num_attention_heads", "num_key_value_heads", "num_hidden_layers", "inputs", "outputs"},
	"model.decoder.inputs":          {"input_ids", "attention_mask", "position_ids", "past_key_names", "past_value_names"},
	"model.decoder.outputs":         {"logits", "present_key_names", "present_value_names"},
	"model.decoder.session_options": {"log_id", "provider_options"},
	"search": {"min_length", "max_length", "batch_size", "num_beams", "num_return_sequences", "top_k", "top_p", "temperature",
		"repetition_penalty", "no_repeat_ngram_size", "diversity_penalty", "length_penalty", "random_seed", "do_sample",
		"past_present_share_buffer", "early_stopping"},
}

func TestGenAIConfigKeys(t *testing.T) {
	m := loadModel(t, testkit.Synthetic(t, "tiny"))
	f, err := ReadFacts(m)
	if err != nil {
		t.Fatal(err)
	}
	b, err := genaiConfigJSON(f, ids{1, 2, 0}, iface{inputIDs: true, mask: true, positions: true, logits: true, past: 2, present: 2})
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	var walk func(path string, v map[string]any)
	walk = func(path string, v map[string]any) {
		allowed, ok := genaiKeys[path]
		if !ok {
			t.Errorf("genai_config.json has an object at %q, which the parser does not read", path)
			return
		}
		for k, x := range v {
			found := false
			for _, a := range allowed {
				found = found || a == k
			}
			if !found {
				t.Errorf("genai_config.json: key %q at %q is unknown to onnxruntime GenAI", k, path)
			}
			if sub, ok := x.(map[string]any); ok {
				p := k
				if path != "" {
					p = path + "." + k
				}
				walk(p, sub)
			}
		}
	}
	walk("", doc)
	model := doc["model"].(map[string]any)
	dec := model["decoder"].(map[string]any)
	for k, want := range map[string]float64{"head_size": 8, "hidden_size": 64, "num_attention_heads": 8, "num_key_value_heads": 4, "num_hidden_layers": 2} {
		if dec[k] != want {
			t.Errorf("decoder.%s = %v, want %v", k, dec[k], want)
		}
	}
	if model["context_length"] != 128.0 || model["vocab_size"] != 512.0 || model["type"] != "llama" || model["pad_token_id"] != 0.0 {
		t.Errorf("model %v", model)
	}
	if s := doc["search"].(map[string]any); s["past_present_share_buffer"] != false || s["do_sample"] != false || s["max_length"] != 128.0 {
		t.Errorf("search %v", s)
	}
}
