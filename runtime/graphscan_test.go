package runtime

import (
	"bytes"
	"sync/atomic"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/shears-ml/shears/onnx/onnxpb"
)

// countingReader counts the bytes read through it.
type countingReader struct {
	r *bytes.Reader
	n atomic.Int64
}

func (c *countingReader) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.n.Add(int64(n))
	return n, err
}

// TestScanSkipsWeights: readIO finds a MatMulNBits two subgraphs deep (an If in a Loop body)
// and reads a few KB of a model whose inline initializers are 16 MB; the same model with the
// node renamed (or in another domain) has none.
func TestScanSkipsWeights(t *testing.T) {
	str := proto.String
	big := func(name string) *onnxpb.TensorProto {
		return &onnxpb.TensorProto{Name: str(name), Dims: []int64{1 << 20}, DataType: proto.Int32(int32(onnxpb.TensorProto_FLOAT)),
			RawData: make([]byte, 4<<20)}
	}
	vi := func(name string) *onnxpb.ValueInfoProto { return &onnxpb.ValueInfoProto{Name: str(name)} }
	build := func(op, domain string) []byte {
		leaf := &onnxpb.GraphProto{Name: str("leaf"), Initializer: []*onnxpb.TensorProto{big("inner")},
			Node: []*onnxpb.NodeProto{{OpType: str(op), Domain: str(domain), Input: []string{"x", "inner"}, Output: []string{"y"}}}}
		ifNode := &onnxpb.NodeProto{OpType: str("If"), Input: []string{"c"}, Output: []string{"y"}, Attribute: []*onnxpb.AttributeProto{
			{Name: str("then_branch"), Type: onnxpb.AttributeProto_GRAPH.Enum(), G: leaf},
			{Name: str("else_branch"), Type: onnxpb.AttributeProto_GRAPH.Enum(), G: &onnxpb.GraphProto{Name: str("e")}}}}
		body := &onnxpb.GraphProto{Name: str("body"), Node: []*onnxpb.NodeProto{ifNode}}
		loop := &onnxpb.NodeProto{OpType: str("Loop"), Input: []string{"n", "c"}, Output: []string{"y"},
			Attribute: []*onnxpb.AttributeProto{
				{Name: str("value"), Type: onnxpb.AttributeProto_TENSOR.Enum(), T: big("attr")},
				{Name: str("body"), Type: onnxpb.AttributeProto_GRAPHS.Enum(), Graphs: []*onnxpb.GraphProto{body}}}}
		g := &onnxpb.GraphProto{Name: str("g"), Initializer: []*onnxpb.TensorProto{big("w1"), big("w2")},
			Node:  []*onnxpb.NodeProto{{OpType: str("Relu"), Input: []string{"x"}, Output: []string{"r"}}, loop},
			Input: []*onnxpb.ValueInfoProto{vi("x"), vi("w1")}, Output: []*onnxpb.ValueInfoProto{vi("y")}}
		b, err := proto.Marshal(&onnxpb.ModelProto{IrVersion: proto.Int64(8), Graph: g})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, c := range []struct {
		op, domain string
		want       bool
	}{{"MatMulNBits", "com.microsoft", true}, {"MatMulNBits", "", false}, {"MatMul", "com.microsoft", false}} {
		raw := build(c.op, c.domain)
		r := &countingReader{r: bytes.NewReader(raw)}
		info, err := readIO(r, int64(len(raw)))
		if err != nil {
			t.Fatal(err)
		}
		if info.nbits != c.want {
			t.Errorf("%s/%s: MatMulNBits found %v, want %v", c.domain, c.op, info.nbits, c.want)
		}
		if len(info.inputs) != 1 || info.inputs[0].Name != "x" {
			t.Errorf("inputs %+v, want x alone (w1 is an initializer)", info.inputs)
		}
		if n := r.n.Load(); !(n <= 64<<10) || len(raw) < 16<<20 {
			t.Errorf("%s/%s: read %d bytes of a %d-byte model", c.domain, c.op, n, len(raw))
		}
	}
}
