package hf

import (
	"sort"
	"strings"

	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
)

// Source supplies a graph's initializers by name in ONNX layout (the graph builders' callback):
// computed is nil for checkpoint tensors, and holds the values of tables the builder derives
// from the config (RoPE cos/sin).
type Source func(name string, dims []int64, computed []float32) (*onnxpb.TensorProto, error)

// Family is one architecture (config.json's architectures[0]): how its configuration and
// tensors map onto a graph builder. Each lives in its own file, as a few lines.
type Family struct {
	// Arch is the architectures[0] value, e.g. "LlamaForCausalLM".
	Arch string
	// Build makes the graph for c, asking src for every checkpoint tensor it needs.
	Build func(c *Config, src Source) (*onnx.Model, error)
	// Linear reports whether a rank-2 checkpoint tensor is an nn.Linear weight, stored
	// [out, in]: the import transposes it to the graph's [in, out].
	Linear func(name string) bool
}

var families = map[string]*Family{}

func register(f *Family) { families[f.Arch] = f }

// Supported lists the architectures that import, sorted.
func Supported() []string {
	var s []string
	for k := range families {
		s = append(s, k)
	}
	sort.Strings(s)
	return s
}

func supportedList() string { return strings.Join(Supported(), ", ") }

// family finds c's architecture.
func family(c *Config) (*Family, error) {
	f, ok := families[c.Architectures[0]]
	if !ok {
		return nil, c.errorf("architecture %q is not supported (supported: %s)", c.Architectures[0], supportedList())
	}
	return f, nil
}

// nnLinear is Linear for the LLaMA-style families: every rank-2 tensor but the embedding table.
func nnLinear(name string) bool { return name != "model.embed_tokens.weight" }
