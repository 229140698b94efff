package main

import (
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/pflag"

	"github.com/shears-ml/shears/pipeline"
)

type inspectOpts struct {
	json     bool
	sparsity bool
}

func init() {
	register(&command{
		name:       "inspect",
		args:       "MODEL.onnx [--json]",
		positional: "MODEL.onnx",
		summary:    "show a model's inputs, outputs, ops, parameters and linear layers",
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

// inspectReport is inspect's JSON output (pipeline's report).
type inspectReport = pipeline.InspectReport

func runInspect(env *cliEnv, o any, args []string) error {
	opts := o.(*inspectOpts)
	rep, err := pipeline.Inspect(pipeline.InspectOptions{Model: args[0], Sparsity: opts.sparsity})
	if err != nil {
		return err
	}
	if opts.json {
		return printJSON(env, rep)
	}
	printInspect(env, rep)
	return nil
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
	for _, l := range append(append([]pipeline.LayerSparsity{}, r.Linears...), r.Head...) {
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
