package pipeline

import (
	"fmt"

	"github.com/shears-ml/shears/deploy"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/transform/convert"
)

// ConvertOptions configure Convert ("shears convert").
type ConvertOptions struct {
	Model, Out string
	DType      string // fp16 or bf16
	Compute    string // fp32 (weight-only, the default) or native
	External   bool   // force external data (automatic when the input has it)
	// AllowNonFinite converts a model with NaN or Inf weights (refused by default, naming them).
	AllowNonFinite bool
	// Plan, when set, receives the printed conversion plan before anything is written.
	Plan func(string)
	// Output writes a model folder instead of a file; Warn receives warnings (what a folder
	// lacks, non-finite weights allowed).
	Output Output
	Warn   func(string)
}

// ConvertReport is what Convert wrote.
type ConvertReport struct {
	Model       string         `json:"model"`
	Output      string         `json:"output"`
	Tensors     int            `json:"tensors"`
	DType       string         `json:"dtype"`
	Compute     string         `json:"compute"`
	BytesBefore int64          `json:"bytes_before"`
	BytesAfter  int64          `json:"bytes_after"`
	Folder      *deploy.Report `json:"folder,omitempty"`
}

// Convert stores a float32 model's weights in float16 or bfloat16 (transform/convert), weight-
// only (Casts after the weights) or computing natively in that type, and writes o.Out atomically
// (or a model folder). The options are checked before the model is read.
func Convert(o ConvertOptions) (*ConvertReport, error) {
	dt, c, err := o.config()
	if err != nil {
		return nil, err
	}
	warn := o.Warn
	if warn == nil {
		warn = func(string) {}
	}
	m, err := onnx.Load(o.Model)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	if err := CheckModelOutput(o.Out, m, "the model to convert"); err != nil {
		return nil, fmt.Errorf("convert: %w", err)
	}
	if err := CheckOpset(m, o.Model, MinOpset, "convert"); err != nil {
		return nil, err
	}
	if err := CheckFinite(m, o.Model, o.AllowNonFinite, warn); err != nil {
		return nil, fmt.Errorf("convert: %w", err)
	}
	p, err := convert.NewPlan(m, convert.Options{DType: dt, Compute: c})
	if err != nil {
		return nil, err
	}
	if len(p.Tensors) == 0 {
		return nil, fmt.Errorf("convert %s: no float32 weights to convert (is it already %s?)", o.Model, convert.DTypeName(dt))
	}
	if o.Plan != nil {
		o.Plan(p.String())
	}
	if err := p.Rewrite(m); err != nil {
		return nil, err
	}
	save := p.SaveOptions(onnx.SaveOptions{ExternalData: o.External || m.HasExternal()})
	folder, err := SaveModel(m, o.Out, save, o.Output, o.Model, warn)
	if err != nil {
		return nil, fmt.Errorf("convert: %w", err)
	}
	return &ConvertReport{Model: o.Model, Output: o.Out, Tensors: len(p.Tensors), DType: convert.DTypeName(dt), Compute: string(c),
		BytesBefore: p.BytesBefore, BytesAfter: p.BytesAfter, Folder: folder}, nil
}

// Check validates the options before any work (Convert checks them again at its entry): a bad
// --dtype or --compute is a usage error (ErrUsage).
func (o ConvertOptions) Check() error {
	_, _, err := o.config()
	return err
}

// config is the storage type and compute mode the options name (compute fp32 by default).
func (o ConvertOptions) config() (onnxpb.TensorProto_DataType, convert.Compute, error) {
	dt, err := convert.ParseDType(o.DType)
	if err != nil {
		return dt, "", fmt.Errorf("%w: --dtype: %v", ErrUsage, err)
	}
	c := convert.Compute(o.Compute)
	if c == "" {
		c = convert.ComputeFP32
	}
	if c != convert.ComputeFP32 && c != convert.ComputeNative {
		return dt, "", fmt.Errorf("%w: --compute %q: want fp32 or native", ErrUsage, o.Compute)
	}
	return dt, c, nil
}
