package runtime

import (
	"errors"
	"fmt"
	"io"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
)

// IOInfo describes one session input or output.
type IOInfo struct {
	Name  string
	DType DType // Undefined for non-tensor values
	// Dims are the declared dimensions, -1 where symbolic or unknown; nil when the rank is unknown.
	Dims []int64
}

// Static reports whether every dimension is known.
func (i IOInfo) Static() bool {
	if i.Dims == nil {
		return false
	}
	for _, d := range i.Dims {
		if d < 0 {
			return false
		}
	}
	return true
}

// Field numbers from onnx.proto.
const (
	fModelGraph             = 7
	fModelMetadata          = 14
	fGraphInitializer       = 5
	fGraphSparseInitializer = 15
	fGraphInput             = 11
	fGraphOutput            = 12
	fTensorName             = 8
	fSparseValues           = 1
)

// readIO lists a model's graph inputs (minus initializers, as onnxruntime does) and outputs by
// walking the protobuf wire format. onnxruntime_go can only report them by loading the model into a
// second session, which doubles the load time of a large model and cannot resolve external data
// for a model given as bytes. The walk skips tensor payloads without reading them, so a model file
// of any size costs a few small reads.
//
// It also returns the model's onnx.DataIDsKey metadata value ("" when absent), so that a
// session refuses a model whose data file is not the one it was saved with.
func readIO(r io.ReaderAt, size int64) (inputs, outputs []IOInfo, dataIDs string, err error) {
	w := &wire{r: r}
	var ins, outs []*onnxpb.ValueInfoProto
	inits := map[string]bool{}
	err = w.fields(0, size, func(num protowire.Number, typ protowire.Type, start, end int64) error {
		if num == fModelMetadata && typ == protowire.BytesType {
			b, err := w.read(start, end)
			if err != nil {
				return err
			}
			e := &onnxpb.StringStringEntryProto{}
			if err := proto.Unmarshal(b, e); err != nil {
				return fmt.Errorf("metadata: %v", err)
			}
			if e.GetKey() == onnx.DataIDsKey {
				dataIDs = e.GetValue()
			}
			return nil
		}
		if num != fModelGraph || typ != protowire.BytesType {
			return nil
		}
		return w.fields(start, end, func(num protowire.Number, typ protowire.Type, start, end int64) error {
			if typ != protowire.BytesType {
				return nil
			}
			switch num {
			case fGraphInput, fGraphOutput:
				b, err := w.read(start, end)
				if err != nil {
					return err
				}
				vi := &onnxpb.ValueInfoProto{}
				if err := proto.Unmarshal(b, vi); err != nil {
					return fmt.Errorf("graph input/output: %v", err)
				}
				if num == fGraphInput {
					ins = append(ins, vi)
				} else {
					outs = append(outs, vi)
				}
			case fGraphInitializer:
				name, err := w.tensorName(start, end)
				if err != nil {
					return err
				}
				inits[name] = true
			case fGraphSparseInitializer:
				return w.fields(start, end, func(num protowire.Number, typ protowire.Type, start, end int64) error {
					if num != fSparseValues || typ != protowire.BytesType {
						return nil
					}
					name, err := w.tensorName(start, end)
					inits[name] = true
					return err
				})
			}
			return nil
		})
	})
	if err != nil {
		return nil, nil, "", fmt.Errorf("reading the model's inputs and outputs: %w", err)
	}
	if len(outs) == 0 {
		return nil, nil, "", errors.New("reading the model's inputs and outputs: the model has no graph outputs (is it an ONNX model?)")
	}
	for _, vi := range ins {
		if !inits[vi.GetName()] {
			inputs = append(inputs, ioInfo(vi))
		}
	}
	for _, vi := range outs {
		outputs = append(outputs, ioInfo(vi))
	}
	return inputs, outputs, dataIDs, nil
}

func ioInfo(vi *onnxpb.ValueInfoProto) IOInfo {
	info := IOInfo{Name: vi.GetName()}
	tt := vi.GetType().GetTensorType()
	if tt == nil {
		return info
	}
	info.DType = DType(tt.GetElemType())
	if tt.Shape == nil {
		return info
	}
	info.Dims = make([]int64, len(tt.Shape.Dim))
	for i, d := range tt.Shape.Dim {
		info.Dims[i] = -1
		if v, ok := d.Value.(*onnxpb.TensorShapeProto_Dimension_DimValue); ok && v.DimValue >= 0 {
			info.Dims[i] = v.DimValue
		}
	}
	return info
}

// wire reads protobuf fields from a ReaderAt without loading whole messages.
type wire struct {
	r      io.ReaderAt
	buf    [4096]byte
	bufOff int64
	bufLen int
}

func (w *wire) byteAt(off int64) (byte, error) {
	if off < w.bufOff || off >= w.bufOff+int64(w.bufLen) {
		n, err := w.r.ReadAt(w.buf[:], off)
		if n == 0 {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
		w.bufOff, w.bufLen = off, n
	}
	return w.buf[off-w.bufOff], nil
}

func (w *wire) varint(off, end int64) (uint64, int64, error) {
	var v uint64
	for i := 0; i < 10; i++ {
		if off >= end {
			return 0, 0, errors.New("truncated protobuf varint")
		}
		b, err := w.byteAt(off)
		if err != nil {
			return 0, 0, err
		}
		off++
		v |= uint64(b&0x7f) << (7 * i)
		if b < 0x80 {
			return v, off, nil
		}
	}
	return 0, 0, errors.New("malformed protobuf varint")
}

func (w *wire) read(start, end int64) ([]byte, error) {
	b := make([]byte, end-start)
	if _, err := w.r.ReadAt(b, start); err != nil && !(err == io.EOF && len(b) == 0) {
		return nil, err
	}
	return b, nil
}

// fields calls fn for each field of the message in [off, end); for length-delimited fields start
// and end bound the payload.
func (w *wire) fields(off, end int64, fn func(num protowire.Number, typ protowire.Type, start, end int64) error) error {
	for off < end {
		tag, next, err := w.varint(off, end)
		if err != nil {
			return err
		}
		off = next
		num, typ := protowire.Number(tag>>3), protowire.Type(tag&7)
		if num <= 0 {
			return fmt.Errorf("malformed protobuf field number %d", num)
		}
		var start, stop int64
		switch typ {
		case protowire.VarintType:
			_, next, err := w.varint(off, end)
			if err != nil {
				return err
			}
			start, stop = off, next
		case protowire.Fixed32Type:
			start, stop = off, off+4
		case protowire.Fixed64Type:
			start, stop = off, off+8
		case protowire.BytesType:
			n, next, err := w.varint(off, end)
			if err != nil {
				return err
			}
			if n > uint64(end-next) {
				return fmt.Errorf("protobuf field %d overruns its message (%d bytes)", num, n)
			}
			start, stop = next, next+int64(n)
		default:
			return fmt.Errorf("unsupported protobuf wire type %d (field %d)", typ, num)
		}
		if stop > end {
			return fmt.Errorf("protobuf field %d overruns its message", num)
		}
		if err := fn(num, typ, start, stop); err != nil {
			return err
		}
		off = stop
	}
	return nil
}

func (w *wire) tensorName(start, end int64) (string, error) {
	var name string
	err := w.fields(start, end, func(num protowire.Number, typ protowire.Type, s, e int64) error {
		if num == fTensorName && typ == protowire.BytesType {
			b, err := w.read(s, e)
			name = string(b)
			return err
		}
		return nil
	})
	return name, err
}
