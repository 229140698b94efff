package pipeline

import (
	"fmt"

	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/transform/lora"
)

// AdaptOptions are the adapt stage's options (the flags of "shears adapt").
type AdaptOptions struct {
	Model, Out string // Out "" plans only (a dry run)
	LoRA       lora.Config
	Include    string // regexps over node, weight or role
	Exclude    string
	Train      bool // also add the dropout keep-mask inputs
	External   bool
}

// Adapt inserts the elastic LoRA super-adapters into o.Model and writes o.Out atomically; with
// no Out it only returns the plan.
func Adapt(o AdaptOptions) (*lora.Plan, error) {
	m, _, cands, err := loadLinears(o.Model, o.Include, o.Exclude)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	plan, err := lora.NewPlan(m, cands, o.LoRA)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.Model, err)
	}
	if o.Out == "" {
		return plan, nil
	}
	sup, err := lora.Apply(m, plan, lora.ApplyOptions{Train: o.Train})
	if err != nil {
		return nil, err
	}
	if err := sup.Save(o.Out, onnx.SaveOptions{ExternalData: o.External || HasExternal(m)}); err != nil {
		return nil, err
	}
	return plan, nil
}
