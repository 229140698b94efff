package pipeline

import (
	"fmt"

	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/transform/decoder"
	"github.com/shears-ml/shears/transform/layers"
	"github.com/shears-ml/shears/transform/lora"
	"github.com/shears-ml/shears/transform/quant"
)

// AdaptOptions are the adapt stage's options (the flags of "shears adapt").
type AdaptOptions struct {
	Model, Out string // Out "" plans only (a dry run)
	LoRA       lora.Config
	Include    string // regexps over node, weight or role
	Exclude    string
	Train      bool // also add the dropout keep-mask inputs
	External   bool
	// CopyBase copies a base's external data into the output's data file; by default the output
	// refers to the base's data file (ShareSave).
	CopyBase bool
	// Warn, when set, receives warnings (a shared save that had to copy).
	Warn func(string)
	// AllowNonFinite adapts a model whose weights hold NaN or Inf (refused by default).
	AllowNonFinite bool
}

// Adapt inserts the elastic LoRA super-adapters into o.Model and writes o.Out atomically; with
// no Out it only returns the plan.
func Adapt(o AdaptOptions) (*lora.Plan, error) {
	m, _, cands, err := loadLinears(o.Model, o.Include, o.Exclude)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	if has, _ := quant.HasQuantized(m); has {
		// QA-SparsePEFT (SQFT): train on the dequantized base with the sparse adapter path,
		// the merged weight fake-quantized on the base's grid (transform/lora qaDelta).
		if m, cands, err = lowerForAdapt(m, o.Include, o.Exclude); err != nil {
			return nil, err
		}
		defer m.Close()
		o.LoRA.SparseAdapter = true
	}
	branch, err := decoder.Branch(m)
	if err != nil {
		return nil, fmt.Errorf("adapt: %w", err)
	}
	plan, err := lora.NewPlan(branch, cands, o.LoRA)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.Model, err)
	}
	if o.Out == "" {
		return plan, nil
	}
	if err := CheckModelOutput(o.Out, m, "the model to adapt"); err != nil {
		return nil, fmt.Errorf("adapt: %w", err)
	}
	if err := CheckOpset(m, o.Model, MinTrainOpset, "adapt (for training)"); err != nil {
		return nil, err
	}
	if err := CheckFinite(m, o.Model, o.AllowNonFinite, o.Warn); err != nil {
		return nil, fmt.Errorf("adapt: %w", err)
	}
	// A merged decoder gets the adapters in both branches, reading one set of A and B.
	sup, err := decoder.EachBranch(m, func(b *onnx.Model, cache bool) (*onnx.Model, error) {
		p := plan
		if !cache {
			all, err := layers.Find(b)
			if err != nil {
				return nil, err
			}
			sel, err := layers.Select(all, o.Include, o.Exclude)
			if err != nil {
				return nil, err
			}
			if p, err = lora.NewPlan(b, sel, o.LoRA); err != nil {
				return nil, fmt.Errorf("%s (no-cache branch): %w", o.Model, err)
			}
		}
		return lora.Apply(b, p, lora.ApplyOptions{Train: o.Train})
	})
	if err != nil {
		return nil, err
	}
	recordHistory(sup)
	if err := ShareSave(sup, o.Out, onnx.SaveOptions{ExternalData: o.External || m.HasExternal()}, !o.CopyBase, o.Warn); err != nil {
		return nil, err
	}
	return plan, nil
}

// ShareSave saves m to path; with share, tensors m keeps in an external data file stay in that
// file (onnx.SaveOptions.ShareExternal: no second copy of a base's weights on disk, and
// sessions of the output map the base's file). When the output cannot refer to the file (it
// does not lie in the output's folder or below it), the weights are copied and warn says why.
func ShareSave(m *onnx.Model, path string, so onnx.SaveOptions, share bool, warn func(string)) error {
	if share && m.HasExternal() {
		if err := m.CanShareExternal(path); err != nil {
			if warn != nil {
				warn(fmt.Sprintf("copying the base's weights into %s.data: %v", path, err))
			}
		} else {
			so.ShareExternal = true
		}
	}
	return m.Save(path, so)
}

// lowerForAdapt lowers a quantized model's MatMulNBits to MatMuls by their dequantized weights
// (quant.Lower) and finds the adapter candidates among its linears.
func lowerForAdapt(m *onnx.Model, include, exclude string) (*onnx.Model, []layers.Linear, error) {
	low, err := quant.Lower(m)
	if err != nil {
		return nil, nil, fmt.Errorf("adapt: %w", err)
	}
	all, err := layers.Find(low)
	if err != nil {
		return nil, nil, err
	}
	cands, err := layers.Select(all, include, exclude)
	if err != nil {
		return nil, nil, err
	}
	return low, cands, nil
}
