package pipeline

import (
	"fmt"
	"strings"

	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/transform/layers"
	"github.com/shears-ml/shears/transform/quant"
)

// InspectOptions configure Inspect.
type InspectOptions struct {
	Model string
	// Sparsity reads each linear's weight (one at a time) to count its zeros; without it only
	// the graph is read, never the external weights.
	Sparsity bool
}

// InspectReport is what "shears inspect" shows (and prints with --json): the graph's interface,
// op histogram, parameters by type and every linear layer with its block, role and sparsity.
type InspectReport struct {
	Model    string           `json:"model"`
	Opset    int64            `json:"opset"`
	IR       int64            `json:"ir_version"`
	Producer string           `json:"producer,omitempty"`
	Params   int64            `json:"params"`
	Inputs   []TensorIO       `json:"inputs"`
	Outputs  []TensorIO       `json:"outputs"`
	Ops      map[string]int   `json:"ops"`
	Nodes    int              `json:"nodes"`
	Linears  []LayerSparsity  `json:"linears"`
	Head     []LayerSparsity  `json:"head,omitempty"`
	Sparsity float64          `json:"sparsity"`
	External bool             `json:"external_data"`
	Dtypes   map[string]int64 `json:"param_dtypes"`
	// Quantized are the MatMulNBits linears (shears quantize), with the sparsity of their
	// dequantized weights.
	Quantized []InspectQuantized `json:"quantized,omitempty"`
}

// InspectQuantized is one MatMulNBits linear (shears quantize) and its dequantized sparsity.
type InspectQuantized struct {
	Name      string  `json:"name"`
	In        int     `json:"in"`
	Out       int     `json:"out"`
	Bits      int     `json:"bits"`
	BlockSize int     `json:"block_size"`
	Symmetric bool    `json:"symmetric"`
	Bytes     int64   `json:"bytes"`
	Sparsity  float64 `json:"sparsity"`
}

// TensorIO is a graph input or output: name, element type and shape (symbolic dims by name).
type TensorIO struct {
	Name  string   `json:"name"`
	Type  string   `json:"type"`
	Shape []string `json:"shape"`
}

// Inspect is "shears inspect": it reads the model's graph (and, with o.Sparsity, each linear's
// weight) and reports it; nothing is written.
func Inspect(o InspectOptions) (*InspectReport, error) {
	m, err := onnx.Load(o.Model)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	return inspectModel(m, o.Model, o.Sparsity)
}

func inspectModel(m *onnx.Model, path string, withSparsity bool) (*InspectReport, error) {
	g := m.Graph()
	rep := &InspectReport{Model: path, IR: m.Proto.GetIrVersion(), Producer: strings.TrimSpace(m.Proto.GetProducerName() + " " + m.Proto.GetProducerVersion()),
		Ops: map[string]int{}, Dtypes: map[string]int64{}, Nodes: len(g.GetNode())}
	rep.Opset, _ = m.Opset("")
	for _, in := range g.GetInput() {
		rep.Inputs = append(rep.Inputs, ioOf(in))
	}
	for _, out := range g.GetOutput() {
		rep.Outputs = append(rep.Outputs, ioOf(out))
	}
	for _, n := range g.GetNode() {
		key := n.GetOpType()
		if d := n.GetDomain(); d != "" && d != "ai.onnx" {
			key = d + "::" + key
		}
		rep.Ops[key]++
	}
	for _, t := range g.GetInitializer() {
		n := onnx.NumElements(onnx.Dims(t))
		rep.Params += n
		rep.Dtypes[onnxpb.TensorProto_DataType(t.GetDataType()).String()] += n
		if t.GetDataLocation() == onnxpb.TensorProto_EXTERNAL {
			rep.External = true
		}
	}
	ls, err := layers.Find(m)
	if err != nil {
		return nil, err
	}
	var zeros, total int64
	for _, l := range ls {
		lr := LayerSparsity{Name: l.Node, Weight: l.Weight, Block: l.Block, Role: l.Role, In: l.In, Out: l.Out}
		if withSparsity {
			z, n, err := layers.CountZeros(m, l)
			if err != nil {
				return nil, err
			}
			lr.Sparsity = float64(z) / float64(n)
			if !l.Head {
				zeros, total = zeros+z, total+n
			}
		}
		if l.Head {
			rep.Head = append(rep.Head, lr)
		} else {
			rep.Linears = append(rep.Linears, lr)
		}
	}
	if has, _ := quant.HasQuantized(m); has && withSparsity {
		infos, _, err := quant.Quantized(m)
		if err != nil {
			return nil, err
		}
		for _, q := range infos {
			rep.Quantized = append(rep.Quantized, InspectQuantized{Name: q.Node, In: q.K, Out: q.N, Bits: q.Bits, BlockSize: q.BlockSize,
				Symmetric: q.Symmetric, Bytes: q.Bytes, Sparsity: float64(q.Zeros) / float64(q.Total)})
			zeros, total = zeros+q.Zeros, total+q.Total
		}
	}
	if total > 0 {
		rep.Sparsity = float64(zeros) / float64(total)
	}
	return rep, nil
}

func ioOf(v *onnxpb.ValueInfoProto) TensorIO {
	r := TensorIO{Name: v.GetName()}
	tt := v.GetType().GetTensorType()
	if tt == nil {
		r.Type = "non-tensor"
		return r
	}
	r.Type = strings.ToLower(onnxpb.TensorProto_DataType(tt.GetElemType()).String())
	for _, d := range tt.GetShape().GetDim() {
		if d.GetDimParam() != "" {
			r.Shape = append(r.Shape, d.GetDimParam())
		} else if d.Value != nil {
			r.Shape = append(r.Shape, fmt.Sprint(d.GetDimValue()))
		} else {
			r.Shape = append(r.Shape, "?")
		}
	}
	return r
}
