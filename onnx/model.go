package onnx

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/shears-ml/shears/onnx/onnxpb"
	"google.golang.org/protobuf/proto"
)

// Model is a loaded ONNX model: the protobuf plus the folder its external-data locations are
// relative to. Tensors with external data keep data_location = EXTERNAL until written.
type Model struct {
	Proto *onnxpb.ModelProto
	// Dir is the folder external-data locations resolve against ("" when the model has none).
	Dir string
	// Path is the file the model was loaded from ("" for a model built in memory).
	Path string

	ext *externalFiles // lazily opened external-data files (nil until first use)
}

// SaveOptions controls how Save lays out tensor data.
type SaveOptions struct {
	// ExternalData writes tensors of at least ExternalThreshold bytes to one data file next to
	// the model. Save externalises regardless when the total tensor bytes pass MaxInlineBytes.
	ExternalData bool
	// DataFile is the data file's name, relative to the model's folder. Default: "<model file>.data".
	DataFile string
	// ExternalThreshold is the smallest tensor (bytes) written externally. Default 1024.
	ExternalThreshold int64
	// Transform, when set, is applied to every initializer's raw little-endian bytes as it is
	// written (the weights stream through it, one tensor at a time). It returns the bytes to write,
	// which must have the same length. Used by passes that rewrite weights of large models.
	Transform func(name string, t *onnxpb.TensorProto, raw []byte) ([]byte, error)
	// TransformInto is Transform writing into a buffer Save provides: dst has the output's
	// length (the raw length, or dims × the new element size when retyped) and is all to be
	// written; raw must not be modified or kept. Save reuses both buffers from tensor to tensor
	// and writes dst to the data file while the next tensor is transformed, so streaming a large
	// model costs no allocation per tensor and no page-cache copy. At most one of Transform and
	// TransformInto may be set; Touches and Retype apply to either.
	TransformInto func(name string, t *onnxpb.TensorProto, raw, dst []byte) error
	// Touches, when set with Transform, names the tensors Transform changes; the others are
	// written as they are, external ones by a file-to-file copy instead of through a buffer.
	Touches func(name string) bool
	// Retype, when set, may give an initializer a new element type as it is written (a dtype
	// conversion such as float32 → float16, streamed like Transform). Where it returns ok, the
	// output tensor gets that data_type, and Transform (then required) receives the original bytes
	// and must return dims × the new element size bytes. The model in memory keeps its original
	// type, so its own reads stay valid.
	Retype func(name string, t *onnxpb.TensorProto) (onnxpb.TensorProto_DataType, bool)
	// ShareExternal makes the output refer to the source's external data instead of copying it:
	// every initializer that is external in m and that Save would write unchanged (no Transform,
	// not retyped) keeps its file, offset and length, with the location rewritten relative to the
	// output's folder. Only new or inline tensors go to DataFile. So a super-network (a base plus
	// a few MB of adapters) costs no second copy of a 13 GB base on disk, and a session of it maps
	// the base's own file. The shared file must lie in the output's folder or below it (ONNX
	// locations are relative and never contain ".."; see CanShareExternal), and DataFile must not
	// be one of the shared files; otherwise Save fails, naming both. The output then depends on
	// the base's data file: deleting or rewriting it breaks the output.
	ShareExternal bool
}

// MaxInlineBytes is the total tensor size above which Save always writes external data:
// C++ protobuf (onnxruntime, the python checker) refuses messages over 2 GiB.
const MaxInlineBytes = 1_800_000_000

// ExternalAlign is the alignment of every tensor's offset in an external-data file, so that
// onnxruntime can mmap it.
const ExternalAlign = 4096

// Load reads an ONNX model file. External data is not read: tensors keep their references,
// which are checked (location inside the model's folder, length against dims, offset+length
// within the file) and read on demand by RawData, Float32s and Save.
func Load(path string) (*Model, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("onnx: load: %w", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("onnx: load %s: %w", path, err)
	}
	m, err := load(data, filepath.Dir(abs), path)
	if err != nil {
		return nil, err
	}
	m.Path = path
	return m, nil
}

