package pipeline

import (
	"encoding/binary"
	"fmt"
	"math"
	"strings"

	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
)

// NonFinite is one weight tensor holding NaN or Inf values.
type NonFinite struct {
	Tensor   string
	NaN, Inf int64
	Of       int64
}

// FindNonFinite scans every floating-point initializer of m (float32, float16, bfloat16,
// float64), streaming external data one chunk at a time, and lists those holding NaN, or Inf
// in a weight (an input of MatMul, Gemm, Gather or Conv): exports legitimately keep -Inf in
// attention-mask buffers.
func FindNonFinite(m *onnx.Model) ([]NonFinite, error) {
	weights := map[string]bool{}
	for _, n := range m.Graph().GetNode() {
		switch n.GetOpType() {
		case "MatMul", "Gemm", "Gather", "Conv", "MatMulNBits":
			for _, in := range n.GetInput() {
				weights[in] = true
			}
		}
	}
	var out []NonFinite
	for _, t := range m.Graph().GetInitializer() {
		dt := onnx.DataType(t)
		var isBad func(b []byte) (nan, inf bool)
		size := 0
		switch dt {
		case onnxpb.TensorProto_FLOAT:
			size = 4
			isBad = func(b []byte) (bool, bool) {
				x := math.Float32frombits(binary.LittleEndian.Uint32(b))
				return x != x, math.IsInf(float64(x), 0)
			}
		case onnxpb.TensorProto_DOUBLE:
			size = 8
			isBad = func(b []byte) (bool, bool) {
				x := math.Float64frombits(binary.LittleEndian.Uint64(b))
				return math.IsNaN(x), math.IsInf(x, 0)
			}
		case onnxpb.TensorProto_FLOAT16, onnxpb.TensorProto_BFLOAT16:
			size = 2
			expMask, mantMask := uint16(0x7c00), uint16(0x03ff)
			if dt == onnxpb.TensorProto_BFLOAT16 {
				expMask, mantMask = 0x7f80, 0x007f
			}
			isBad = func(b []byte) (bool, bool) {
				h := binary.LittleEndian.Uint16(b)
				if h&expMask != expMask {
					return false, false
				}
				return h&mantMask != 0, h&mantMask == 0
			}
		default:
			continue
		}
		nf := NonFinite{Tensor: t.GetName(), Of: onnx.NumElements(t.GetDims())}
		err := m.ReadChunks(t, 1<<20, func(b []byte) error {
			for i := 0; i+size <= len(b); i += size {
				if nan, inf := isBad(b[i : i+size]); nan {
					nf.NaN++
				} else if inf {
					nf.Inf++
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		if !weights[t.GetName()] {
			nf.Inf = 0
		}
		if nf.NaN+nf.Inf > 0 {
			out = append(out, nf)
		}
	}
	return out, nil
}

// CheckFinite refuses a model whose weights hold NaN or Inf (issue 14: prune kept them and
// exited 0), naming the tensors; allow (--allow-nonfinite) turns the error into a warning.
func CheckFinite(m *onnx.Model, path string, allow bool, warn func(string)) error {
	bad, err := FindNonFinite(m)
	if err != nil || len(bad) == 0 {
		return err
	}
	var parts []string
	for i, b := range bad {
		if i == 5 {
			parts = append(parts, fmt.Sprintf("and %d more tensors", len(bad)-5))
			break
		}
		parts = append(parts, fmt.Sprintf("%s (%d NaN, %d Inf of %d)", b.Tensor, b.NaN, b.Inf, b.Of))
	}
	msg := fmt.Sprintf("%s has non-finite weights: %s", path, strings.Join(parts, ", "))
	if !allow {
		return fmt.Errorf("%s; the outputs would be NaN too (pass --allow-nonfinite to proceed anyway)", msg)
	}
	if warn != nil {
		warn(msg + " (--allow-nonfinite: proceeding)")
	}
	return nil
}

// Opsets the stages support: shape inference, calibration and the rewrites handle ai.onnx 13
// and later (Unsqueeze/ReduceSum axes as inputs, Split sizes); training needs 16 (the loss's
// ScatterElements with reduction).
const (
	MinOpset      = 13
	MinTrainOpset = 16
)

// CheckOpset refuses a model whose ai.onnx opset is below min with a word about the opset,
// instead of a shape error deep inside a stage (an opset-7 model failed with "Expand ... shapes
// do not broadcast").
func CheckOpset(m *onnx.Model, path string, min int64, stage string) error {
	v, ok := m.Opset("")
	if !ok {
		return fmt.Errorf("%s: %s imports no ai.onnx opset (not an ONNX model of operators?)", stage, path)
	}
	if v < min {
		return fmt.Errorf("%s: %s uses ai.onnx opset %d; %s supports opset %d and later: re-export it with a newer opset "+
			"(torch.onnx.export(..., opset_version=17)) or convert it (onnx.version_converter.convert_version(model, 17))", stage, path, v, stage, min)
	}
	return nil
}
