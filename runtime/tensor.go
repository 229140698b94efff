package runtime

import (
	"encoding/binary"
	"fmt"
	"math"

	ort "github.com/yalue/onnxruntime_go"
)

// DType is a tensor element type. The values are ONNX TensorProto.DataType numbers (which are
// also onnxruntime's), so they convert to and from onnxpb.TensorProto_DataType directly.
type DType int32

// Element types the toolkit moves in and out of sessions.
const (
	Undefined DType = 0
	Float32   DType = 1
	Uint8     DType = 2
	Int8      DType = 3
	Int32     DType = 6
	Int64     DType = 7
	Bool      DType = 9
	Float16   DType = 10
	Float64   DType = 11
	BFloat16  DType = 16
)

// String is the ONNX name of the type.
func (d DType) String() string {
	switch d {
	case Undefined:
		return "undefined"
	case Float32:
		return "float32"
	case Uint8:
		return "uint8"
	case Int8:
		return "int8"
	case Int32:
		return "int32"
	case Int64:
		return "int64"
	case Bool:
		return "bool"
	case Float16:
		return "float16"
	case Float64:
		return "float64"
	case BFloat16:
		return "bfloat16"
	}
	return fmt.Sprintf("dtype(%d)", int32(d))
}

// Size is the element size in bytes (0 for types the package does not carry).
func (d DType) Size() int {
	switch d {
	case Uint8, Int8, Bool:
		return 1
	case Float16, BFloat16:
		return 2
	case Float32, Int32:
		return 4
	case Int64, Float64:
		return 8
	}
	return 0
}

// Tensor is a dense host tensor. Exactly one data field is used: F32, F64 or I64 for those types,
// Raw (little-endian bytes, as in TensorProto.raw_data) for every other type, e.g. fp16 and bf16.
// Sessions read and write the slices in place, so a Tensor bound with Session.Bind is shared with
// onnxruntime until the Bound is closed.
type Tensor struct {
	DType DType
	Shape []int64
	F32   []float32
	F64   []float64
	I64   []int64
	Raw   []byte
}

// F32 makes a float32 tensor that uses data (not a copy).
func F32(shape []int64, data []float32) *Tensor {
	return &Tensor{DType: Float32, Shape: shape, F32: data}
}

// F64 makes a float64 tensor that uses data (not a copy).
func F64(shape []int64, data []float64) *Tensor {
	return &Tensor{DType: Float64, Shape: shape, F64: data}
}

// I64 makes an int64 tensor that uses data (not a copy).
func I64(shape []int64, data []int64) *Tensor {
	return &Tensor{DType: Int64, Shape: shape, I64: data}
}

// RawTensor makes a tensor of any carried type from its little-endian bytes (not a copy).
func RawTensor(dt DType, shape []int64, raw []byte) *Tensor {
	return &Tensor{DType: dt, Shape: shape, Raw: raw}
}

// Zeros makes a zero-filled tensor of the given type and static shape, e.g. to preallocate an output.
func Zeros(dt DType, shape []int64) (*Tensor, error) {
	n, err := numElements(shape)
	if err != nil {
		return nil, err
	}
	t := &Tensor{DType: dt, Shape: append([]int64{}, shape...)}
	switch dt {
	case Float32:
		t.F32 = make([]float32, n)
	case Float64:
		t.F64 = make([]float64, n)
	case Int64:
		t.I64 = make([]int64, n)
	default:
		if dt.Size() == 0 {
			return nil, fmt.Errorf("runtime: element type %s is not supported", dt)
		}
		t.Raw = make([]byte, n*int64(dt.Size()))
	}
	return t, nil
}

