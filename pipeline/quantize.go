package pipeline

import (
	"fmt"
	"time"

	"github.com/shears-ml/shears/calibrate"
	"github.com/shears-ml/shears/deploy"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/runtime"
	"github.com/shears-ml/shears/transform/layers"
	"github.com/shears-ml/shears/transform/quant"
)

// QuantizeOptions are the quantize stage's options (the flags of "shears quantize").
type QuantizeOptions struct {
	Model, Out  string
	Bits        int    // 4 or 8
	BlockSize   int    // 32, 64 or 128 (default 32)
	Method      string // rtn (default) or gptq
	Symmetric   bool   // no zero points (the operator's default 2^(bits−1))
	IncludeHead bool   // quantize the LM head too
	Include     string // regexps over node, weight or role
	Exclude     string
	// GPTQ calibration, as for Wanda.
	Calib, Tokenizer string
	Samples, SeqLen  int
	Seed             uint64
	Damp             float64 // GPTQ damping as a fraction of the Hessian's mean diagonal (default 0.01)
	// AccuracyLevel is MatMulNBits' accuracy_level: 0 (float activations) or 4 (int8).
	AccuracyLevel int
	External      bool // force external data (automatic when the input has it)
	Runtime       runtime.Options
	// Output writes a model folder (serving runtimes: onnxruntime GenAI runs MatMulNBits int4
	// models) instead of a file; Warn receives what the folder lacks.
	Output Output
	// Progress, when set, receives GPTQ's calibration progress.
	Progress ProgressFunc
	// AllowNonFinite quantizes a model whose weights hold NaN or Inf (refused by default);
	// Warn then receives the warning (and what a model folder lacks).
	AllowNonFinite bool
	Warn           func(string)
}

// QuantizeReport is what the quantize stage measured, read back from the written file.
type QuantizeReport struct {
	Model     string           `json:"model"`
	Output    string           `json:"output"`
	Method    string           `json:"method"`
	Bits      int              `json:"bits"`
	BlockSize int              `json:"block_size"`
	Symmetric bool             `json:"symmetric"`
	Samples   int              `json:"samples,omitempty"`
	SeqLen    int              `json:"seq_len,omitempty"`
	Layers    []QuantizedLayer `json:"layers"`
	// FloatBytes are the quantized linears' float32 bytes (K·N·4); Bytes their packed weights,
	// scales and zero points as written.
	FloatBytes int64   `json:"float32_bytes"`
	Bytes      int64   `json:"bytes"`
	Ratio      float64 `json:"ratio"`
	// BaseZeros are the input weights' zeros; ZerosKept is true when every one of them
	// dequantizes to exactly 0 in the output (checked on the written file).
	BaseZeros int64   `json:"base_zeros"`
	ZerosKept bool    `json:"zeros_kept"`
	Sparsity  float64 `json:"sparsity"` // dequantized zeros / elements over the quantized linears
	// Padded counts the layers whose input size the block size does not divide (their last
	// block is padded, which costs bytes).
	Padded  int                `json:"padded_layers"`
	Seconds map[string]float64 `json:"seconds"`
	// Folder is what a model folder holds (Output.Format folder only).
	Folder *deploy.Report `json:"folder,omitempty"`
}

// QuantizedLayer is one quantized linear as written.
type QuantizedLayer struct {
	Name      string  `json:"name"`
	Block     int     `json:"block"`
	Role      string  `json:"role"`
	In        int64   `json:"in"`
	Out       int64   `json:"out"`
	Bytes     int64   `json:"bytes"`
	BaseZeros int64   `json:"base_zeros"`
	Sparsity  float64 `json:"sparsity"`
}

func (o *QuantizeOptions) defaults() {
	if o.Method == "" {
		o.Method = QuantRTN
	}
	if o.Damp == 0 {
		o.Damp = DefaultDamp
	}
	o.BlockSize = or(o.BlockSize, DefaultBlockSize)
	o.Samples = or(o.Samples, DefaultCalibSamples)
	o.SeqLen = or(o.SeqLen, DefaultCalibSeqLen)
}

