package deploy

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/transform/layers"
	"github.com/shears-ml/shears/transform/lora"
)

// Options are what Finish needs beyond the saved graph.
type Options struct {
	// Source names the model in messages (the stage's input file or checkpoint).
	Source string
	// Tokenizer is a tokenizer.json (copied with the tokenizer files beside it) or a llama2.c
	// tokenizer.bin (converted); "" copies the one in the model's source folder, if any.
	Tokenizer string
	Card      Card
	// Warn receives what the folder lacks and why (nil: dropped).
	Warn func(string)
}

// Report says what a folder holds.
type Report struct {
	Dir       string   `json:"dir"`
	Files     []string `json:"files"`
	Tokenizer string   `json:"tokenizer"`
	External  bool     `json:"external_data"`
	GenAI     bool     `json:"genai_config"`
	Warnings  []string `json:"warnings,omitempty"`
}

// Finish writes config.json, generation_config.json, the tokenizer, genai_config.json and
// README.md beside the graph the stage saved at ModelPath, then moves the folder into place.
// On error nothing appears at the destination (call Abort to remove the temporary folder).
func (f *Folder) Finish(o Options) (*Report, error) { return f.finish(o, 0) }

// finish completes a model folder (shardBytes 0) or, with shardBytes > 0, turns the graph into
// a Hugging Face checkpoint (FinishHF); both then share the tokenizer, configs and card.
func (f *Folder) finish(o Options, shardBytes int64) (*Report, error) {
	if f.closed {
		return nil, fmt.Errorf("deploy: folder %s already finished or aborted", f.dir)
	}
	hf := shardBytes > 0
	rep := &Report{Dir: f.dir}
	warn := func(s string) {
		rep.Warnings = append(rep.Warnings, s)
		if o.Warn != nil {
			o.Warn(s)
		}
	}
	m, err := onnx.Load(f.ModelPath())
	if err != nil {
		return nil, fmt.Errorf("deploy: the graph written into the folder: %w", err)
	}
	defer m.Close()
	name := o.Source
	if name == "" {
		name = filepath.Base(f.dir)
	}
	m.Path = name // messages name the user's model, not the temporary file
	if hf {
		if _, err := lora.ReadConfig(m); err == nil {
			return nil, fmt.Errorf("deploy: %s has LoRA adapters: a Hugging Face checkpoint holds merged weights (export with --merge dense or sparse; --peft DIR writes the adapter)", name)
		}
	}
	facts, err := ReadFacts(m)
	if err != nil {
		return nil, err
	}
	in := readIface(m)
	if hf {
		ts, tied, err := hfTensors(m, facts, warn)
		if err != nil {
			return nil, err
		}
		if _, err := writeCheckpoint(f.tmp, ts, shardBytes); err != nil {
			return nil, fmt.Errorf("deploy: %w", err)
		}
		if t, ok := facts.Config["tie_word_embeddings"].(bool); ok && t != tied {
			facts.Config["tie_word_embeddings"] = tied
			facts.Verbatim = nil // the checkpoint's text no longer describes the weights
		}
	} else if err := in.check(name, facts); err != nil {
		return nil, err
	}
	tok, how, err := f.placeTokenizer(o.Tokenizer, facts.SourceDir, facts.Context(), warn)
	if err != nil {
		return nil, err
	}
	rep.Tokenizer = how
	_, err = os.Stat(filepath.Join(f.tmp, folderModelSubdir, folderDataFile))
	rep.External = err == nil && !hf
	dtype, err := storageDType(m)
	if err != nil {
		return nil, err
	}
	cfg, err := configJSON(facts, tok, dtype, rep.External)
	if err != nil {
		return nil, fmt.Errorf("deploy: config.json: %w", err)
	}
	if err := f.writeFile("config.json", cfg); err != nil {
		return nil, err
	}
	gen, err := f.generationConfig(facts, tok)
	if err != nil {
		return nil, err
	}
	if err := f.writeFile("generation_config.json", gen); err != nil {
		return nil, err
	}
	switch {
	case hf:
	case in.withPast(facts.Layers()):
		g, err := genaiConfigJSON(facts, tok, in)
		if err != nil {
			return nil, fmt.Errorf("deploy: genai_config.json: %w", err)
		}
		if err := f.writeFile("genai_config.json", g); err != nil {
			return nil, err
		}
		rep.GenAI = true
	default:
		warn(fmt.Sprintf("%s has no KV-cache interface (past_key_values.*/present.* for %d layers): genai_config.json is not written, "+
			"and runtimes that need the cache (onnxruntime GenAI, optimum with use_cache) cannot serve it", name, facts.Layers()))
	}
	sp, err := sparsityByRole(m)
	if err != nil {
		return nil, fmt.Errorf("deploy: model card: %w", err)
	}
	card := cardMarkdown(filepath.Base(f.dir), facts, withHistory(o.Card, m), readAdapter(m), sp, dtype, how, rep.GenAI, hf)
	if err := f.writeFile("README.md", []byte(card)); err != nil {
		return nil, err
	}
	if err := m.Close(); err != nil {
		return nil, fmt.Errorf("deploy: %w", err)
	}
	if hf { // the checkpoint replaces the graph it was made from
		if err := os.RemoveAll(filepath.Join(f.tmp, folderModelSubdir)); err != nil {
			return nil, fmt.Errorf("deploy: %w", err)
		}
	}
	rep.Files = f.files()
	if err := f.commit(); err != nil {
		return nil, err
	}
	return rep, nil
}

// generationConfig copies the source checkpoint's generation_config.json when there is one,
// else writes greedy defaults with the special ids.
func (f *Folder) generationConfig(facts *Facts, tok ids) ([]byte, error) {
	if facts.SourceDir != "" {
		b, err := os.ReadFile(filepath.Join(facts.SourceDir, "generation_config.json"))
		if err == nil {
			return b, nil
		}
		if !os.IsNotExist(err) {
			return nil, fmt.Errorf("deploy: %w", err)
		}
	}
	b, err := generationConfigJSON(facts, tok)
	if err != nil {
		return nil, fmt.Errorf("deploy: generation_config.json: %w", err)
	}
	return b, nil
}

// storageDType is config.json's torch_dtype for the linear weights as stored.
func storageDType(m *onnx.Model) (string, error) {
	ls, err := layers.Find(m)
	if err != nil {
		return "", fmt.Errorf("deploy: %w", err)
	}
	for _, l := range ls {
		if t := m.Initializer(l.Weight); t != nil {
			switch onnxpb.TensorProto_DataType(t.GetDataType()) {
			case onnxpb.TensorProto_FLOAT16:
				return "float16", nil
			case onnxpb.TensorProto_BFLOAT16:
				return "bfloat16", nil
			}
		}
	}
	return "float32", nil
}

// WriteFolder writes m as a model folder at dir in one call: Begin, save the graph with so
// (adapted by SaveOptions), Finish. For stages that hold the model in memory.
func WriteFolder(m *onnx.Model, so onnx.SaveOptions, dir string, force bool, o Options) (*Report, error) {
	f, err := Begin(dir, force)
	if err != nil {
		return nil, err
	}
	defer f.Abort()
	if err := m.Save(f.ModelPath(), SaveOptions(so)); err != nil {
		return nil, fmt.Errorf("deploy: %w", err)
	}
	return f.Finish(o)
}
