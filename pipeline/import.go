package pipeline

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/shears-ml/shears/deploy"
	"github.com/shears-ml/shears/models/hf"
	"github.com/shears-ml/shears/models/llama2c"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/transform/convert"
)

// HFArchitectures are the Hugging Face architectures "import hf" builds (for help texts).
func HFArchitectures() []string { return hf.Supported() }

// ImportOptions are the import stage's options (the flags of "shears import").
type ImportOptions struct {
	Format string // "hf" or "llama2c"
	Source string // the checkpoint: a Hugging Face folder or a llama2.c file
	Out    string
	// DType is the weights' type in the output: "" keeps the checkpoint's (hf), "fp32", "fp16"
	// or "bf16". Low-precision weights are read through Casts (transform/convert's weight-only
	// form), so the graph computes in float32 on any execution provider.
	DType    string
	External bool // force external data (automatic above 1.8 GB, and for hf unless Inline)
	// Inline keeps an hf import's weights inside the .onnx file when they fit (under 1.8 GB), as
	// a folder output always does. Off by default: external data streams from the checkpoint to
	// the disk, while an inline
	// file is marshalled whole in memory (a 0.47 GB bf16 checkpoint: 0.98 GB peak RSS and 1.1-5.5 s
	// inline, 0.18 GB and 0.5-0.8 s external).
	Inline bool
	// Output is the format of Out: an ONNX file or a model folder.
	Output Output
	// Progress, when set, is told as tensors are written (Stage "import", Done of Total tensors).
	Progress ProgressFunc
	// Warn, when set, receives warnings (a folder written without a tokenizer).
	Warn func(string)
}

// ImportReport says what was imported.
type ImportReport struct {
	Format       string            `json:"format"`
	Source       string            `json:"source"`
	Output       string            `json:"output"`
	Architecture string            `json:"architecture,omitempty"`
	Config       map[string]string `json:"config"` // the model's facts, under config.json names
	Params       int64             `json:"params"`
	Tensors      int               `json:"tensors"`
	SourceDType  string            `json:"source_dtype"`
	DType        string            `json:"dtype"`
	Converted    int               `json:"converted_tensors,omitempty"` // stored in DType and read through Casts
	BytesRead    int64             `json:"bytes_read"`
	BytesWritten int64             `json:"bytes_written"`
	Unused       []string          `json:"unused_tensors,omitempty"` // checkpoint tensors the graph does not read
	Nodes        int               `json:"nodes"`
	Seconds      float64           `json:"seconds"`
	Folder       *deploy.Report    `json:"folder,omitempty"`
}

// Import converts a checkpoint into an ONNX model with the with-past interface, written
// atomically to o.Out (no output is left behind on error).
func Import(o ImportOptions) (*ImportReport, error) {
	if o.Out == "" {
		return nil, fmt.Errorf("import: no output file given")
	}
	start := time.Now()
	var importer func(ImportOptions) (*ImportReport, *onnx.Model, onnx.SaveOptions, func(), error)
	switch o.Format {
	case "hf":
		importer = importHF
	case "llama2c":
		importer = importLlama2c
	default:
		return nil, fmt.Errorf("import: unknown format %q (supported: hf, llama2c)", o.Format)
	}
	s, err := o.Output.begin(o.Out) // a folder is checked before any work
	if err != nil {
		return nil, err
	}
	defer s.abort()
	rep, m, so, done, err := importer(o)
	if err != nil {
		return nil, err
	}
	defer done()
	if err := s.check(m); err != nil {
		return nil, err
	}
	// An hf import to a file streams to external data; a folder keeps optimum's layout (one
	// file below the limit, as transformers.js loads it without extra configuration).
	so.ExternalData = so.ExternalData || o.External || (o.Format == "hf" && !o.Inline && !s.folderMode())
	if err := m.Save(s.path, s.saveOptions(so)); err != nil {
		return nil, fmt.Errorf("import %s: %w", o.Source, err)
	}
	rep.Config, rep.Params = modelFacts(m)
	rep.Nodes = len(m.Graph().GetNode())
	rep.Format, rep.Source, rep.Output = o.Format, o.Source, o.Out
	rep.BytesWritten = fileBytes(s.path) + dataBytes(m, s.path)
	if rep.Folder, err = s.finish(o.Source, "", o.Warn); err != nil {
		return nil, err
	}
	rep.Seconds = time.Since(start).Seconds()
	return rep, nil
}

// dataBytes is the size of the external data file a model saved at path refers to.
func dataBytes(m *onnx.Model, path string) int64 {
	for _, t := range m.Graph().GetInitializer() {
		for _, kv := range t.GetExternalData() {
			if kv.GetKey() == "location" {
				if n := fileBytes(filepath.Join(filepath.Dir(path), kv.GetValue())); n > 0 {
					return n
				}
			}
		}
	}
	return fileBytes(path + ".data")
}

func fileBytes(p string) int64 {
	if fi, err := os.Stat(p); err == nil {
		return fi.Size()
	}
	return 0
}

