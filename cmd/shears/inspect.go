package main

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/pflag"

	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/pipeline"
	"github.com/shears-ml/shears/transform/layers"
	"github.com/shears-ml/shears/transform/quant"
)

type inspectOpts struct {
	json     bool
	sparsity bool
}

func init() {
	register(&command{
		name:    "inspect",
		args:    "MODEL.onnx [--json]",
		summary: "show a model's inputs, outputs, ops, parameters and linear layers",
		long: `Reads the graph without loading external weights (only each linear's weight is read, one at a
time, to count its zeros; --sparsity=false skips even that), then prints the inputs and outputs,
the opset, an op histogram, the parameter count and every linear layer with its decoder block,
role (q k v o gate up down, or the family's own) and sparsity. Attention products and the LM
head are not linears/targets.

Example:
  shears inspect model.onnx
  shears inspect model.onnx --json | jq '.linears[] | select(.role == "q")'`,
		flags: func(fs *pflag.FlagSet) any {
			o := &inspectOpts{}
			fs.BoolVar(&o.json, "json", false, "print JSON (keys: opset, params, inputs, outputs, ops, linears, sparsity)")
			fs.BoolVar(&o.sparsity, "sparsity", true, "read linear weights to report their sparsity")
			return o
		},
		run: runInspect,
	})
}

// inspectReport is inspect's JSON output.
type inspectReport struct {
	Model    string           `json:"model"`
	Opset    int64            `json:"opset"`
	IR       int64            `json:"ir_version"`
	Producer string           `json:"producer,omitempty"`
	Params   int64            `json:"params"`
	Inputs   []ioReport       `json:"inputs"`
	Outputs  []ioReport       `json:"outputs"`
	Ops      map[string]int   `json:"ops"`
	Nodes    int              `json:"nodes"`
	Linears  []linearReport   `json:"linears"`
	Head     []linearReport   `json:"head,omitempty"`
	Sparsity float64          `json:"sparsity"`
	External bool             `json:"external_data"`
	Dtypes   map[string]int64 `json:"param_dtypes"`
	// Quantized are the MatMulNBits linears (shears quantize), with the sparsity of their
	// dequantized weights.
	Quantized []quantizedReport `json:"quantized,omitempty"`
}

type quantizedReport struct {
	Name      string  `json:"name"`
	In        int     `json:"in"`
	Out       int     `json:"out"`
	Bits      int     `json:"bits"`
	BlockSize int     `json:"block_size"`
	Symmetric bool    `json:"symmetric"`
	Bytes     int64   `json:"bytes"`
	Sparsity  float64 `json:"sparsity"`
}

type ioReport struct {
	Name  string   `json:"name"`
	Type  string   `json:"type"`
	Shape []string `json:"shape"`
}

// linearReport is one linear layer and its sparsity (the same record prune reports).
type linearReport = pipeline.LayerSparsity