// LoadBytes parses a serialized model; dir is the folder its external-data locations resolve
// against ("" for the working directory).
func LoadBytes(data []byte, dir string) (*Model, error) {
	return load(data, dir, "<bytes>")
}

func load(data []byte, dir, name string) (*Model, error) {
	mp := &onnxpb.ModelProto{}
	if err := proto.Unmarshal(data, mp); err != nil {
		return nil, fmt.Errorf("onnx: load %s: not a valid ONNX protobuf (truncated or corrupt?): %w", name, err)
	}
	if mp.GetGraph() == nil {
		return nil, fmt.Errorf("onnx: load %s: model has no graph (truncated or not an ONNX model?)", name)
	}
	m := &Model{Proto: mp, Dir: dir}
	sizes := map[string]int64{}
	var errs []error
	forEachTensor(mp.GetGraph(), func(t *onnxpb.TensorProto) {
		if len(errs) >= 10 {
			return
		}
		if err := checkDims(t); err != nil {
			errs = append(errs, err)
			return
		}
		var err error
		if isExternal(t) {
			err = m.checkExternalRef(t, sizes)
		} else {
			err = checkTensorLength(t)
		}
		if err != nil {
			errs = append(errs, err)
		}
	})
	if len(errs) > 0 {
		return nil, fmt.Errorf("onnx: load %s: %w", name, errors.Join(errs...))
	}
	if err := CheckDataIDs(m.externalDir(), dataIDs(mp)); err != nil {
		return nil, fmt.Errorf("onnx: load %s: %w", name, err)
	}
	return m, nil
}

// forEachTensor calls fn on every tensor of g: initializers, sparse initializers' parts, and
// tensors in node attributes, recursing into subgraphs.
func forEachTensor(g *onnxpb.GraphProto, fn func(*onnxpb.TensorProto)) {
	if g == nil {
		return
	}
	for _, t := range g.GetInitializer() {
		fn(t)
	}
	for _, s := range g.GetSparseInitializer() {
		if s.GetValues() != nil {
			fn(s.GetValues())
		}
		if s.GetIndices() != nil {
			fn(s.GetIndices())
		}
	}
	for _, n := range g.GetNode() {
		for _, a := range n.GetAttribute() {
			if a.GetT() != nil {
				fn(a.GetT())
			}
			for _, t := range a.GetTensors() {
				fn(t)
			}
			forEachTensor(a.GetG(), fn)
			for _, sg := range a.GetGraphs() {
				forEachTensor(sg, fn)
			}
		}
	}
}

// Graph is the model's main graph (nil for an empty model).
func (m *Model) Graph() *onnxpb.GraphProto { return m.Proto.GetGraph() }

// Initializer returns the main graph's initializer called name, or nil.
func (m *Model) Initializer(name string) *onnxpb.TensorProto {
	for _, t := range m.Graph().GetInitializer() {
		if t.GetName() == name {
			return t
		}
	}
	return nil
}

// Marshal serializes the model as it is, external references intact: a session built from
// these bytes must be told that its external-data folder is m.Dir.
func (m *Model) Marshal() ([]byte, error) {
	if m == nil || m.Proto == nil {
		return nil, fmt.Errorf("onnx: marshal: no model")
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m.Proto)
	if err != nil {
		return nil, fmt.Errorf("onnx: marshal: %w", err)
	}
	return b, nil
}

// MaxElements bounds a tensor's element count at load (2^40, about 4 TB of float32): dims
// beyond it, or negative, are corrupt, and stages would otherwise report negative parameter
// counts or allocate absurd buffers.
const MaxElements = 1 << 40

// checkDims refuses negative dims and tensors beyond MaxElements.
func checkDims(t *onnxpb.TensorProto) error {
	for _, d := range t.GetDims() {
		if d < 0 {
			return fmt.Errorf("tensor %q: negative dim in %v", t.GetName(), t.GetDims())
		}
	}
	if n := NumElements(t.GetDims()); n < 0 || n > MaxElements {
		return fmt.Errorf("tensor %q: dims %v hold more than 2^40 elements (corrupt dims?)", t.GetName(), t.GetDims())
	}
	return nil
}
