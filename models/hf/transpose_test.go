package hf

import (
	"encoding/binary"
	"math"
	"testing"

	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
)

// transposeInto against the definition (convert each element, then put element (r, c) at
// (c, r)), for shapes with partial blocks, single rows and columns, and matrices large enough
// to be split into bands across cores; same type and converted (widened and narrowed).
func TestTransposeInto(t *testing.T) {
	bf16, f32 := onnxpb.TensorProto_BFLOAT16, onnxpb.TensorProto_FLOAT
	narrow := func(_ onnxpb.TensorProto_DataType, f float32) uint16 { return onnx.Float32ToBFloat16(f) }
	for _, types := range [][2]onnxpb.TensorProto_DataType{{bf16, bf16}, {f32, f32}, {bf16, f32}, {f32, bf16}} {
		from, to := types[0], types[1]
		ef, et := onnx.ElemSize(from), onnx.ElemSize(to)
		for _, sh := range [][2]int{{1, 1}, {1, 7}, {7, 1}, {32, 32}, {33, 31}, {64, 96}, {100, 45}, {1500, 700}, {1023, 1061}, {64, 300}, {40, 128}} {
			rows, cols := sh[0], sh[1]
			m := make([]byte, rows*cols*ef)
			for i := 0; i < rows*cols; i++ {
				f := float32(int32(uint32(i)*2654435761)>>8) / 1024
				if ef == 2 {
					binary.LittleEndian.PutUint16(m[2*i:], onnx.Float32ToBFloat16(f))
				} else {
					binary.LittleEndian.PutUint32(m[4*i:], math.Float32bits(f))
				}
			}
			conv := make([]byte, rows*cols*et)
			retypeInto(conv, m, from, to, narrow)
			dst := make([]byte, len(conv))
			transposeInto(dst, m, rows, cols, from, to, narrow)
			for r := 0; r < rows; r++ {
				for c := 0; c < cols; c++ {
					src, out := (r*cols+c)*et, (c*rows+r)*et
					if string(conv[src:src+et]) != string(dst[out:out+et]) {
						t.Fatalf("%s → %s %dx%d: element (%d, %d) not at (%d, %d)", from, to, rows, cols, r, c, c, r)
					}
				}
			}
		}
	}
}
