package pipeline

import (
	"fmt"
	"time"

	"github.com/shears-ml/shears/eval"
	"github.com/shears-ml/shears/runtime"
	"github.com/shears-ml/shears/tokenizer"
)

// GenerateOptions configure Generate ("shears generate").
type GenerateOptions struct {
	// Model is a .onnx file or a model folder (its onnx/model.onnx, and its tokenizer.json
	// when Tokenizer is empty).
	Model     string
	Tokenizer string
	// Prompt is the text after BOS; PromptIDs, when not nil, is the whole prompt as token ids
	// instead (BOS not added), so no tokenizer is needed unless Text is set.
	Prompt    string
	PromptIDs []int
	MaxTokens int
	// Temperature > 0 samples from the softmax over the TopK most likely tokens (0 = all) with
	// Seed; 0 is greedy decoding. Beams > 1 runs beam search (length penalty 1) instead.
	Temperature float64
	TopK        int
	Seed        uint64
	Beams       int
	NoCache     bool // rerun the whole sequence every token even when the model has a KV cache
	IgnoreEOS   bool // do not stop at EOS (fixed-length timing runs)
	Runtime     RuntimeOptions
	// Text, when set, receives the text as it is made: the decoded prompt first, then what each
	// new token adds (beam search: all at the end).
	Text func(string)
}

// GenerateReport is Generate's result ("shears generate --json" prints it).
type GenerateReport struct {
	IDs          []int   `json:"ids"`            // generated, the prompt excluded
	Text         string  `json:"text,omitempty"` // IDs decoded (when there is a tokenizer)
	PromptTokens int     `json:"prompt_tokens"`
	Caching      string  `json:"caching"` // "kv cache" or "recompute"
	Decoding     string  `json:"decoding"`
	Seconds      float64 `json:"seconds"` // generation only, the model's load excluded
	TokensPerSec float64 `json:"tokens_per_second"`
}

// Check refuses options that contradict each other, naming the flags (ErrUsage).
func (o GenerateOptions) Check() error {
	return firstErr(atLeast("--max-tokens", o.MaxTokens, 0),
		usageIf(o.Temperature < 0, fmt.Sprintf("--temperature must be >= 0, got %g", o.Temperature)),
		atLeast("--beams", o.Beams, 1),
		usageIf(o.Beams > 1 && o.Temperature > 0, "--beams and --temperature exclude each other (beam search is deterministic)"),
		usageIf(o.PromptIDs != nil && o.Prompt != "", "give --prompt or --prompt-ids, not both"))
}

// Generate continues the prompt one token at a time with eval's KV-cache decoders (greedy,
// sampling or beam search) until MaxTokens or EOS.
func Generate(o GenerateOptions) (*GenerateReport, error) {
	if err := o.Check(); err != nil {
		return nil, err
	}
	model, tokPath := resolveModel(o.Model, o.Tokenizer)
	var tok tokenizer.Tokenizer
	if tokPath != "" || o.PromptIDs == nil || o.Text != nil {
		var err error
		if tok, err = loadTokenizer(tokPath); err != nil {
			return nil, err
		}
	}
	prompt := o.PromptIDs
	if prompt == nil {
		prompt = append([]int{tok.BOS()}, tok.Encode(o.Prompt)...)
	}
	var stop []int
	if tok != nil && !o.IgnoreEOS {
		stop = []int{tok.EOS()}
	}
	s, err := runtime.OpenFile(model, o.Runtime)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	rep := &GenerateReport{PromptTokens: len(prompt), Decoding: "greedy"}
	if rep.Caching, err = eval.Caching(s, o.NoCache); err != nil {
		return nil, fmt.Errorf("%s: %w", model, err)
	}
	var onToken func(int)
	if o.Text != nil {
		o.Text(tok.Decode(prompt))
		prev := prompt
		onToken = func(id int) {
			// Decode the whole text so far and pass on what is new: tokenizers that strip a
			// leading space or join byte tokens need the context.
			before := tok.Decode(prev)
			prev = append(prev, id)
			if after := tok.Decode(prev); len(after) >= len(before) {
				o.Text(after[len(before):])
			}
		}
	}
	start := time.Now()
	var ids []int
	if o.Beams > 1 {
		rep.Decoding = fmt.Sprintf("beam search (%d beams)", o.Beams)
		h, err := eval.BeamSearch(s, prompt, eval.BeamOptions{Beams: o.Beams, MaxTokens: o.MaxTokens, Stop: stop, LengthPenalty: 1, NoCache: o.NoCache})
		if err != nil {
			return nil, err
		}
		ids = h.IDs
		if onToken != nil {
			for _, id := range ids {
				onToken(id)
			}
		}
	} else {
		if o.Temperature > 0 {
			rep.Decoding = fmt.Sprintf("sampling (temperature %g, top-k %d, seed %d)", o.Temperature, o.TopK, o.Seed)
		}
		gen := eval.GenOptions{MaxTokens: o.MaxTokens, Temperature: o.Temperature, TopK: o.TopK, Seed: o.Seed, Stop: stop, NoCache: o.NoCache}
		if ids, err = eval.Generate(s, prompt, gen, onToken); err != nil {
			return nil, err
		}
	}
	rep.Seconds = time.Since(start).Seconds()
	rep.IDs = ids
	if rep.IDs == nil {
		rep.IDs = []int{}
	}
	if rep.Seconds > 0 {
		rep.TokensPerSec = float64(len(ids)) / rep.Seconds
	}
	if tok != nil {
		rep.Text = tok.Decode(ids)
	}
	return rep, nil
}

// resolveModel lets a stage that reads a model take a model folder: its graph, and its
// tokenizer unless tok names one.
func resolveModel(model, tok string) (string, string) {
	path, folderTok := ResolveModel(model)
	if tok == "" {
		tok = folderTok
	}
	return path, tok
}

// loadTokenizer opens the tokenizer a --tokenizer flag names (a usage error when none does).
func loadTokenizer(path string) (tokenizer.Tokenizer, error) {
	if path == "" {
		return nil, fmt.Errorf("%w: --tokenizer is required", ErrUsage)
	}
	return tokenizer.Load(path)
}
