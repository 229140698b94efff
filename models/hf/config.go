package hf

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// ConfigFile is the name of a checkpoint's configuration.
const ConfigFile = "config.json"

// Config holds the config.json fields the families read. Fields a family does not use stay at
// their zero value; Raw is the file's verbatim text (recorded in the ONNX model's metadata).
type Config struct {
	Architectures []string `json:"architectures"`
	ModelType     string   `json:"model_type"`

	// LLaMA-style names (LLaMA, Mistral, Qwen2, Phi-3, Gemma).
	HiddenSize        int          `json:"hidden_size"`
	IntermediateSize  int          `json:"intermediate_size"`
	NumHiddenLayers   int          `json:"num_hidden_layers"`
	NumAttentionHeads int          `json:"num_attention_heads"`
	NumKeyValueHeads  int          `json:"num_key_value_heads"`
	HeadDim           int          `json:"head_dim"`
	VocabSize         int          `json:"vocab_size"`
	MaxPositions      int          `json:"max_position_embeddings"`
	RMSNormEps        float64      `json:"rms_norm_eps"`
	RopeTheta         float64      `json:"rope_theta"`
	RopeScaling       *RopeScaling `json:"rope_scaling"`
	// RopeParameters is transformers v5's form: rope_theta, the scaling and
	// partial_rotary_factor in one object (rope.go reads either form).
	RopeParameters       *RopeScaling `json:"rope_parameters"`
	OriginalMaxPositions int          `json:"original_max_position_embeddings"` // Phi-3's LongRoPE
	TieWordEmbeddings    *bool        `json:"tie_word_embeddings"`
	AttentionBias        bool         `json:"attention_bias"`
	MLPBias              bool         `json:"mlp_bias"`
	HiddenAct            string       `json:"hidden_act"`
	HiddenActivation     string       `json:"hidden_activation"` // Gemma
	SlidingWindow        *int         `json:"sliding_window"`    // Mistral, Qwen2, Phi-3
	UseSlidingWindow     *bool        `json:"use_sliding_window"`
	MaxWindowLayers      *int         `json:"max_window_layers"` // Qwen2
	LayerTypes           []string     `json:"layer_types"`       // Qwen2 (transformers ≥ 4.53)
	PartialRotary        *float64     `json:"partial_rotary_factor"`

	// GPT-2 names.
	NEmbd            int     `json:"n_embd"`
	NLayer           int     `json:"n_layer"`
	NHead            int     `json:"n_head"`
	NPositions       int     `json:"n_positions"`
	NInner           *int    `json:"n_inner"`
	LayerNormEpsilon float64 `json:"layer_norm_epsilon"`
	ActivationFunc   string  `json:"activation_function"`
	ScaleAttnWeights *bool   `json:"scale_attn_weights"`
	ScaleAttnByLayer bool    `json:"scale_attn_by_inverse_layer_idx"`

	Raw  string          `json:"-"`
	Path string          `json:"-"`
	keys map[string]bool // the fields config.json has, null or not
}

// has reports whether config.json has the field (even as null): transformers' config classes
// fill an absent field with their default, which may differ from null's meaning.
func (c *Config) has(field string) bool { return c.keys[field] }

// RopeScaling is config.json's rope_scaling (or transformers v5's rope_parameters, which also
// holds rope_theta and partial_rotary_factor). Transformers has written the kind as "type"
// and, later, "rope_type"; Kind reads either.
type RopeScaling struct {
	Type                  string    `json:"type"`
	RopeType              string    `json:"rope_type"`
	Factor                float64   `json:"factor"`
	LowFreqFactor         float64   `json:"low_freq_factor"`
	HighFreqFactor        float64   `json:"high_freq_factor"`
	OriginalMaxPositional int       `json:"original_max_position_embeddings"`
	ShortFactor           []float64 `json:"short_factor"`
	LongFactor            []float64 `json:"long_factor"`
	AttentionFactor       *float64  `json:"attention_factor"`
	BetaFast              float64   `json:"beta_fast"` // yarn
	BetaSlow              float64   `json:"beta_slow"`
	Truncate              *bool     `json:"truncate"`
	Mscale                *float64  `json:"mscale"` // DeepSeek's yarn (not supported)
	MscaleAllDim          *float64  `json:"mscale_all_dim"`
	RopeTheta             float64   `json:"rope_theta"`            // rope_parameters only
	PartialRotary         *float64  `json:"partial_rotary_factor"` // rope_parameters only
	// PerLayerType is set when rope_parameters is keyed by layer type (not supported).
	PerLayerType bool `json:"-"`
}

// UnmarshalJSON notes rope_parameters keyed by layer type ({"full_attention": {...}, ...}).
func (r *RopeScaling) UnmarshalJSON(b []byte) error {
	type plain RopeScaling
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(b, &keys); err != nil {
		return err
	}
	if err := json.Unmarshal(b, (*plain)(r)); err != nil {
		return err
	}
	_, full := keys["full_attention"]
	_, sliding := keys["sliding_attention"]
	r.PerLayerType = full || sliding
	return nil
}

// Kind is the scaling's type ("llama3", "linear", ...).
func (r *RopeScaling) Kind() string {
	if r.RopeType != "" {
		return r.RopeType
	}
	return r.Type
}

// ReadConfig reads dir/config.json.
func ReadConfig(dir string) (*Config, error) {
	path := filepath.Join(dir, ConfigFile)
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("hf: %s: no %s (a Hugging Face checkpoint folder holds config.json next to its safetensors)", dir, ConfigFile)
		}
		return nil, fmt.Errorf("hf: %w", err)
	}
	return ParseConfig(path, b)
}

// ParseConfig decodes config.json's bytes; path names the file in errors.
func ParseConfig(path string, b []byte) (*Config, error) {
	c := &Config{Raw: string(b), Path: path}
	if err := json.Unmarshal(b, c); err != nil {
		return nil, fmt.Errorf("hf: %s: %w", path, err)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return nil, fmt.Errorf("hf: %s: %w", path, err)
	}
	c.keys = map[string]bool{}
	for k := range fields {
		c.keys[k] = true
	}
	if len(c.Architectures) == 0 {
		return nil, fmt.Errorf("hf: %s: no \"architectures\" entry (supported: %s)", path, supportedList())
	}
	return c, nil
}

// Tied reports tie_word_embeddings, or def when the config does not say.
func (c *Config) Tied(def bool) bool {
	if c.TieWordEmbeddings == nil {
		return def
	}
	return *c.TieWordEmbeddings
}

// errorf prefixes a config problem with the file.
func (c *Config) errorf(format string, a ...any) error {
	return fmt.Errorf("hf: %s: "+format, append([]any{c.Path}, a...)...)
}

// positive checks that the named sizes are positive.
func (c *Config) positive(kv ...any) error {
	for i := 0; i+1 < len(kv); i += 2 {
		if v := kv[i+1].(int); v <= 0 {
			return c.errorf("%s = %d: must be positive", kv[i], v)
		}
	}
	return nil
}