func parseImportDType(s string) (onnxpb.TensorProto_DataType, error) {
	switch strings.ToLower(s) {
	case "":
		return onnxpb.TensorProto_UNDEFINED, nil
	case "fp32", "float32", "f32":
		return onnxpb.TensorProto_FLOAT, nil
	}
	dt, err := convert.ParseDType(s)
	if err != nil {
		return 0, fmt.Errorf("import: --dtype %q: want fp32, fp16 or bf16", s)
	}
	return dt, nil
}

// importHF builds the checkpoint's graph with its tensors bound to the safetensors files; the
// returned done closes them after the save.
func importHF(o ImportOptions) (*ImportReport, *onnx.Model, onnx.SaveOptions, func(), error) {
	fail := func(err error) (*ImportReport, *onnx.Model, onnx.SaveOptions, func(), error) {
		return nil, nil, onnx.SaveOptions{}, nil, err
	}
	want, err := parseImportDType(o.DType)
	if err != nil {
		return fail(err)
	}
	ck, err := hf.Open(o.Source)
	if err != nil {
		return fail(err)
	}
	g, err := ck.Build()
	if err != nil {
		ck.Close()
		return fail(err)
	}
	if want == onnxpb.TensorProto_UNDEFINED {
		want = g.DType
	}
	rep := &ImportReport{
		Architecture: ck.Config.Architectures[0], Tensors: g.Tensors(), BytesRead: g.Bytes(),
		SourceDType: convert.DTypeName(g.DType), DType: convert.DTypeName(want), Unused: g.Unused,
	}
	// Low precision: transform/convert's weight-only plan decides which tensors keep it (the
	// linears and embeddings) and inserts their Casts; the rest are widened to float32.
	target := func(string) onnxpb.TensorProto_DataType { return onnxpb.TensorProto_FLOAT }
	if want != onnxpb.TensorProto_FLOAT {
		plan, err := lowPrecision(g.Model, want)
		if err != nil {
			ck.Close()
			return fail(fmt.Errorf("import %s: %w", o.Source, err))
		}
		rep.Converted = len(plan.Tensors)
		target = func(name string) onnxpb.TensorProto_DataType {
			if plan.Converts(name) {
				return want
			}
			return onnxpb.TensorProto_FLOAT
		}
	}
	bo := hf.BindOptions{Target: target, Narrow: convert.Narrow}
	if o.Progress != nil {
		bo.Progress = func(done, total int) { o.Progress(Event{Stage: "import", Done: done, Total: total, Detail: "tensors"}) }
	}
	so := g.Bind(bo)
	return rep, g.Model, so, func() { ck.Close() }, nil
}

// lowPrecision plans and applies transform/convert's weight-only conversion to dt.
func lowPrecision(m *onnx.Model, dt onnxpb.TensorProto_DataType) (*convert.Plan, error) {
	plan, err := convert.NewPlan(m, convert.Options{DType: dt, Compute: convert.ComputeFP32})
	if err != nil {
		return nil, err
	}
	return plan, plan.Rewrite(m)
}

func importLlama2c(o ImportOptions) (*ImportReport, *onnx.Model, onnx.SaveOptions, func(), error) {
	fail := func(err error) (*ImportReport, *onnx.Model, onnx.SaveOptions, func(), error) {
		return nil, nil, onnx.SaveOptions{}, nil, err
	}
	want, err := parseImportDType(o.DType)
	if err != nil {
		return fail(err)
	}
	m, err := llama2c.Import(o.Source)
	if err != nil {
		return fail(err)
	}
	rep := &ImportReport{SourceDType: "fp32", DType: "fp32", Tensors: len(m.Graph().GetInitializer())}
	if fi, err := os.Stat(o.Source); err == nil {
		rep.BytesRead = fi.Size()
	}
	so := onnx.SaveOptions{}
	if want != onnxpb.TensorProto_UNDEFINED && want != onnxpb.TensorProto_FLOAT {
		plan, err := lowPrecision(m, want)
		if err != nil {
			return fail(fmt.Errorf("import %s: %w", o.Source, err))
		}
		so = plan.SaveOptions(so)
		rep.DType, rep.Converted = convert.DTypeName(want), len(plan.Tensors)
	}
	return rep, m, so, func() {}, nil
}

// modelFacts reads the config the builders record in metadata_props (hidden_size, layers, ...)
// and the parameter count from the initializers' shapes.
func modelFacts(m *onnx.Model) (map[string]string, int64) {
	facts := map[string]string{}
	for _, p := range m.Proto.GetMetadataProps() {
		if strings.Contains(p.GetKey(), ":") {
			continue // namespaced entries (hf:config, shears:...) are not facts
		}
		facts[p.GetKey()] = p.GetValue()
	}
	var n int64
	for _, t := range m.Graph().GetInitializer() {
		if len(t.GetDims()) >= 1 && !strings.HasPrefix(t.GetName(), "/") && !strings.Contains(t.GetName(), "rotary_emb") && !strings.Contains(t.GetName(), "causal_mask") {
			n += onnx.NumElements(t.GetDims())
		}
	}
	return facts, n
}