func runInspect(env *cliEnv, o any, args []string) error {
	opts := o.(*inspectOpts)
	if err := needArgs(args, 1, "MODEL.onnx"); err != nil {
		return err
	}
	m, err := onnx.Load(args[0])
	if err != nil {
		return err
	}
	defer m.Close()
	rep, err := buildInspect(m, args[0], opts.sparsity)
	if err != nil {
		return err
	}
	if opts.json {
		enc := json.NewEncoder(env.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	printInspect(env, rep)
	return nil
}

func buildInspect(m *onnx.Model, path string, withSparsity bool) (*inspectReport, error) {
	g := m.Graph()
	rep := &inspectReport{Model: path, IR: m.Proto.GetIrVersion(), Producer: strings.TrimSpace(m.Proto.GetProducerName() + " " + m.Proto.GetProducerVersion()),
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
		lr := linearReport{Name: l.Node, Weight: l.Weight, Block: l.Block, Role: l.Role, In: l.In, Out: l.Out}
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
			rep.Quantized = append(rep.Quantized, quantizedReport{Name: q.Node, In: q.K, Out: q.N, Bits: q.Bits, BlockSize: q.BlockSize,
				Symmetric: q.Symmetric, Bytes: q.Bytes, Sparsity: float64(q.Zeros) / float64(q.Total)})
			zeros, total = zeros+q.Zeros, total+q.Total
		}
	}
	if total > 0 {
		rep.Sparsity = float64(zeros) / float64(total)
	}
	return rep, nil
}

func ioOf(v *onnxpb.ValueInfoProto) ioReport {
	r := ioReport{Name: v.GetName()}
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

func printInspect(env *cliEnv, r *inspectReport) {
	w := env.stdout
	fmt.Fprintf(w, "model     %s\nopset     %d (IR %d)  %s\nparams    %s", r.Model, r.Opset, r.IR, r.Producer, human(r.Params))
	var dts []string
	for k, v := range r.Dtypes {
		dts = append(dts, fmt.Sprintf("%s %s", strings.ToLower(k), human(v)))
	}
	sort.Strings(dts)
	fmt.Fprintf(w, " (%s)", strings.Join(dts, ", "))
	if r.External {
		fmt.Fprint(w, ", external data")
	}
	fmt.Fprintln(w)
	for _, io := range r.Inputs {
		fmt.Fprintf(w, "input     %s %s [%s]\n", io.Name, io.Type, strings.Join(io.Shape, ", "))
	}
	for _, io := range r.Outputs {
		fmt.Fprintf(w, "output    %s %s [%s]\n", io.Name, io.Type, strings.Join(io.Shape, ", "))
	}
	type kv struct {
		k string
		v int
	}
	var ops []kv
	for k, v := range r.Ops {
		ops = append(ops, kv{k, v})
	}
	sort.Slice(ops, func(i, j int) bool { return ops[i].v > ops[j].v || ops[i].v == ops[j].v && ops[i].k < ops[j].k })
	var parts []string
	for _, o := range ops {
		parts = append(parts, fmt.Sprintf("%s %d", o.k, o.v))
	}
	fmt.Fprintf(w, "ops       %d nodes: %s\n\n", r.Nodes, strings.Join(parts, ", "))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "BLOCK\tROLE\tIN\tOUT\tSPARSITY\tNODE")
	for _, l := range append(append([]linearReport{}, r.Linears...), r.Head...) {
		b := fmt.Sprint(l.Block)
		if l.Block < 0 {
			b = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.1f%%\t%s\n", b, l.Role, l.In, l.Out, 100*l.Sparsity, l.Name)
	}
	tw.Flush()
	if len(r.Quantized) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "QUANTIZED\tIN\tOUT\tBITS\tBLOCK\tGRID\tBYTES\tSPARSITY")
		var qb, fb int64
		for _, q := range r.Quantized {
			grid := "asymmetric"
			if q.Symmetric {
				grid = "symmetric"
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\t%d\t%.1f%%\n", q.Name, q.In, q.Out, q.Bits, q.BlockSize, grid, q.Bytes, 100*q.Sparsity)
			qb, fb = qb+q.Bytes, fb+int64(4*q.In*q.Out)
		}
		tw.Flush()
		fmt.Fprintf(w, "%d MatMulNBits linears: %d bytes, %.3f× their float32 size\n", len(r.Quantized), qb, float64(qb)/float64(fb))
	}
	fmt.Fprintf(w, "\n%d linear layers (targets), overall sparsity %.2f%%", len(r.Linears)+len(r.Quantized), 100*r.Sparsity)
	if len(r.Head) > 0 {
		fmt.Fprintf(w, "; LM head %s not a target", r.Head[0].Name)
	}
	fmt.Fprintln(w)
}

// human formats a count as 1.23M / 4.5B.
func human(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.2fB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.2fM", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1fK", float64(n)/1e3)
	}
	return fmt.Sprint(n)
}