// Check validates the options before any file is read (Quantize checks them again at its
// entry): a bad value names its flag and is a usage error (ErrUsage). gptq, like Wanda, needs
// a tokenizer only for text data.
func (o QuantizeOptions) Check() error {
	o.defaults()
	if o.Method != QuantRTN && o.Method != QuantGPTQ {
		return usageIf(true, fmt.Sprintf("--method %q: want rtn or gptq", o.Method))
	}
	gptq := o.Method == QuantGPTQ
	return firstErr(usageIf(o.Out == "", "-o OUT.onnx is required"),
		usageIf(o.Bits != 4 && o.Bits != 8, fmt.Sprintf("--bits %d: want 4 or 8 (MatMulNBits kernels exist for both)", o.Bits)),
		usageIf(o.BlockSize != 32 && o.BlockSize != 64 && o.BlockSize != 128, fmt.Sprintf("--block-size %d: want 32, 64 or 128", o.BlockSize)),
		usageIf(o.AccuracyLevel != 0 && o.AccuracyLevel != 4, fmt.Sprintf("--accuracy-level %d: want 0 (activations as they are) or 4 (int8 activations)", o.AccuracyLevel)),
		usageIf(gptq && o.Calib == "", `gptq needs --calib FILE (with --tokenizer TOK unless the file is pre-tokenized {"ids": [...]} .jsonl), or use --method rtn`),
		usageIf(gptq && !(o.Damp > 0 && o.Damp < 1), fmt.Sprintf("--damp %g: want a fraction in (0, 1)", o.Damp)))
}

func (o QuantizeOptions) config() quant.Config {
	return quant.Config{Bits: o.Bits, BlockSize: o.BlockSize, Symmetric: o.Symmetric}
}

// Quantize turns every target linear into a MatMulNBits node and writes o.Out atomically. A
// block size that does not divide a layer's input size is padded (the operator's own layout:
// k_blocks = ceil(K / block_size)). A float16 base is quantized from its float16 weights, with
// scales in the activations' type. The runtime must be initialised for gptq.
func Quantize(o QuantizeOptions) (*QuantizeReport, error) {
	o.defaults()
	if err := o.Check(); err != nil {
		return nil, err
	}
	if f, _ := ParseFormat(o.Output.Format); f == FormatHF {
		return nil, fmt.Errorf("quantize: --format hf writes float safetensors; a MatMulNBits model goes to an onnx file or a model folder")
	}
	secs := map[string]float64{}
	t0 := time.Now()
	in, err := openWeightStage(weightStage{verb: "quantize", model: o.Model, out: o.Out, output: o.Output, include: o.Include, exclude: o.Exclude, allowNonFinite: o.AllowNonFinite, warn: o.Warn, includeHead: o.IncludeHead})
	if err != nil {
		return nil, err
	}
	defer in.close()
	sink, m, targets := in.sink, in.m, in.targets
	cfg := o.config()
	plan, err := quant.NewPlan(m, targets, cfg)
	if err != nil {
		return nil, err
	}
	plan.AccuracyLevel = o.AccuracyLevel
	// Zeros of the base, counted before the rewrite removes the float weights.
	baseZeros := map[string]int64{}
	for _, l := range targets {
		z, _, err := layers.CountZeros(m, l)
		if err != nil {
			return nil, err
		}
		baseZeros[l.Node] = z
	}
	secs["load"] = time.Since(t0).Seconds()
	rep := &QuantizeReport{Model: o.Model, Output: o.Out, Method: o.Method, Bits: o.Bits, BlockSize: o.BlockSize, Symmetric: o.Symmetric, Seconds: secs}
	t0 = time.Now()
	var layersOf map[string]*quant.Layer
	if o.Method == QuantGPTQ {
		if layersOf, err = gptqLayers(m, targets, cfg, o, rep); err != nil {
			return nil, err
		}
		secs["calibrate"] = time.Since(t0).Seconds()
		t0 = time.Now()
	}
	// Zero positions per layer, to check them on the written file (a bitmap: 1 bit per weight).
	zeroMask := map[string][]uint64{}
	for _, t := range plan.Targets {
		w, err := quant.Weight(m, t.Linear)
		if err != nil {
			return nil, err
		}
		zeroMask[t.Linear.Node] = zeroBits(w)
		l := layersOf[t.Linear.Node]
		if l == nil {
			if l, err = quant.RTN(w, t.K, t.N, cfg); err != nil {
				return nil, fmt.Errorf("quantize %s: %w", t.Linear.Node, err)
			}
		}
		if err := plan.ApplyTarget(m, t, l); err != nil {
			return nil, err
		}
		delete(layersOf, t.Linear.Node)
	}
	secs["quantize"] = time.Since(t0).Seconds()
	t0 = time.Now()
	if err := m.Save(sink.path, sink.saveOptions(onnx.SaveOptions{ExternalData: o.External || m.HasExternal()})); err != nil {
		return nil, err
	}
	secs["save"] = time.Since(t0).Seconds()
	if err := readBackQuantized(rep, sink.path, plan, zeroMask, baseZeros); err != nil {
		return nil, err
	}
	if rep.Folder, err = sink.finish(o.Model, o.Tokenizer, o.Warn); err != nil {
		return nil, err
	}
	return rep, nil
}