// View is a tensor of the given shape over the first elements of t's data, sharing t's memory
// (the slice is extended into its spare capacity when the shape needs more elements than t has):
// a buffer reused from run to run for outputs whose shape changes, such as a growing KV cache.
// It is an error when t's capacity is too small.
func (t *Tensor) View(shape []int64) (*Tensor, error) {
	n, err := numElements(shape)
	if err != nil {
		return nil, err
	}
	v := &Tensor{DType: t.DType, Shape: shape}
	var have int
	switch t.DType {
	case Float32:
		if have = cap(t.F32); int64(have) >= n {
			v.F32 = t.F32[:n]
		}
	case Float64:
		if have = cap(t.F64); int64(have) >= n {
			v.F64 = t.F64[:n]
		}
	case Int64:
		if have = cap(t.I64); int64(have) >= n {
			v.I64 = t.I64[:n]
		}
	default:
		size := int64(t.DType.Size())
		if size == 0 {
			return nil, fmt.Errorf("runtime: element type %s is not supported", t.DType)
		}
		if have = cap(t.Raw) / int(size); int64(have) >= n {
			v.Raw = t.Raw[:n*size]
		}
	}
	if int64(have) < n {
		return nil, fmt.Errorf("runtime: a view of shape %v needs %d elements, the %s buffer holds %d", shape, n, t.DType, have)
	}
	return v, nil
}

// NumElements is the product of the shape (1 for a scalar).
func (t *Tensor) NumElements() int64 {
	n, _ := numElements(t.Shape)
	return n
}

func numElements(shape []int64) (int64, error) {
	n := int64(1)
	for i, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("runtime: shape %v: dimension %d is %d (not a static shape)", shape, i, d)
		}
		if d != 0 && n > math.MaxInt64/d {
			return 0, fmt.Errorf("runtime: shape %v overflows", shape)
		}
		n *= d
	}
	return n, nil
}

// check verifies that the data field matching DType has exactly the shape's element count.
func (t *Tensor) check() error {
	if t == nil {
		return fmt.Errorf("nil tensor")
	}
	n, err := numElements(t.Shape)
	if err != nil {
		return err
	}
	var have int64
	switch t.DType {
	case Float32:
		have = int64(len(t.F32))
	case Float64:
		have = int64(len(t.F64))
	case Int64:
		have = int64(len(t.I64))
	default:
		if t.DType.Size() == 0 {
			return fmt.Errorf("element type %s is not supported", t.DType)
		}
		if len(t.Raw)%t.DType.Size() != 0 {
			return fmt.Errorf("%s tensor has %d raw bytes, not a multiple of %d", t.DType, len(t.Raw), t.DType.Size())
		}
		have = int64(len(t.Raw) / t.DType.Size())
	}
	if have != n {
		return fmt.Errorf("%s tensor of shape %v needs %d elements, has %d", t.DType, t.Shape, n, have)
	}
	return nil
}

// value wraps t as an onnxruntime value that shares t's memory. Rank-0 tensors cannot share
// memory (onnxruntime_go scalars own theirs), so for them fromScalar copies the result back after
// a run; for other tensors it is nil. The caller destroys v.
func (t *Tensor) value() (v ort.Value, fromScalar func(), err error) {
	if err := t.check(); err != nil {
		return nil, nil, err
	}
	if len(t.Shape) == 0 {
		return t.scalarValue()
	}
	shape := ort.NewShape(t.Shape...)
	switch t.DType {
	case Float32:
		v, err = ort.NewTensor(shape, t.F32)
	case Float64:
		v, err = ort.NewTensor(shape, t.F64)
	case Int64:
		v, err = ort.NewTensor(shape, t.I64)
	default:
		raw := t.Raw
		if len(raw) == 0 {
			// A tensor with no elements (an empty fp16 KV cache, [1, h, 0, d]): onnxruntime_go
			// wants at least one byte of data, onnxruntime reads none.
			raw = make([]byte, t.DType.Size())
		}
		v, err = ort.NewCustomDataTensor(shape, raw, ort.TensorElementDataType(t.DType))
	}
	if err != nil {
		return nil, nil, fmt.Errorf("creating %s tensor %v: %v", t.DType, t.Shape, err)
	}
	return v, nil, nil
}

