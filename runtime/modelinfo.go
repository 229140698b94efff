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

// modelInfo is what readIO reads of a model without loading it.
type modelInfo struct {
	inputs, outputs []IOInfo
	// dataIDs is the model's onnx.DataIDsKey metadata value ("" when absent), so that a
	// session refuses a model whose data file is not the one it was saved with.
	dataIDs string
	// nbits reports a MatMulNBits node in the graph or a subgraph, for Prepack (graphscan.go).
	nbits bool
}

// readIO lists a model's graph inputs (minus initializers, as onnxruntime does) and outputs by
// walking the protobuf wire format, and whether a node (of a subgraph too) is a MatMulNBits,
// for Prepack. onnxruntime_go can only report inputs and outputs by loading
// the model into a second session, which doubles the load time of a large model and cannot
// resolve external data for a model given as bytes. The walk skips tensor payloads without
// reading them, so a model file of any size costs a few small reads per node.
func readIO(r io.ReaderAt, size int64) (modelInfo, error) {
	w := &wire{r: r}
	var info modelInfo
	var ins, outs []*onnxpb.ValueInfoProto
	inits := map[string]bool{}
	err := w.fields(0, size, func(num protowire.Number, typ protowire.Type, start, end int64) error {
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
				info.dataIDs = e.GetValue()
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
			case fGraphNode:
				if info.nbits {
					return nil
				}
				var err error
				info.nbits, err = w.nodeHasNBits(start, end)
				return err
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
				inits[name] = true
				return err
			case fGraphSparseInitializer:
				name, err := w.sparseName(start, end)
				inits[name] = true
				return err
			}
			return nil
		})
	})
	if err != nil {
		return modelInfo{}, fmt.Errorf("reading the model's inputs and outputs: %w", err)
	}
	if len(outs) == 0 {
		return modelInfo{}, errors.New("reading the model's inputs and outputs: the model has no graph outputs (is it an ONNX model?)")
	}
	for _, vi := range ins {
		if !inits[vi.GetName()] {
			info.inputs = append(info.inputs, ioInfo(vi))
		}
	}
	for _, vi := range outs {
		info.outputs = append(info.outputs, ioInfo(vi))
	}
	return info, nil
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
	if !w.holds(off, off+1) {
		if err := w.fill(off); err != nil {
			return 0, err
		}
	}
	return w.buf[off-w.bufOff], nil
}

// holds reports whether the buffer holds [start, end).
func (w *wire) holds(start, end int64) bool {
	return start >= w.bufOff && end <= w.bufOff+int64(w.bufLen)
}

// fill reads the buffer's worth of bytes from off.
func (w *wire) fill(off int64) error {
	n, err := w.r.ReadAt(w.buf[:], off)
	if n == 0 {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	w.bufOff, w.bufLen = off, n
	return nil
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

// read returns the bytes in [start, end), from the buffer when they fit in it (node names and
// op types: a graph's nodes cost a read per buffer, not per string).
func (w *wire) read(start, end int64) ([]byte, error) {
	b := make([]byte, end-start)
	if len(b) <= len(w.buf) {
		if !w.holds(start, end) {
			if err := w.fill(start); err != nil {
				return nil, err
			}
		}
		if w.holds(start, end) {
			copy(b, w.buf[start-w.bufOff:])
			return b, nil
		}
	}
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

// sparseName is the name of a SparseTensorProto's values tensor, which names the initializer.
func (w *wire) sparseName(start, end int64) (string, error) {
	var name string
	err := w.fields(start, end, func(num protowire.Number, typ protowire.Type, start, end int64) error {
		if num != fSparseValues || typ != protowire.BytesType {
			return nil
		}
		var err error
		name, err = w.tensorName(start, end)
		return err
	})
	return name, err
}
