package safetensors

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"slices"
	"sort"

	"github.com/shears-ml/shears/onnx"
)

// Tensor is one named tensor: its dtype (a safetensors name such as "F32"), shape and raw
// little-endian bytes.
type Tensor struct {
	Name  string
	DType string
	Shape []int64
	Data  []byte
}

// File is a read safetensors file.
type File struct {
	Tensors  []Tensor          // in header offset order
	Metadata map[string]string // the "__metadata__" entry (nil when absent)
	index    map[string]int
}

// sizes of the dtypes this package accepts.
var sizes = map[string]int{
	"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
	"U64": 8, "U32": 4, "U16": 2, "F8_E4M3": 1, "F8_E5M2": 1,
}

// maxHeader bounds the JSON header (the reference reader refuses headers over 100 MB too).
const maxHeader = 100 << 20

// F32 makes a float32 tensor.
func F32(name string, shape []int64, v []float32) Tensor {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return Tensor{Name: name, DType: "F32", Shape: slices.Clone(shape), Data: b}
}

// Float32s decodes an F32 tensor.
func (t Tensor) Float32s() ([]float32, error) {
	if t.DType != "F32" {
		return nil, fmt.Errorf("safetensors: tensor %q is %s, not F32", t.Name, t.DType)
	}
	out := make([]float32, len(t.Data)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(t.Data[4*i:]))
	}
	return out, nil
}

type entry struct {
	DType   string   `json:"dtype"`
	Shape   []int64  `json:"shape"`
	Offsets [2]int64 `json:"data_offsets"`
}

// Encode serialises tensors (sorted by name) and metadata.
func Encode(tensors []Tensor, metadata map[string]string) ([]byte, error) {
	ts := slices.Clone(tensors)
	sort.Slice(ts, func(i, j int) bool { return ts[i].Name < ts[j].Name })
	header := map[string]any{}
	if len(metadata) > 0 {
		header["__metadata__"] = metadata
	}
	var off int64
	for i, t := range ts {
		if t.Name == "" || t.Name == "__metadata__" {
			return nil, fmt.Errorf("safetensors: tensor %d has the reserved or empty name %q", i, t.Name)
		}
		if i > 0 && ts[i-1].Name == t.Name {
			return nil, fmt.Errorf("safetensors: tensor %q given twice", t.Name)
		}
		if err := checkSize(t.Name, t.DType, t.Shape, int64(len(t.Data))); err != nil {
			return nil, err
		}
		shape := t.Shape
		if shape == nil {
			shape = []int64{}
		}
		header[t.Name] = entry{DType: t.DType, Shape: shape, Offsets: [2]int64{off, off + int64(len(t.Data))}}
		off += int64(len(t.Data))
	}
	h, err := json.Marshal(header) // map keys are sorted: deterministic
	if err != nil {
		return nil, fmt.Errorf("safetensors: header: %w", err)
	}
	for len(h)%8 != 0 {
		h = append(h, ' ')
	}
	out := make([]byte, 8, 8+len(h)+int(off))
	binary.LittleEndian.PutUint64(out, uint64(len(h)))
	out = append(out, h...)
	for _, t := range ts {
		out = append(out, t.Data...)
	}
	return out, nil
}

func checkSize(name, dtype string, shape []int64, n int64) error {
	want, err := byteLen(name, dtype, shape)
	if err != nil {
		return err
	}
	if want != n {
		return fmt.Errorf("safetensors: tensor %q: %d bytes for %s %v (want %d)", name, n, dtype, shape, want)
	}
	return nil
}

// Write writes tensors and metadata to path atomically: a temporary file next to it is written,
// synced and renamed, so a reader (or a resumed run) never sees half a file.
func Write(path string, tensors []Tensor, metadata map[string]string) error {
	b, err := Encode(tensors, metadata)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return onnx.WriteFileAtomic(path, b)
}

// Read reads and checks a safetensors file.
func Read(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	f, err := Decode(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// Decode parses a safetensors file's bytes; the tensors' Data alias b.
func Decode(b []byte) (*File, error) {
	if len(b) < 8 {
		return nil, fmt.Errorf("safetensors: %d bytes, too short for the header length", len(b))
	}
	n := binary.LittleEndian.Uint64(b)
	if n > maxHeader || n > uint64(len(b)-8) {
		return nil, fmt.Errorf("safetensors: header length %d does not fit the %d-byte file", n, len(b))
	}
	infos, meta, err := parseHeader(b[8:8+n], int64(len(b))-8-int64(n))
	if err != nil {
		return nil, err
	}
	data := b[8+n:]
	f := &File{Metadata: meta, index: map[string]int{}}
	for i, t := range infos {
		f.Tensors = append(f.Tensors, Tensor{Name: t.Name, DType: t.DType, Shape: t.Shape, Data: data[t.Begin:t.End:t.End]})
		f.index[t.Name] = i
	}
	return f, nil
}

// Get returns the tensor called name.
func (f *File) Get(name string) (Tensor, bool) {
	i, ok := f.index[name]
	if !ok {
		return Tensor{}, false
	}
	return f.Tensors[i], true
}

// Float32s decodes the F32 tensor called name.
func (f *File) Float32s(name string) ([]float32, error) {
	t, ok := f.Get(name)
	if !ok {
		return nil, fmt.Errorf("safetensors: no tensor %q", name)
	}
	return t.Float32s()
}
