package runtime

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/shears-ml/shears/onnx"

	ort "github.com/yalue/onnxruntime_go"
)

// Session is an onnxruntime inference session over one model. Runs may be concurrent; Close waits
// for them. Every output of the model is computed on each run (onnxruntime_go fixes the output
// list when the session is created); Run returns the ones asked for.
type Session struct {
	name    string
	inputs  []IOInfo
	outputs []IOInfo
	inIdx   map[string]int
	outIdx  map[string]int

	mu     sync.RWMutex // Run holds it shared, Close exclusively
	dyn    *ort.DynamicAdvancedSession
	closed bool
	bounds map[*Bound]struct{}

	prepacked bool
}

// OpenFile opens the model at path. External-data locations resolve relative to the model's folder.
func OpenFile(path string, opts Options) (*Session, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("runtime: opening model: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("runtime: opening model: %w", err)
	}
	info, err := readIO(f, fi.Size())
	f.Close()
	if err == nil {
		err = onnx.CheckDataIDs(filepath.Dir(path), info.dataIDs)
	}
	if err != nil {
		return nil, fmt.Errorf("runtime: model %s: %w", path, err)
	}
	return open(path, opts, "", info, func(so *ort.SessionOptions, in, out []string) (*ort.DynamicAdvancedSession, error) {
		return ort.NewDynamicAdvancedSession(path, in, out, so)
	})
}

// OpenBytes opens a serialized model. When externalDir is not empty, external-data locations
// resolve relative to it (onnxruntime would otherwise use the working directory). The bytes are
// not retained after OpenBytes returns.
func OpenBytes(model []byte, externalDir string, opts Options) (*Session, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	name := fmt.Sprintf("in-memory model (%d bytes)", len(model))
	if externalDir != "" {
		abs, err := filepath.Abs(externalDir)
		if err != nil {
			return nil, fmt.Errorf("runtime: %s: external-data folder %s: %w", name, externalDir, err)
		}
		if fi, err := os.Stat(abs); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("runtime: %s: external-data folder %s is not a directory", name, abs)
		}
		externalDir = abs
		name = fmt.Sprintf("in-memory model (%d bytes, external data in %s)", len(model), abs)
	}
	if len(model) == 0 {
		return nil, fmt.Errorf("runtime: %s: empty model", name)
	}
	info, err := readIO(bytes.NewReader(model), int64(len(model)))
	if err == nil && externalDir != "" {
		err = onnx.CheckDataIDs(externalDir, info.dataIDs)
	}
	if err != nil {
		return nil, fmt.Errorf("runtime: %s: %w", name, err)
	}
	return open(name, opts, externalDir, info, func(so *ort.SessionOptions, in, out []string) (*ort.DynamicAdvancedSession, error) {
		return ort.NewDynamicAdvancedSessionWithONNXData(model, in, out, so)
	})
}

func open(name string, opts Options, externalDir string, info modelInfo,
	create func(*ort.SessionOptions, []string, []string) (*ort.DynamicAdvancedSession, error)) (*Session, error) {
	ins, outs := info.inputs, info.outputs
	if len(ins) == 0 {
		return nil, fmt.Errorf("runtime: model %s has no inputs (onnxruntime_go cannot run such a model)", name)
	}
	prepack := opts.Prepack.resolve(info.nbits)
	so, err := opts.sessionOptions(prepack, externalDir)
	if err != nil {
		return nil, fmt.Errorf("runtime: model %s: %w", name, err)
	}
	defer so.Destroy()
	s := &Session{name: name, inputs: ins, outputs: outs, prepacked: prepacks(so, prepack),
		inIdx: map[string]int{}, outIdx: map[string]int{}, bounds: map[*Bound]struct{}{}}
	inNames := make([]string, len(ins))
	for i, in := range ins {
		inNames[i] = in.Name
		s.inIdx[in.Name] = i
	}
	outNames := make([]string, len(outs))
	for i, out := range outs {
		outNames[i] = out.Name
		s.outIdx[out.Name] = i
	}
	s.dyn, err = create(so, inNames, outNames)
	if err != nil {
		if opts.device() != "cpu" && looksLikeProvider(err.Error()) {
			err = opts.providerError(err)
		} else {
			err = errors.New(oneLine(err.Error()))
		}
		return nil, fmt.Errorf("runtime: creating a session for %s: %w", name, err)
	}
	return s, nil
}

// prepacks reads back from onnxruntime's session options whether pre-packing is on (the key
// unset is onnxruntime's default, on); want is what was asked, kept if the read fails.
func prepacks(so *ort.SessionOptions, want bool) bool {
	has, err := so.HasSessionConfigEntry(disablePrepacking)
	if err != nil {
		return want
	}
	if !has {
		return true
	}
	v, err := so.GetSessionConfigEntry(disablePrepacking)
	if err != nil {
		return want
	}
	return v != "1"
}

