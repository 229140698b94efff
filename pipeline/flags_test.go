package pipeline

import (
	"errors"
	"strings"
	"testing"
)

// The stages' option checks: good values pass; bad ones say which flag, usage errors marked.
func TestConvertPruneQuantizeChecks(t *testing.T) {
	good := map[string]error{
		"convert fp16/fp32":      ConvertOptions{DType: "fp16", Compute: "fp32"}.Check(),
		"prune wanda 2:4":        PruneOptions{Out: "o", Method: MethodWanda, Pattern: "2:4", Sparsity: 0.5, Calib: "calib.txt"}.Check(),
		"prune magnitude":        PruneOptions{Out: "o", Method: "magnitude", Sparsity: 0.3}.Check(),
		"quantize rtn":           QuantizeOptions{Out: "o", Bits: 4}.Check(),
		"quantize gptq ids only": QuantizeOptions{Out: "o", Bits: 4, Method: "gptq", Calib: "ids.jsonl"}.Check(),
	}
	for name, err := range good {
		if err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	bad := []struct {
		name string
		err  error
		want string
	}{
		{"bad dtype", ConvertOptions{DType: "int3", Compute: "fp32"}.Check(), "--dtype"},
		{"bad compute", ConvertOptions{DType: "fp16", Compute: "fp64"}.Check(), `--compute "fp64"`},
		{"bad pattern", PruneOptions{Out: "o", Method: "magnitude", Pattern: "5:4"}.Check(), "--pattern"},
		{"sparsity 1", PruneOptions{Out: "o", Method: "magnitude", Sparsity: 1}.Check(), "[0, 1)"},
		{"wanda without calib", PruneOptions{Out: "o", Method: MethodWanda}.Check(), "--calib"},
		{"prune without -o", PruneOptions{Method: "magnitude"}.Check(), "-o OUT.onnx"},
		{"bits 3", QuantizeOptions{Out: "o", Bits: 3}.Check(), "--bits 3"},
		{"method", QuantizeOptions{Out: "o", Method: "awq"}.Check(), `--method "awq"`},
		{"gptq without calib", QuantizeOptions{Out: "o", Bits: 8, Method: "gptq"}.Check(), "--calib"},
		{"damp", QuantizeOptions{Out: "o", Bits: 4, Method: "gptq", Calib: "c", Damp: 2}.Check(), "--damp 2"},
	}
	for _, b := range bad {
		if !errors.Is(b.err, ErrUsage) || !strings.Contains(b.err.Error(), b.want) {
			t.Errorf("%s: %v, want a usage error naming %s", b.name, b.err, b.want)
		}
	}
}