func (t *Tensor) scalarValue() (ort.Value, func(), error) {
	switch t.DType {
	case Float32:
		s, err := ort.NewScalar(t.F32[0])
		return s, func() { t.F32[0] = s.GetData() }, wrapScalarErr(t, err)
	case Float64:
		s, err := ort.NewScalar(t.F64[0])
		return s, func() { t.F64[0] = s.GetData() }, wrapScalarErr(t, err)
	case Int64:
		s, err := ort.NewScalar(t.I64[0])
		return s, func() { t.I64[0] = s.GetData() }, wrapScalarErr(t, err)
	case Int32:
		s, err := ort.NewScalar(int32(binary.LittleEndian.Uint32(t.Raw)))
		return s, func() { binary.LittleEndian.PutUint32(t.Raw, uint32(s.GetData())) }, wrapScalarErr(t, err)
	case Bool:
		s, err := ort.NewScalar(t.Raw[0] != 0)
		return s, func() { t.Raw[0] = boolByte(s.GetData()) }, wrapScalarErr(t, err)
	case Uint8:
		s, err := ort.NewScalar(t.Raw[0])
		return s, func() { t.Raw[0] = s.GetData() }, wrapScalarErr(t, err)
	case Int8:
		s, err := ort.NewScalar(int8(t.Raw[0]))
		return s, func() { t.Raw[0] = byte(s.GetData()) }, wrapScalarErr(t, err)
	}
	return nil, nil, fmt.Errorf("rank-0 %s tensors are not supported (onnxruntime_go has no custom-type scalars)", t.DType)
}

func wrapScalarErr(t *Tensor, err error) error {
	if err != nil {
		return fmt.Errorf("creating %s scalar: %v", t.DType, err)
	}
	return nil
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// fromValue copies an onnxruntime-allocated output into a Tensor. onnxruntime_go has already
// copied the data into Go memory, so the returned slices stay valid after v is destroyed.
func fromValue(v ort.Value) (*Tensor, error) {
	shape := []int64(v.GetShape())
	if shape == nil {
		shape = []int64{}
	}
	switch x := v.(type) {
	case *ort.Tensor[float32]:
		return &Tensor{DType: Float32, Shape: shape, F32: x.GetData()}, nil
	case *ort.Tensor[float64]:
		return &Tensor{DType: Float64, Shape: shape, F64: x.GetData()}, nil
	case *ort.Tensor[int64]:
		return &Tensor{DType: Int64, Shape: shape, I64: x.GetData()}, nil
	case *ort.Tensor[int32]:
		d := x.GetData()
		raw := make([]byte, 4*len(d))
		for i, e := range d {
			binary.LittleEndian.PutUint32(raw[4*i:], uint32(e))
		}
		return &Tensor{DType: Int32, Shape: shape, Raw: raw}, nil
	case *ort.Tensor[bool]:
		d := x.GetData()
		raw := make([]byte, len(d))
		for i, e := range d {
			raw[i] = boolByte(e)
		}
		return &Tensor{DType: Bool, Shape: shape, Raw: raw}, nil
	case *ort.Tensor[uint8]:
		return &Tensor{DType: Uint8, Shape: shape, Raw: append([]byte{}, x.GetData()...)}, nil
	case *ort.Tensor[int8]:
		d := x.GetData()
		raw := make([]byte, len(d))
		for i, e := range d {
			raw[i] = byte(e)
		}
		return &Tensor{DType: Int8, Shape: shape, Raw: raw}, nil
	}
	return nil, fmt.Errorf("output of type %T is not supported", v)
}

// autoAllocOK reports whether onnxruntime_go copies an output of this type correctly when it
// allocates it itself; for the others (fp16, bf16, ...) the copy is sized in elements instead of
// bytes, so those outputs must be preallocated.
func autoAllocOK(dt DType) bool {
	switch dt {
	case Float32, Float64, Int64, Int32, Bool, Uint8, Int8:
		return true
	}
	return false
}