// looksLikeProvider tells a provider failure at session creation (a missing library, an absent
// device) from a bad model, so only the former gets the GPU installation hint.
func looksLikeProvider(msg string) bool {
	m := strings.ToLower(msg)
	for _, w := range []string{"provider", ".so", "cuda", "cudnn", "tensorrt", "webgpu", "vulkan", "dawn", "device", "gpu"} {
		if strings.Contains(m, w) {
			return true
		}
	}
	return false
}

// Prepacked reports whether onnxruntime pre-packs this session's constant weights: Options.Prepack
// resolved against the model (on for PrepackAuto when it runs MatMulNBits), as read back from
// the session options onnxruntime created the session with.
func (s *Session) Prepacked() bool { return s.prepacked }

// Name identifies the model in errors: its path, or a description of in-memory bytes.
func (s *Session) Name() string { return s.name }

// Inputs are the model's inputs in graph order (initializers excluded).
func (s *Session) Inputs() []IOInfo { return cloneInfo(s.inputs) }

// Outputs are the model's outputs in graph order.
func (s *Session) Outputs() []IOInfo { return cloneInfo(s.outputs) }

func cloneInfo(in []IOInfo) []IOInfo {
	out := make([]IOInfo, len(in))
	for i, v := range in {
		out[i] = IOInfo{Name: v.Name, DType: v.DType}
		if v.Dims != nil {
			out[i].Dims = append([]int64{}, v.Dims...)
		}
	}
	return out
}

// Run feeds every model input and returns the named outputs (all of them when outputs is empty).
// float32, float64 and int64 outputs (and int32, bool, int8, uint8) are allocated by onnxruntime.
// fp16/bf16 outputs and rank-0 outputs are preallocated from the model's declared shape, which
// must then be static; use RunWithShapes otherwise.
func (s *Session) Run(inputs map[string]*Tensor, outputs []string) (map[string]*Tensor, error) {
	return s.RunWithShapes(inputs, outputs, nil)
}

// RunWithShapes is Run with the exact shapes of some outputs given, so they are preallocated. It is
// needed for fp16/bf16 outputs with symbolic dimensions, which onnxruntime_go cannot allocate
// itself (it copies elements as bytes; ONNX-NOTES §1). A wrong shape is an onnxruntime error.
func (s *Session) RunWithShapes(inputs map[string]*Tensor, outputs []string, shapes map[string][]int64) (map[string]*Tensor, error) {
	into := make(map[string]*Tensor, len(shapes))
	for name, shape := range shapes {
		j, ok := s.outIdx[name]
		if !ok {
			return nil, fmt.Errorf("runtime: model %s: shape given for unknown output %q (outputs: %s)", s.name, name, names(s.outputs))
		}
		dt := s.outputs[j].DType
		if dt == Undefined {
			return nil, fmt.Errorf("runtime: model %s: output %q has no declared tensor type to preallocate", s.name, name)
		}
		t, err := Zeros(dt, shape)
		if err != nil {
			return nil, fmt.Errorf("runtime: model %s: output %q: %v", s.name, name, err)
		}
		into[name] = t
	}
	return s.RunInto(inputs, outputs, into)
}

// RunInto is Run with some outputs written straight into the caller's tensors, which must have
// the output's type and its exact shape for this run (a wrong shape is an onnxruntime error) and
// share no memory with an input: onnxruntime writes them in place, so the output is neither
// allocated nor copied out of onnxruntime. Loops that feed an output back as the next run's
// input (a KV cache) reuse their buffers this way. The returned map holds the into tensors
// themselves for the outputs asked for.
func (s *Session) RunInto(inputs map[string]*Tensor, outputs []string, into map[string]*Tensor) (map[string]*Tensor, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, fmt.Errorf("runtime: model %s: run on a closed session", s.name)
	}
	if err := s.checkInputs(inputs); err != nil {
		return nil, err
	}
	want := map[string]bool{}
	if len(outputs) == 0 {
		for _, o := range s.outputs {
			want[o.Name] = true
		}
	}
	for _, name := range outputs {
		if _, ok := s.outIdx[name]; !ok {
			return nil, fmt.Errorf("runtime: model %s has no output %q (outputs: %s)", s.name, name, names(s.outputs))
		}
		want[name] = true
	}
	if err := s.checkOutputs(into); err != nil {
		return nil, err
	}

	inVals := make([]ort.Value, len(s.inputs))
	for i, info := range s.inputs {
		v, _, err := inputs[info.Name].value()
		if err != nil {
			return nil, fmt.Errorf("runtime: model %s: input %q: %v", s.name, info.Name, err)
		}
		defer v.Destroy()
		inVals[i] = v
	}

	outVals := make([]ort.Value, len(s.outputs))
	pre := make([]*Tensor, len(s.outputs))
	var syncs []func()
	for j, info := range s.outputs {
		t := into[info.Name]
		if t == nil {
			var err error
			if t, err = s.prealloc(info); err != nil {
				return nil, err
			}
		}
		if t == nil {
			continue
		}
		v, sync, err := t.value()
		if err != nil {
			return nil, fmt.Errorf("runtime: model %s: output %q: %v", s.name, info.Name, err)
		}
		defer v.Destroy()
		outVals[j], pre[j] = v, t
		if sync != nil {
			syncs = append(syncs, sync)
		}
	}

	runErr := s.dyn.Run(inVals, outVals)
	// Whatever onnxruntime_go allocated is ours to destroy, even after a failed conversion.
	for j, v := range outVals {
		if pre[j] == nil && v != nil {
			defer v.Destroy()
		}
	}
	if runErr != nil {
		return nil, fmt.Errorf("runtime: running %s: %s", s.name, oneLine(runErr.Error()))
	}
	for _, f := range syncs {
		f()
	}
	res := make(map[string]*Tensor, len(want))
	for j, info := range s.outputs {
		if !want[info.Name] {
			continue
		}
		if pre[j] != nil {
			res[info.Name] = pre[j]
			continue
		}
		t, err := fromValue(outVals[j])
		if err != nil {
			return nil, fmt.Errorf("runtime: model %s: output %q: %v", s.name, info.Name, err)
		}
		res[info.Name] = t
	}
	return res, nil
}

