package onnx

import (
	"strings"
	"testing"

	"github.com/shears-ml/shears/onnx/onnxpb"
)

func TestValidateAcceptsGoodModels(t *testing.T) {
	if err := Validate(tcTiny()); err != nil {
		t.Fatal(err)
	}
	m, err := Load(coreFixture(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := Validate(m); err != nil {
		t.Fatal(err)
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	m := tcTiny()
	g := m.Graph()
	m.Proto.OpsetImport = []*onnxpb.OperatorSetIdProto{{Domain: tcStr("com.microsoft"), Version: func() *int64 { v := int64(1); return &v }()}}
	g.Node = append(g.Node,
		tcNode("Relu", "ghost", []string{"nowhere"}, []string{"g1"}),
		tcNode("", "blank", []string{"x"}, []string{"g2"}),
		tcNode("Relu", "dup", []string{"x"}, []string{"xw"}),
		tcNode("Relu", "loop1", []string{"L2"}, []string{"L1"}),
		tcNode("Relu", "loop2", []string{"L1"}, []string{"L2"}),
		tcNode("Relu", "opt", []string{""}, []string{"g3"}), // "" is an omitted optional input: fine
	)
	g.Initializer[0].RawData = g.Initializer[0].RawData[:100]
	g.Output = append(g.Output, tcVI("missing_out", onnxpb.TensorProto_FLOAT, 1))
	err := Validate(m)
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	for _, want := range []string{
		"no ai.onnx opset",
		`node "ghost" (Relu): input "nowhere" is not produced`,
		`node "blank" (): empty op type`,
		`"xw" is already defined by node "mm" (MatMul)`,
		"cycle through node",
		`tensor "W": raw_data holds 100 bytes, dims [32 16] of FLOAT need 2048`,
		`graph output "missing_out" is not produced`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("errors lack %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, `"opt"`) {
		t.Errorf("an empty optional input was reported:\n%s", msg)
	}
	if n := len(strings.Split(msg, "\n")); n != 7 {
		t.Errorf("%d problems reported, want 7:\n%s", n, msg)
	}
}

func TestValidateSubgraphScope(t *testing.T) {
	m := tcTiny()
	then := &onnxpb.GraphProto{Name: tcStr("then"),
		Node:   []*onnxpb.NodeProto{tcNode("Relu", "inner", []string{"xw"}, []string{"t_out"})}, // outer name: fine
		Output: []*onnxpb.ValueInfoProto{tcVI("t_out", onnxpb.TensorProto_FLOAT, 1)}}
	bad := &onnxpb.GraphProto{Name: tcStr("else"),
		Node:   []*onnxpb.NodeProto{tcNode("Relu", "inner2", []string{"undefined"}, []string{"e_out"})},
		Output: []*onnxpb.ValueInfoProto{tcVI("e_out", onnxpb.TensorProto_FLOAT, 1)}}
	gt := onnxpb.AttributeProto_GRAPH
	m.Graph().Node = append(m.Graph().Node, tcNode("If", "branch", []string{"cond"}, []string{"r"},
		&onnxpb.AttributeProto{Name: tcStr("then_branch"), Type: &gt, G: then},
		&onnxpb.AttributeProto{Name: tcStr("else_branch"), Type: &gt, G: bad}))
	m.Graph().Input = append(m.Graph().Input, tcVI("cond", onnxpb.TensorProto_BOOL))
	err := Validate(m)
	if err == nil || !strings.Contains(err.Error(), `subgraph "else_branch" of node "branch" (If): node "inner2" (Relu): input "undefined"`) {
		t.Fatalf("subgraph error: %v", err)
	}
	if strings.Contains(err.Error(), "inner\"") || strings.Contains(err.Error(), `"xw" is not`) {
		t.Fatalf("outer-scope name refused: %v", err)
	}
}
