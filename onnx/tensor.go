package onnx

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/shears-ml/shears/onnx/onnxpb"
)

// Float32Tensor makes an initializer holding v (little-endian raw_data) with the given dims.
func Float32Tensor(name string, dims []int64, v []float32) *onnxpb.TensorProto {
	raw := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(x))
	}
	return NewTensor(name, onnxpb.TensorProto_FLOAT, dims, raw)
}

// Int64Tensor makes an initializer holding v (little-endian raw_data) with the given dims.
func Int64Tensor(name string, dims []int64, v []int64) *onnxpb.TensorProto {
	raw := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(raw[8*i:], uint64(x))
	}
	return NewTensor(name, onnxpb.TensorProto_INT64, dims, raw)
}

// NewTensor makes an initializer of type dt whose raw little-endian bytes are raw.
// raw is kept, not copied.
func NewTensor(name string, dt onnxpb.TensorProto_DataType, dims []int64, raw []byte) *onnxpb.TensorProto {
	d := append([]int64(nil), dims...)
	return &onnxpb.TensorProto{Name: &name, DataType: int32Ptr(int32(dt)), Dims: d, RawData: raw}
}

func int32Ptr(v int32) *int32 { return &v }

// ElemSize is the byte size of one element of dt in raw_data, or 0 for types without a fixed
// byte width (STRING, UNDEFINED, the sub-byte INT4/UINT4/FLOAT4 types).
func ElemSize(dt onnxpb.TensorProto_DataType) int {
	switch dt {
	case onnxpb.TensorProto_UINT8, onnxpb.TensorProto_INT8, onnxpb.TensorProto_BOOL,
		onnxpb.TensorProto_FLOAT8E4M3FN, onnxpb.TensorProto_FLOAT8E4M3FNUZ,
		onnxpb.TensorProto_FLOAT8E5M2, onnxpb.TensorProto_FLOAT8E5M2FNUZ:
		return 1
	case onnxpb.TensorProto_UINT16, onnxpb.TensorProto_INT16, onnxpb.TensorProto_FLOAT16,
		onnxpb.TensorProto_BFLOAT16:
		return 2
	case onnxpb.TensorProto_FLOAT, onnxpb.TensorProto_INT32, onnxpb.TensorProto_UINT32:
		return 4
	case onnxpb.TensorProto_INT64, onnxpb.TensorProto_UINT64, onnxpb.TensorProto_DOUBLE,
		onnxpb.TensorProto_COMPLEX64:
		return 8
	case onnxpb.TensorProto_COMPLEX128:
		return 16
	}
	return 0
}

// Dims returns a copy of t's dims (a scalar has none).
func Dims(t *onnxpb.TensorProto) []int64 { return append([]int64{}, t.GetDims()...) }

// NumElements is the product of dims (1 for a scalar), or -1 when a dim is negative or the
// product overflows int64: callers must treat -1 as "unknown or invalid".
func NumElements(dims []int64) int64 {
	n := int64(1)
	for _, d := range dims {
		if d < 0 {
			return -1
		}
		if d != 0 && n > math.MaxInt64/d {
			return -1
		}
		n *= d
	}
	return n
}

// DataType is t's element type.
func DataType(t *onnxpb.TensorProto) onnxpb.TensorProto_DataType {
	return onnxpb.TensorProto_DataType(t.GetDataType())
}

// tensorByteLen is the raw byte length t's dims and type call for.
func tensorByteLen(t *onnxpb.TensorProto) (int64, error) {
	dt := DataType(t)
	es := int64(ElemSize(dt))
	if es == 0 {
		return 0, fmt.Errorf("tensor %q: data type %s has no fixed element size", t.GetName(), dt)
	}
	n := NumElements(t.GetDims())
	if n < 0 || n > math.MaxInt64/es {
		return 0, fmt.Errorf("tensor %q: invalid dims %v", t.GetName(), t.GetDims())
	}
	return n * es, nil
}

// isExternal reports whether t keeps its bytes in an external-data file.
func isExternal(t *onnxpb.TensorProto) bool {
	return t.GetDataLocation() == onnxpb.TensorProto_EXTERNAL
}

