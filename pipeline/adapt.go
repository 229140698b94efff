package pipeline

import (
	"fmt"
	"slices"

	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/transform/decoder"
	"github.com/shears-ml/shears/transform/layers"
	"github.com/shears-ml/shears/transform/lora"
	"github.com/shears-ml/shears/transform/quant"
)

// LoRAConfig is the adapters' configuration (targets, rank space, alpha, groups, dropout,
// seed, SparsePEFT, adapter dtype); its zero fields take the defaults below.
type LoRAConfig = lora.Config

// The adapters' defaults (the reference's): targets, rank space (the first is r_max), alpha,
// groups of a layer sharing one rank, and the adapter dtype on a float16 base.
var (
	DefaultTargets = lora.DefaultTargets
	DefaultRanks   = lora.DefaultRanks
)

const (
	DefaultAlpha     = lora.DefaultAlpha
	DefaultGroups    = lora.DefaultGroups
	AdapterDTypeFP32 = lora.AdapterFP32
	DefaultDropout   = 0.1 // the reference's lora_dropout
	AdapterDTypeBase = lora.AdapterBase
)

// AdaptOptions are the adapt stage's options (the flags of "shears adapt").
type AdaptOptions struct {
	Model, Out string // Out "" plans only (a dry run)
	LoRA       LoRAConfig
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

// AdaptReport summarises the adapters inserted (or planned, in a dry run); its JSON is the
// "shears adapt --json" document.
type AdaptReport struct {
	Model      string           `json:"model"`
	Output     string           `json:"output,omitempty"`
	Targets    []string         `json:"targets"`
	Ranks      []int            `json:"ranks"`
	Alpha      float64          `json:"alpha"`
	Scale      float64          `json:"scale"`
	Dropout    float64          `json:"dropout"`
	Train      bool             `json:"train_graph"` // dropout keep-mask inputs were added
	Modules    int              `json:"modules"`
	Kinds      []AdaptKind      `json:"groups"`
	MaskInputs []string         `json:"mask_inputs"`
	Params     map[string]int64 `json:"params"` // by rank, every group at that rank
	// QuantAware: the base was quantized (MatMulNBits); the adapters train QA-SparsePEFT.
	QuantAware bool `json:"quant_aware,omitempty"`
	// Shown are the ranks a summary shows: r_max, the heuristic middle and the smallest.
	Shown []int `json:"-"`
	// Plan is the full plan (modules, shapes, tensor names); Plan.String() prints it.
	Plan *lora.Plan `json:"-"`
}

// AdaptKind summarises one group kind (qkv, up, down, ...) over the layers.
type AdaptKind struct {
	Kind    string           `json:"kind"`
	Roles   []string         `json:"roles"`
	Layers  int              `json:"layers"`
	Modules int              `json:"modules"`
	Params  map[string]int64 `json:"params"` // at the Shown ranks
}

// Adapt inserts the elastic LoRA super-adapters into o.Model and writes o.Out atomically; with
// no Out it only plans (a dry run).
func Adapt(o AdaptOptions) (*AdaptReport, error) {
	plan, err := adapt(o)
	if err != nil {
		return nil, err
	}
	rep := adaptReport(plan)
	rep.Model, rep.Output, rep.Train = o.Model, o.Out, o.Train && o.LoRA.Dropout > 0
	return rep, nil
}

// adaptReport groups the plan by group kind.
func adaptReport(p *lora.Plan) *AdaptReport {
	ranks := p.Config.Ranks
	rep := &AdaptReport{QuantAware: p.QuantAware, Targets: p.Config.Targets, Ranks: ranks, Alpha: p.Config.Alpha, Scale: p.Scale,
		Dropout: p.Config.Dropout, Modules: len(p.Modules), Params: map[string]int64{}, Plan: p,
		Shown: []int{ranks[0], lora.HeuristicRank(ranks), ranks[len(ranks)-1]}}
	for _, r := range ranks {
		rep.Params[fmt.Sprint(r)] = p.Params(r)
	}
	idx := map[string]int{}
	mods := map[string]lora.Module{}
	for _, m := range p.Modules {
		mods[m.Name] = m
	}
	for _, g := range p.Groups {
		rep.MaskInputs = append(rep.MaskInputs, g.Mask)
		i, ok := idx[g.Kind]
		if !ok {
			i = len(rep.Kinds)
			idx[g.Kind] = i
			rep.Kinds = append(rep.Kinds, AdaptKind{Kind: g.Kind, Params: map[string]int64{}})
		}
		k := &rep.Kinds[i]
		k.Layers++
		for _, name := range g.Modules {
			m := mods[name]
			k.Modules++
			if !slices.Contains(k.Roles, m.Role) {
				k.Roles = append(k.Roles, m.Role)
			}
			for _, r := range rep.Shown {
				k.Params[fmt.Sprint(r)] += m.Params(r)
			}
		}
	}
	return rep
}

func adapt(o AdaptOptions) (*lora.Plan, error) {
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
