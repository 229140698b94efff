package eval

import (
	"maps"

	"github.com/shears-ml/shears/runtime"
)

// Model is what the evaluations run: an onnxruntime session (*runtime.Session), or one with
// some of its inputs held fixed (WithInputs). RunInto writes the outputs given in into in place
// (runtime.Session.RunInto): the decoders keep their KV cache in buffers reused step after step.
type Model interface {
	Run(inputs map[string]*runtime.Tensor, outputs []string) (map[string]*runtime.Tensor, error)
	RunInto(inputs map[string]*runtime.Tensor, outputs []string, into map[string]*runtime.Tensor) (map[string]*runtime.Tensor, error)
	Inputs() []runtime.IOInfo
}

// WithInputs returns m with the named inputs fed from fixed on every run — a super-network's
// rank masks, say, so one session evaluates every sub-adapter. The evaluations then see only
// the model's other inputs (input_ids, ...).
func WithInputs(m Model, fixed map[string]*runtime.Tensor) Model {
	return &fixedInputs{m: m, fixed: fixed}
}

type fixedInputs struct {
	m     Model
	fixed map[string]*runtime.Tensor
}

func (f *fixedInputs) Run(inputs map[string]*runtime.Tensor, outputs []string) (map[string]*runtime.Tensor, error) {
	return f.RunInto(inputs, outputs, nil)
}

func (f *fixedInputs) RunInto(inputs map[string]*runtime.Tensor, outputs []string, into map[string]*runtime.Tensor) (map[string]*runtime.Tensor, error) {
	all := maps.Clone(inputs)
	if all == nil {
		all = map[string]*runtime.Tensor{}
	}
	maps.Copy(all, f.fixed)
	return f.m.RunInto(all, outputs, into)
}

func (f *fixedInputs) Inputs() []runtime.IOInfo {
	var out []runtime.IOInfo
	for _, in := range f.m.Inputs() {
		if _, ok := f.fixed[in.Name]; !ok {
			out = append(out, in)
		}
	}
	return out
}