// RawData returns t's elements as raw little-endian bytes, whatever the storage: raw_data, the
// typed fields (float_data, int32_data, int64_data, double_data, uint64_data) or external data,
// which is read from disk on every call and not cached. For a tensor stored in raw_data the
// result aliases t.RawData: copy it before modifying.
func (m *Model) RawData(t *onnxpb.TensorProto) ([]byte, error) {
	if t == nil {
		return nil, fmt.Errorf("onnx: raw data of a nil tensor")
	}
	want, err := tensorByteLen(t)
	if err != nil {
		return nil, fmt.Errorf("onnx: %w", err)
	}
	if isExternal(t) {
		return m.readExternal(t, want)
	}
	raw, err := inlineRaw(t, want)
	if err != nil {
		return nil, fmt.Errorf("onnx: %w", err)
	}
	return raw, nil
}

// inlineRaw converts an inline tensor's storage to raw bytes of length want.
func inlineRaw(t *onnxpb.TensorProto, want int64) ([]byte, error) {
	name := t.GetName()
	dt := DataType(t)
	if t.RawData != nil || want == 0 {
		if int64(len(t.RawData)) != want {
			return nil, fmt.Errorf("tensor %q: raw_data holds %d bytes, dims %v of %s need %d",
				name, len(t.RawData), t.GetDims(), dt, want)
		}
		if t.RawData == nil {
			return []byte{}, nil
		}
		return t.RawData, nil
	}
	es := ElemSize(dt)
	count := func(have int, per int64) error {
		if need := want / int64(es) * per; int64(have) != need {
			return fmt.Errorf("tensor %q: typed data holds %d values, dims %v of %s need %d",
				name, have, t.GetDims(), dt, need)
		}
		return nil
	}
	out := make([]byte, 0, want)
	le := binary.LittleEndian
	switch dt {
	case onnxpb.TensorProto_FLOAT, onnxpb.TensorProto_COMPLEX64:
		per := int64(1)
		if dt == onnxpb.TensorProto_COMPLEX64 {
			per = 2
		}
		if err := count(len(t.FloatData), per); err != nil {
			return nil, err
		}
		for _, v := range t.FloatData {
			out = le.AppendUint32(out, math.Float32bits(v))
		}
	case onnxpb.TensorProto_DOUBLE, onnxpb.TensorProto_COMPLEX128:
		per := int64(1)
		if dt == onnxpb.TensorProto_COMPLEX128 {
			per = 2
		}
		if err := count(len(t.DoubleData), per); err != nil {
			return nil, err
		}
		for _, v := range t.DoubleData {
			out = le.AppendUint64(out, math.Float64bits(v))
		}
	case onnxpb.TensorProto_INT64:
		if err := count(len(t.Int64Data), 1); err != nil {
			return nil, err
		}
		for _, v := range t.Int64Data {
			out = le.AppendUint64(out, uint64(v))
		}
	case onnxpb.TensorProto_UINT32, onnxpb.TensorProto_UINT64:
		if err := count(len(t.Uint64Data), 1); err != nil {
			return nil, err
		}
		for _, v := range t.Uint64Data {
			if es == 4 {
				out = le.AppendUint32(out, uint32(v))
			} else {
				out = le.AppendUint64(out, v)
			}
		}
	case onnxpb.TensorProto_INT32, onnxpb.TensorProto_INT16, onnxpb.TensorProto_UINT16,
		onnxpb.TensorProto_INT8, onnxpb.TensorProto_UINT8, onnxpb.TensorProto_BOOL,
		onnxpb.TensorProto_FLOAT16, onnxpb.TensorProto_BFLOAT16,
		onnxpb.TensorProto_FLOAT8E4M3FN, onnxpb.TensorProto_FLOAT8E4M3FNUZ,
		onnxpb.TensorProto_FLOAT8E5M2, onnxpb.TensorProto_FLOAT8E5M2FNUZ:
		// int32_data carries one element per value, narrower types in its low bits.
		if err := count(len(t.Int32Data), 1); err != nil {
			return nil, err
		}
		for _, v := range t.Int32Data {
			switch es {
			case 4:
				out = le.AppendUint32(out, uint32(v))
			case 2:
				out = le.AppendUint16(out, uint16(v))
			default:
				out = append(out, byte(v))
			}
		}
	default:
		return nil, fmt.Errorf("tensor %q: no raw form for data type %s", name, dt)
	}
	return out, nil
}

