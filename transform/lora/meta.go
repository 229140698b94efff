package lora

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"google.golang.org/protobuf/proto"
)

// MetaKey is the metadata_props key holding the adapter description as JSON.
const MetaKey = "shears.lora"

// MetaVersion is the version of the Meta JSON written by this package.
const MetaVersion = 1

// Layout documents the tensor layout in the metadata, for readers outside this toolkit.
const Layout = "ONNX layout: A [in, r_max], B [r_max, out]; y = x·W + ((drop(x)·A) ⊙ (scale·mask))·B; " +
	"rank r = A[:, :r], B[:r, :] with the same scale; PEFT lora_A.weight [r, in] = A[:, :r]ᵀ, lora_B.weight [out, r] = B[:r, :]ᵀ"

// Meta is the adapter description stored in a super-network (and in an extracted sub-adapter).
type Meta struct {
	Version   int      `json:"version"`
	Layout    string   `json:"layout"`
	Targets   []string `json:"targets"`
	Ranks     []int    `json:"ranks"`
	RMax      int      `json:"r_max"`
	Alpha     float64  `json:"alpha"`
	Scale     float64  `json:"scale"` // alpha / r_max, whatever the active rank
	GroupSpec string   `json:"group_spec"`
	Dropout   float64  `json:"dropout"`
	Seed      uint64   `json:"seed"`
	// Train is true when the graph has the dropout keep-mask inputs.
	Train bool `json:"train"`
	// SparseAdapter is true when the adapter delta is masked by the base's nonzeros (SQFT
	// SparsePEFT): y = x·W + x·(M ⊙ (s·(A⊙m)·B)), M = (W ≠ 0). Training reads it from here.
	SparseAdapter bool `json:"sparse_adapter,omitempty"`
	// QuantAware is true when the base is a lowered quantized model (quant.Lower) and the
	// adapted modules train their merged weight fake-quantized on the base's grid (SQFT
	// QA-SparsePEFT, see qaDelta); the export puts the weights back on that grid.
	QuantAware bool `json:"quant_aware,omitempty"`
	// Fixed maps group names to their rank in an extracted sub-adapter (no mask inputs);
	// empty in a super-network.
	Fixed   map[string]int `json:"fixed_ranks,omitempty"`
	Groups  []Group        `json:"groups"`
	Modules []Module       `json:"modules"`
}

func (p *Plan) meta() *Meta {
	return &Meta{
		Version: MetaVersion, Layout: Layout, Targets: p.Config.Targets, Ranks: p.Config.Ranks, RMax: p.RMax(),
		Alpha: p.Config.Alpha, Scale: p.Scale, GroupSpec: p.Config.Groups, Dropout: p.Config.Dropout, Seed: p.Config.Seed,
		Groups: cloneGroups(p.Groups), Modules: append([]Module(nil), p.Modules...), SparseAdapter: p.Config.SparseAdapter,
	}
}

func cloneGroups(gs []Group) []Group {
	out := make([]Group, len(gs))
	for i, g := range gs {
		g.Modules = append([]string(nil), g.Modules...)
		out[i] = g
	}
	return out
}

// ReadConfig reads the adapter description a super-network carries under MetaKey.
func ReadConfig(m *onnx.Model) (*Meta, error) {
	if m == nil || m.Proto == nil {
		return nil, fmt.Errorf("lora: read config: no model")
	}
	for _, kv := range m.Proto.GetMetadataProps() {
		if kv.GetKey() != MetaKey {
			continue
		}
		var meta Meta
		if err := json.Unmarshal([]byte(kv.GetValue()), &meta); err != nil {
			return nil, fmt.Errorf("lora: read config of %s: metadata %q is not valid JSON: %w", name(m), MetaKey, err)
		}
		if meta.Version != MetaVersion {
			return nil, fmt.Errorf("lora: read config of %s: metadata version %d, this build reads %d", name(m), meta.Version, MetaVersion)
		}
		if len(meta.Ranks) == 0 || meta.RMax != meta.Ranks[0] || len(meta.Modules) == 0 {
			return nil, fmt.Errorf("lora: read config of %s: metadata %q is inconsistent (ranks %v, r_max %d, %d modules)",
				name(m), MetaKey, meta.Ranks, meta.RMax, len(meta.Modules))
		}
		return &meta, nil
	}
	return nil, fmt.Errorf("lora: %s has no LoRA adapters (no %q metadata; run \"shears adapt\" first)", name(m), MetaKey)
}

func name(m *onnx.Model) string {
	if m.Path != "" {
		return m.Path
	}
	return "the model"
}

// writeMeta stores meta under MetaKey, replacing an earlier entry.
func writeMeta(m *onnx.Model, meta *Meta) error {
	b, err := json.Marshal(meta)
	if err != nil {
		return fmt.Errorf("lora: metadata: %w", err)
	}
	for _, kv := range m.Proto.MetadataProps {
		if kv.GetKey() == MetaKey {
			kv.Value = proto.String(string(b))
			return nil
		}
	}
	m.Proto.MetadataProps = append(m.Proto.MetadataProps, &onnxpb.StringStringEntryProto{Key: proto.String(MetaKey), Value: proto.String(string(b))})
	return nil
}

// Masks returns the rank-mask feeds for the given rank per group name; groups not in ranks
// get r_max. A rank outside the rank space is an error (the super-network was trained on it
// only if it is in Ranks).
func (meta *Meta) Masks(ranks Ranks) (map[string][]float32, error) {
	known := map[string]bool{}
	out := map[string][]float32{}
	for _, g := range meta.Groups {
		known[g.Name] = true
		r, ok := ranks[g.Name]
		if !ok {
			r = meta.RMax
		}
		if !slices.Contains(meta.Ranks, r) {
			return nil, fmt.Errorf("lora: group %s: rank %d is not in the rank space %v", g.Name, r, meta.Ranks)
		}
		out[g.Mask] = RankMask(meta.RMax, r)
	}
	for g := range ranks {
		if !known[g] {
			return nil, fmt.Errorf("lora: no group %q in the adapter (groups look like %q)", g, meta.Groups[0].Name)
		}
	}
	return out, nil
}