// prealloc returns a zero tensor for an output that must be preallocated, or nil when onnxruntime
// can allocate it.
func (s *Session) prealloc(info IOInfo) (*Tensor, error) {
	scalar := info.Dims != nil && len(info.Dims) == 0
	if info.DType == Undefined || (autoAllocOK(info.DType) && !scalar) {
		return nil, nil
	}
	if !info.Static() {
		return nil, fmt.Errorf("runtime: model %s: output %q is %s with shape %v, which onnxruntime_go cannot allocate itself; "+
			"pass its shape with RunWithShapes (or a tensor to RunInto, or Bind one)", s.name, info.Name, info.DType, info.Dims)
	}
	t, err := Zeros(info.DType, info.Dims)
	if err != nil {
		return nil, fmt.Errorf("runtime: model %s: output %q: %v", s.name, info.Name, err)
	}
	return t, nil
}

// checkInputs requires exactly the model's inputs, with their declared element types.
func (s *Session) checkInputs(inputs map[string]*Tensor) error {
	var unknown []string
	for name := range inputs {
		if _, ok := s.inIdx[name]; !ok {
			unknown = append(unknown, fmt.Sprintf("%q", name))
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return fmt.Errorf("runtime: model %s has no input %s (inputs: %s)", s.name, strings.Join(unknown, ", "), names(s.inputs))
	}
	for _, info := range s.inputs {
		t, ok := inputs[info.Name]
		if !ok || t == nil {
			return fmt.Errorf("runtime: model %s: missing input %q", s.name, info.Name)
		}
		if err := checkTensor(info, t); err != nil {
			return fmt.Errorf("runtime: model %s: input %q: %v", s.name, info.Name, err)
		}
	}
	return nil
}

// checkOutputs checks tensors the caller gives for outputs (RunInto, Bind): known outputs, their
// declared element types and static dimensions.
func (s *Session) checkOutputs(outputs map[string]*Tensor) error {
	for name, t := range outputs {
		j, ok := s.outIdx[name]
		if !ok {
			return fmt.Errorf("runtime: model %s has no output %q (outputs: %s)", s.name, name, names(s.outputs))
		}
		if t == nil {
			return fmt.Errorf("runtime: model %s: output %q: nil tensor", s.name, name)
		}
		if err := checkTensor(s.outputs[j], t); err != nil {
			return fmt.Errorf("runtime: model %s: output %q: %v", s.name, name, err)
		}
	}
	return nil
}

// checkTensor compares a tensor with the declared type and static dimensions; onnxruntime would
// refuse a mismatch too, but without naming the model.
func checkTensor(info IOInfo, t *Tensor) error {
	if info.DType != Undefined && t.DType != info.DType {
		return fmt.Errorf("is %s, the model declares %s", t.DType, info.DType)
	}
	if info.Dims != nil {
		if len(t.Shape) != len(info.Dims) {
			return fmt.Errorf("has shape %v, the model declares rank %d %v", t.Shape, len(info.Dims), info.Dims)
		}
		for i, d := range info.Dims {
			if d >= 0 && t.Shape[i] != d {
				return fmt.Errorf("has shape %v, the model declares %v", t.Shape, info.Dims)
			}
		}
	}
	return t.check()
}

func names(infos []IOInfo) string {
	s := make([]string, len(infos))
	for i, in := range infos {
		s[i] = in.Name
	}
	return strings.Join(s, ", ")
}

// Close releases the session and every Bound made from it. It is idempotent.
func (s *Session) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	for b := range s.bounds {
		b.release()
	}
	s.bounds = nil
	if err := s.dyn.Destroy(); err != nil {
		return fmt.Errorf("runtime: closing %s: %v", s.name, err)
	}
	return nil
}