// readBackQuantized fills the report from the written file: bytes, sparsity, and whether every
// zero of the base dequantizes to exactly 0.
func readBackQuantized(rep *QuantizeReport, path string, plan *quant.Plan, zeroMask map[string][]uint64, baseZeros map[string]int64) error {
	out, err := onnx.Load(path)
	if err != nil {
		return err
	}
	defer out.Close()
	byNode := map[string]*quant.Target{}
	for i := range plan.Targets {
		byNode[plan.Targets[i].Linear.Node] = &plan.Targets[i]
	}
	rep.ZerosKept = true
	var zeros, total int64
	for _, n := range out.Graph().GetNode() {
		t := byNode[n.GetName()]
		if t == nil || n.GetOpType() != quant.OpType {
			continue
		}
		l, bytes, err := quant.ReadNode(out, n)
		if err != nil {
			return err
		}
		deq := l.Dequant()
		var z int64
		for i, v := range deq {
			if v == 0 {
				z++
			} else if zeroMask[n.GetName()][i/64]>>(i%64)&1 == 1 {
				rep.ZerosKept = false
			}
		}
		zeros, total = zeros+z, total+int64(len(deq))
		if l.K%l.Config.BlockSize != 0 {
			rep.Padded++
		}
		rep.BaseZeros += baseZeros[n.GetName()]
		rep.FloatBytes += int64(len(deq)) * 4
		rep.Bytes += bytes
		rep.Layers = append(rep.Layers, QuantizedLayer{Name: n.GetName(), Block: t.Linear.Block, Role: t.Linear.Role, In: t.Linear.In, Out: t.Linear.Out,
			Bytes: bytes, BaseZeros: baseZeros[n.GetName()], Sparsity: float64(z) / float64(len(deq))})
	}
	if len(rep.Layers) != len(plan.Targets) {
		return fmt.Errorf("quantize: %s holds %d of the %d planned MatMulNBits nodes", path, len(rep.Layers), len(plan.Targets))
	}
	rep.Sparsity = float64(zeros) / float64(total)
	rep.Ratio = float64(rep.Bytes) / float64(rep.FloatBytes)
	return nil
}

// zeroBits is a bitmap of w's exact zeros (+0 and −0).
func zeroBits(w []float32) []uint64 {
	b := make([]uint64, (len(w)+63)/64)
	for i, v := range w {
		if v == 0 {
			b[i/64] |= 1 << (i % 64)
		}
	}
	return b
}

// gptqLayers quantizes the targets with GPTQ on calibration windows (sequential, as Wanda).
func gptqLayers(m *onnx.Model, targets []layers.Linear, cfg quant.Config, o QuantizeOptions, rep *QuantizeReport) (map[string]*quant.Layer, error) {
	t0 := time.Now()
	windows, seqLen, err := calibrationWindows(m, "quantize", o.Calib, o.Tokenizer, o.Samples, o.SeqLen, o.Seed)
	if err != nil {
		return nil, err
	}
	rep.Samples, rep.SeqLen = len(windows), seqLen
	rep.Seconds["data"] = time.Since(t0).Seconds()
	q, _, err := calibrate.GPTQ(m, targets, cfg, windows, quant.GPTQOptions{Damp: o.Damp}, calibrate.Options{Runtime: o.Runtime, Progress: o.Progress})
	return q, err
}
