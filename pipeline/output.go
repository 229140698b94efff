package pipeline

import (
	"fmt"

	"github.com/shears-ml/shears/deploy"
	"github.com/shears-ml/shears/onnx"
)

// Output formats a stage can write its model in.
const (
	FormatONNX   = "onnx"   // one .onnx file (+ .data), the default
	FormatFolder = "folder" // a model folder for serving runtimes (deploy.Begin)
	FormatHF     = "hf"     // a Hugging Face checkpoint: safetensors + config + tokenizer
)

// Output says how a stage writes its model beyond the path: as a plain ONNX file, or as a
// model folder (graph, config.json, tokenizer, genai_config.json, model card), or as a Hugging
// Face checkpoint (merged weights as safetensors, config.json, tokenizer). A checkpoint is made
// from the graph the stage writes into the temporary folder, so stages that transform weights
// while saving need nothing else.
type Output struct {
	Format string // FormatONNX ("" too), FormatFolder or FormatHF
	// Force replaces an existing non-empty output folder.
	Force bool
	// Tokenizer goes into a folder (tokenizer.json copied, llama2.c tokenizer.bin converted);
	// stages with a tokenizer of their own use it when this is empty.
	Tokenizer string
	Card      deploy.Card
	// ShardBytes splits a Hugging Face checkpoint above this size (0: deploy.DefaultShardBytes).
	ShardBytes int64
}

// FolderReport is what writing a model folder or checkpoint made (its files, tokenizer,
// warnings); a stage's Report holds it as Folder, nil for a plain file.
type FolderReport = deploy.Report

// Check refuses, naming the flags (ErrUsage), an unknown format and --force on a plain file.
func (o Output) Check() error {
	f, err := ParseFormat(o.Format)
	if err != nil {
		return fmt.Errorf("%w: --format: %v", ErrUsage, err)
	}
	if o.Force && f == FormatONNX {
		return fmt.Errorf("%w: --force applies to --format folder or hf only", ErrUsage)
	}
	return nil
}

// ParseFormat checks a --format value.
func ParseFormat(s string) (string, error) {
	switch s {
	case "", FormatONNX:
		return FormatONNX, nil
	case FormatFolder, FormatHF:
		return s, nil
	}
	return "", fmt.Errorf("format %q: want onnx, folder or hf", s)
}

// sink is one output being written: the path the stage saves its graph at, and for a
// folder the folder around it.
type sink struct {
	out    Output
	path   string
	folder *deploy.Folder
}

// begin prepares path for writing in the output's format; a folder is checked (an existing
// non-empty one refused) before any work.
func (o Output) begin(path string) (*sink, error) {
	f, err := ParseFormat(o.Format)
	if err != nil {
		return nil, err
	}
	o.Format = f
	if len(o.Card.Commands) == 0 {
		if c := currentCommand(); c != "" { // the card lists the command that wrote the folder
			o.Card.Commands = []string{c}
		}
	}
	s := &sink{out: o, path: path}
	if f == FormatFolder || f == FormatHF {
		if s.folder, err = deploy.Begin(path, o.Force); err != nil {
			return nil, err
		}
		s.path = s.folder.ModelPath()
	}
	return s, nil
}

// saveOptions adapts the stage's save options to the output.
func (s *sink) saveOptions(so onnx.SaveOptions) onnx.SaveOptions {
	if s.folder != nil {
		return deploy.SaveOptions(so)
	}
	return so
}

// check refuses, before any work, a model whose facts a folder or checkpoint cannot be
// written without (the same check Finish makes on the written graph).
func (s *sink) check(m *onnx.Model) error {
	if s.folder == nil {
		return nil
	}
	_, err := deploy.ReadFacts(m)
	return err
}

// folderMode reports whether the graph goes into a folder (which must stand alone).
func (s *sink) folderMode() bool { return s.folder != nil }

// finish completes a folder (a no-op for a file); source names the model in messages.
func (s *sink) finish(source, tokenizer string, warn func(string)) (*deploy.Report, error) {
	if s.folder == nil {
		return nil, nil
	}
	tok := s.out.Tokenizer
	if tok == "" {
		tok = tokenizer
	}
	do := deploy.Options{Source: source, Tokenizer: tok, Card: s.out.Card, Warn: warn}
	if s.out.Format == FormatHF {
		return s.folder.FinishHF(do, s.out.ShardBytes)
	}
	return s.folder.Finish(do)
}

// abort removes an unfinished folder (safe after finish).
func (s *sink) abort() {
	if s != nil && s.folder != nil {
		s.folder.Abort()
	}
}

// SaveModel writes m to path in the output's format (save options as the stage would use
// for a file); the folder report is nil for a file.
func SaveModel(m *onnx.Model, path string, so onnx.SaveOptions, o Output, source string, warn func(string)) (*deploy.Report, error) {
	s, err := o.begin(path)
	if err != nil {
		return nil, err
	}
	defer s.abort()
	if err := s.check(m); err != nil {
		return nil, err
	}
	recordHistory(m)
	if err := m.Save(s.path, s.saveOptions(so)); err != nil {
		return nil, err
	}
	return s.finish(source, "", warn)
}

// ResolveModel lets commands that read a model take a model folder too: DIR gives
// DIR/onnx/model.onnx and its tokenizer.json ("" when absent); a file is returned as is.
func ResolveModel(path string) (model, tokenizer string) { return deploy.Resolve(path) }