// Float32s returns t's values as float32. FLOAT16, BFLOAT16 are widened exactly; DOUBLE is
// rounded to nearest float32.
func (m *Model) Float32s(t *onnxpb.TensorProto) ([]float32, error) {
	raw, err := m.RawData(t)
	if err != nil {
		return nil, err
	}
	v, err := DecodeFloats(DataType(t), raw)
	if err != nil {
		return nil, fmt.Errorf("onnx: tensor %q: Float32s: %w", t.GetName(), err)
	}
	return v, nil
}

// Int64s returns t's values as int64; t must hold a signed or unsigned integer type narrower
// than 64 bits, INT64 or BOOL (UINT64 is refused: it may not fit).
func (m *Model) Int64s(t *onnxpb.TensorProto) ([]int64, error) {
	dt := DataType(t)
	switch dt {
	case onnxpb.TensorProto_INT64, onnxpb.TensorProto_INT32, onnxpb.TensorProto_INT16,
		onnxpb.TensorProto_INT8, onnxpb.TensorProto_UINT32, onnxpb.TensorProto_UINT16,
		onnxpb.TensorProto_UINT8, onnxpb.TensorProto_BOOL:
	default:
		return nil, fmt.Errorf("onnx: tensor %q: Int64s of a %s tensor", t.GetName(), dt)
	}
	raw, err := m.RawData(t)
	if err != nil {
		return nil, err
	}
	return decodeInts(dt, raw), nil
}

func decodeInts(dt onnxpb.TensorProto_DataType, raw []byte) []int64 {
	le := binary.LittleEndian
	es := ElemSize(dt)
	out := make([]int64, len(raw)/es)
	for i := range out {
		switch dt {
		case onnxpb.TensorProto_INT64, onnxpb.TensorProto_UINT64:
			out[i] = int64(le.Uint64(raw[8*i:]))
		case onnxpb.TensorProto_INT32:
			out[i] = int64(int32(le.Uint32(raw[4*i:])))
		case onnxpb.TensorProto_UINT32:
			out[i] = int64(le.Uint32(raw[4*i:]))
		case onnxpb.TensorProto_INT16:
			out[i] = int64(int16(le.Uint16(raw[2*i:])))
		case onnxpb.TensorProto_UINT16:
			out[i] = int64(le.Uint16(raw[2*i:]))
		case onnxpb.TensorProto_INT8:
			out[i] = int64(int8(raw[i]))
		default: // UINT8, BOOL
			out[i] = int64(raw[i])
		}
	}
	return out
}

// SetFloat32s stores v in t as raw_data in t's own type (FLOAT, FLOAT16, BFLOAT16 or DOUBLE;
// half types rounded to nearest even), dropping any typed fields and external reference so that
// the tensor is self-contained afterwards.
func SetFloat32s(t *onnxpb.TensorProto, v []float32) error {
	dt := DataType(t)
	es := ElemSize(dt)
	switch dt {
	case onnxpb.TensorProto_FLOAT, onnxpb.TensorProto_FLOAT16, onnxpb.TensorProto_BFLOAT16,
		onnxpb.TensorProto_DOUBLE:
	default:
		return fmt.Errorf("onnx: set tensor %q: cannot store float32 values in a %s tensor", t.GetName(), dt)
	}
	if n := NumElements(t.GetDims()); n != int64(len(v)) {
		return fmt.Errorf("onnx: set tensor %q: %d values for dims %v (%d elements)", t.GetName(), len(v), t.GetDims(), n)
	}
	raw := make([]byte, es*len(v))
	le := binary.LittleEndian
	for i, x := range v {
		switch dt {
		case onnxpb.TensorProto_FLOAT:
			le.PutUint32(raw[4*i:], math.Float32bits(x))
		case onnxpb.TensorProto_FLOAT16:
			le.PutUint16(raw[2*i:], Float32ToFloat16(x))
		case onnxpb.TensorProto_BFLOAT16:
			le.PutUint16(raw[2*i:], Float32ToBFloat16(x))
		case onnxpb.TensorProto_DOUBLE:
			le.PutUint64(raw[8*i:], math.Float64bits(float64(x)))
		}
	}
	t.RawData = raw
	t.FloatData, t.DoubleData, t.Int32Data, t.Int64Data, t.Uint64Data = nil, nil, nil, nil, nil
	t.ExternalData = nil
	t.DataLocation = nil
	return nil
}
