package runtime

import (
	"google.golang.org/protobuf/encoding/protowire"
)

// The operator whose presence turns pre-packing on (Prepack): onnxruntime's quantized linear.
const (
	nbitsOp     = "MatMulNBits"
	nbitsDomain = "com.microsoft"
)

// Field numbers from onnx.proto, beside those of modelinfo.go.
const (
	fGraphNode     = 1
	fNodeOpType    = 4
	fNodeAttribute = 5
	fNodeDomain    = 7
	fAttrGraph     = 6
	fAttrGraphs    = 11
)

// graphHasNBits reports whether the GraphProto in [start, end) or any of its subgraphs holds
// a MatMulNBits node.
func (w *wire) graphHasNBits(start, end int64) (bool, error) {
	found := false
	err := w.fields(start, end, func(num protowire.Number, typ protowire.Type, start, end int64) error {
		if found || num != fGraphNode || typ != protowire.BytesType {
			return nil
		}
		var err error
		found, err = w.nodeHasNBits(start, end)
		return err
	})
	return found, err
}

// nodeHasNBits reports whether the NodeProto in [start, end) is a MatMulNBits or holds one in
// the graphs of its attributes (an If's branches, as in optimum's merged decoder; a Loop's or
// Scan's body). Only op types, domains and attribute graphs are read; attribute tensors are
// skipped.
//
// Every MatMulNBits counts, even one whose inputs are all constant: onnxruntime 1.24 does not
// fold contrib operators at load (a MatMulNBits(I, B, …) over constants ran on every step;
// bench/RESULTS.md, SQFT), which is why quant dequantizes with standard operators instead.
func (w *wire) nodeHasNBits(start, end int64) (bool, error) {
	var op, domain string
	sub := false
	err := w.fields(start, end, func(num protowire.Number, typ protowire.Type, start, end int64) error {
		if typ != protowire.BytesType {
			return nil
		}
		switch num {
		case fNodeOpType, fNodeDomain:
			b, err := w.read(start, end)
			if num == fNodeOpType {
				op = string(b)
			} else {
				domain = string(b)
			}
			return err
		case fNodeAttribute:
			return w.fields(start, end, func(num protowire.Number, typ protowire.Type, start, end int64) error {
				if sub || typ != protowire.BytesType || (num != fAttrGraph && num != fAttrGraphs) {
					return nil
				}
				var err error
				sub, err = w.graphHasNBits(start, end)
				return err
			})
		}
		return nil
	})
	return sub || (op == nbitsOp && domain == nbitsDomain), err
}
