package merge

import (
	"encoding/json"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"

	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/transform/layers"
	"github.com/shears-ml/shears/transform/lora"
	"google.golang.org/protobuf/proto"
)

// Mode is how the adapter reaches the exported graph.
type Mode string

// The export modes (METHOD §6).
const (
	// None keeps the sparse base and the sliced sub-adapter A[:, :r], B[:r, :] (Shears' own
	// deliverable); the rank masks become constants.
	None Mode = "none"
	// Dense merges W' = W + s·A_r·B_r: exact, but it fills the base's zeros.
	Dense Mode = "dense"
	// Sparse merges W' = W + M ⊙ (s·A_r·B_r), M = (W ≠ 0) (SQFT SparsePEFT): the base's zeros
	// stay. Exact after SparseAdapter training; otherwise the part of ΔW on the zeros is lost
	// (Layer.Dropped says how much).
	Sparse Mode = "sparse"
)

// ParseMode reads "none", "dense" or "sparse".
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case None, Dense, Sparse:
		return m, nil
	}
	return "", fmt.Errorf("merge: mode %q: want none, dense or sparse", s)
}

// MetaKey is the metadata_props key of merged exports: what was merged, at which ranks.
const MetaKey = "shears.export"

// Layer is one adapted weight in the report.
type Layer struct {
	Module string `json:"module"`
	Weight string `json:"weight"`
	Group  string `json:"group"`
	Rank   int    `json:"rank"`
	Total  int64  `json:"total"`
	// ZerosBefore and ZerosAfter count exact zeros in the weight before and after the merge
	// (equal for Mode None).
	ZerosBefore int64 `json:"zeros_before"`
	ZerosAfter  int64 `json:"zeros_after"`
	// Dropped is ‖(1−M) ⊙ ΔW‖ / ‖ΔW‖ (Frobenius): the share of the adapter's update that falls
	// on the base's zeros, which a sparse merge discards. 0 after SparseAdapter training, and 0
	// when ΔW = 0.
	Dropped float64 `json:"dropped"`
}

// Report summarises an export.
type Report struct {
	Mode Mode `json:"mode"`
	// SparseAdapter is true when the super-network was trained with masked deltas; then dense
	// and sparse merges are the same (ΔW is masked in the function that was trained).
	SparseAdapter bool       `json:"sparse_adapter"`
	Ranks         lora.Ranks `json:"ranks"`
	Scale         float64    `json:"scale"`
	Layers        []Layer    `json:"layers"`
	Total         int64      `json:"total"`
	ZerosBefore   int64      `json:"zeros_before"`
	ZerosAfter    int64      `json:"zeros_after"`
	// Exact is true when the export computes what the super-network computes at Ranks (up to
	// float rounding): false only for a sparse merge of an adapter trained without the mask
	// whose update touches the zeros.
	Exact bool `json:"exact"`
}

// SparsityBefore is the adapted weights' zero fraction before the merge.
func (r *Report) SparsityBefore() float64 { return frac(r.ZerosBefore, r.Total) }

// SparsityAfter is the adapted weights' zero fraction after the merge.
func (r *Report) SparsityAfter() float64 { return frac(r.ZerosAfter, r.Total) }

func frac(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// Export turns a super-network into a deployable graph of the sub-adapter at ranks (every
// group; see Check), computing what the super-network computes with those rank masks, with the
// merged weights in memory: Prepare, then Apply. Exports that are saved use Prepare and the
// Plan's SaveOptions instead, which merge each weight as it is written.
func Export(super *onnx.Model, ranks lora.Ranks, mode Mode) (*onnx.Model, *Report, error) {
	p, err := Prepare(super, ranks, mode)
	if err != nil {
		return nil, nil, err
	}
	if err := p.Apply(p.Model); err != nil {
		return nil, nil, err
	}
	return p.Model, p.Report, nil
}

// A Plan is a prepared export. Model is the deployable graph: the base model's inputs only, no
// rank masks, every adapter node, tensor and input removed and the "shears.lora" metadata
// replaced by MetaKey; for Dense and Sparse its adapted weights still hold the base's values,
// and SaveOptions (or Apply) adds each one's update W' = W + s·A_r·B_r (masked for Sparse) in
// the weight's stored layout and type (Transposed [out, in] weights get ΔWᵀ; a float16 base
// exports in float16). Saving streams like prune and convert: one weight is merged at a time,
// read from the super-network's data, so an export never holds the model's weights. Report is
// complete before the save (Prepare merges each weight once to count, keeping none).
type Plan struct {
	Model  *onnx.Model
	Report *Report
	super  *onnx.Model
	meta   *lora.Meta
	ranks  lora.Ranks
	masked bool
	// weights maps each adapted weight to the modules that update it, in order: one, or a
	// fused linear's q, k and v slices, which each update their columns of the same weight.
	weights map[string][]target
}

// target is one module's update of a weight: the module and its linear (layout, width).
type target struct {
	mod lora.Module
	lin layers.Linear
}

// Prepare plans the export of the sub-adapter at ranks (see Plan). super is not modified and
// must stay open until the Plan's model is saved: the updates are computed from its A and B.
// Mode None delegates to lora.Extract (nothing to merge).
func Prepare(super *onnx.Model, ranks lora.Ranks, mode Mode) (*Plan, error) {
	meta, err := lora.ReadConfig(super)
	if err != nil {
		return nil, fmt.Errorf("merge: %w", err)
	}
	if meta.Train {
		return nil, fmt.Errorf("merge: %s is a train graph (dropout inputs); export from the inference super-network", name(super))
	}
	if len(meta.Fixed) > 0 {
		return nil, fmt.Errorf("merge: %s is an extracted sub-adapter, not a super-network", name(super))
	}
	if _, err := ParseMode(string(mode)); err != nil {
		return nil, err
	}
	if _, err := Check(meta, ranks); err != nil {
		return nil, err
	}
	rep := &Report{Mode: mode, SparseAdapter: meta.SparseAdapter, Ranks: ranks.Clone(), Scale: meta.Scale, Exact: true}
	p := &Plan{Report: rep, super: super, meta: meta, ranks: ranks, masked: mode == Sparse || meta.SparseAdapter}
	if mode == None {
		if p.Model, err = lora.Extract(super, ranks); err != nil {
			return nil, fmt.Errorf("merge: %w", err)
		}
		for _, mod := range meta.Modules {
			w, err := readF32(super, mod.Weight)
			if err != nil {
				return nil, err
			}
			z, total := zeros(w), int64(len(w))
			if mod.Slice != nil {
				z, total = sliceZeros(w, super.Initializer(mod.Weight).GetDims(), mod)
			}
			rep.add(Layer{Module: mod.Name, Weight: mod.Weight, Group: mod.Group, Rank: ranks[mod.Group], Total: total, ZerosBefore: z, ZerosAfter: z})
		}
		return p, nil
	}

	out := &onnx.Model{Proto: proto.Clone(super.Proto).(*onnxpb.ModelProto), Dir: super.Dir, Path: super.Path}
	g := out.Graph()
	lins, err := layers.Find(out)
	if err != nil {
		return nil, fmt.Errorf("merge: %w", err)
	}
	linOf := map[string]layers.Linear{}
	for _, l := range lins {
		linOf[l.Node] = l
	}
	if err := removeAdapters(g, meta); err != nil {
		return nil, fmt.Errorf("merge: %s: %w", name(super), err)
	}
	ix := onnx.NewIndex(g)
	p.weights = map[string][]target{}
	var order []string // weights in the order of their first module
	for _, mod := range meta.Modules {
		l, ok := linOf[mod.Node]
		if !ok || l.Weight != mod.Weight {
			return nil, fmt.Errorf("merge: module %s: linear node %s with weight %s not found", mod.Name, mod.Node, mod.Weight)
		}
		if err := checkMergeable(ix, l); err != nil {
			return nil, fmt.Errorf("merge: module %s: %w", mod.Name, err)
		}
		if p.weights[mod.Weight] == nil {
			order = append(order, mod.Weight)
		}
		p.weights[mod.Weight] = append(p.weights[mod.Weight], target{mod, l})
	}
	// The report: each weight merged once, in module order, and dropped.
	at := map[string]int{} // module name → its position in meta.Modules
	for i, mod := range meta.Modules {
		at[mod.Name] = i
	}
	layersOut := make([]Layer, len(meta.Modules))
	for _, name := range order {
		w, err := out.Float32s(ix.Initializers[name])
		if err != nil {
			return nil, fmt.Errorf("merge: weight %s: %w", name, err)
		}
		ls, err := p.merge(name, w)
		if err != nil {
			return nil, err
		}
		for _, l := range ls {
			layersOut[at[l.Module]] = l
		}
	}
	for _, l := range layersOut {
		if l.Dropped > 0 && mode == Sparse {
			rep.Exact = false
		}
		rep.add(l)
	}
	if err := setMeta(out, rep); err != nil {
		return nil, err
	}
	p.Model = out
	return p, nil
}

// merge adds the updates of the modules of weight name to w (its values as stored) in place and
// returns their report rows. Each module changes its own columns [lo, lo+Out) of the linear's
// outputs: all of them, or a fused linear's q, k or v slice.
func (p *Plan) merge(name string, w []float32) ([]Layer, error) {
	var out []Layer
	for _, tg := range p.weights[name] {
		mod, l := tg.mod, tg.lin
		if int64(len(w)) != mod.In*l.Out {
			return nil, fmt.Errorf("merge: weight %s has %d values, want %d×%d", name, len(w), mod.In, l.Out)
		}
		r := p.ranks[mod.Group]
		dw, err := delta(p.super, p.meta, mod, r)
		if err != nil {
			return nil, err
		}
		lo, width := int64(0), l.Out
		if mod.Slice != nil {
			lo = mod.Slice[0]
		}
		lay := Layer{Module: mod.Name, Weight: mod.Weight, Group: mod.Group, Rank: r}
		var kept, lost float64
		for i := int64(0); i < mod.In; i++ {
			for j := int64(0); j < mod.Out; j++ {
				s := i*width + lo + j // the stored index of W[i, lo+j]
				if l.Transposed {
					s = (lo+j)*mod.In + i
				}
				lay.Total++
				d := float64(dw[i*mod.Out+j])
				if w[s] == 0 {
					lay.ZerosBefore++
					lost += d * d
					if p.masked {
						lay.ZerosAfter++
						continue // stays 0
					}
				} else {
					kept += d * d
				}
				if w[s] += float32(d); w[s] == 0 {
					lay.ZerosAfter++
				}
			}
		}
		if lost > 0 && !p.meta.SparseAdapter { // a SparseAdapter's trained delta is M ⊙ ΔW: nothing is dropped
			lay.Dropped = math.Sqrt(lost / (lost + kept))
		}
		out = append(out, lay)
	}
	return out, nil
}

// Touches reports whether the export changes tensor name (an adapted weight).
func (p *Plan) Touches(name string) bool { return p.weights[name] != nil }

// Transform is the streaming weight transform (onnx.SaveOptions.Transform): the merged bytes of
// an adapted weight, in the type it is stored in; other tensors pass unchanged.
func (p *Plan) Transform(name string, t *onnxpb.TensorProto, raw []byte) ([]byte, error) {
	if !p.Touches(name) {
		return raw, nil
	}
	dt := onnx.DataType(t)
	w, err := onnx.DecodeFloats(dt, raw)
	if err != nil {
		return nil, fmt.Errorf("merge: weight %s: %w", name, err)
	}
	if _, err := p.merge(name, w); err != nil {
		return nil, err
	}
	nt := onnx.NewTensor(name, dt, onnx.Dims(t), nil)
	if err := onnx.SetFloat32s(nt, w); err != nil {
		return nil, fmt.Errorf("merge: weight %s: %w", name, err)
	}
	return nt.GetRawData(), nil
}

// SaveOptions returns base with the merge added as its Transform (after base's own, if any),
// so saving the Plan's model (or a model holding the same weights, such as a merged decoder
// rebuilt from two branches) writes the merged weights.
func (p *Plan) SaveOptions(base onnx.SaveOptions) onnx.SaveOptions {
	if len(p.weights) == 0 {
		return base
	}
	return base.Then(p.Touches, p.Transform)
}

// Apply writes the merged weights into m's initializers of the same names, in memory: for
// small models, and for passes that read the merged values before the save (the quantized
// export).
func (p *Plan) Apply(m *onnx.Model) error {
	g := m.Graph()
	for i, t := range g.GetInitializer() {
		if !p.Touches(t.GetName()) {
			continue
		}
		w, err := m.Float32s(t)
		if err != nil {
			return fmt.Errorf("merge: weight %s: %w", t.GetName(), err)
		}
		if _, err := p.merge(t.GetName(), w); err != nil {
			return err
		}
		nt := onnx.NewTensor(t.GetName(), onnx.DataType(t), onnx.Dims(t), nil)
		if err := onnx.SetFloat32s(nt, w); err != nil {
			return fmt.Errorf("merge: weight %s: %w", t.GetName(), err)
		}
		g.Initializer[i] = nt
	}
	return nil
}

// sliceZeros counts the zeros among the columns of a fused linear's weight that module mod (a
// q, k or v slice) adapts, and the number of those elements. The weight is [in, out], or
// [out, in] when stored transposed (a fused out is never equal to in: it holds three parts).
func sliceZeros(w []float32, dims []int64, mod lora.Module) (int64, int64) {
	var z int64
	transposed := len(dims) == 2 && dims[0] != mod.In
	width := int64(len(w)) / mod.In
	for i := int64(0); i < mod.In; i++ {
		for j := mod.Slice[0]; j < mod.Slice[1]; j++ {
			s := i*width + j
			if transposed {
				s = j*mod.In + i
			}
			if w[s] == 0 {
				z++
			}
		}
	}
	return z, mod.In * mod.Out
}

func (r *Report) add(l Layer) {
	r.Layers = append(r.Layers, l)
	r.Total += l.Total
	r.ZerosBefore += l.ZerosBefore
	r.ZerosAfter += l.ZerosAfter
}

func zeros(v []float32) int64 {
	var n int64
	for _, x := range v {
		if x == 0 {
			n++
		}
	}
	return n
}

func name(m *onnx.Model) string {
	if m.Path != "" {
		return m.Path
	}
	return "the super-network"
}

func readF32(m *onnx.Model, tensor string) ([]float32, error) {
	t := m.Initializer(tensor)
	if t == nil {
		return nil, fmt.Errorf("merge: %s: tensor %s is missing", name(m), tensor)
	}
	v, err := m.Float32s(t)
	if err != nil {
		return nil, fmt.Errorf("merge: %s: %w", name(m), err)
	}
	return v, nil
}

// readAB reads a module's full A [in, r_max] and B [r_max, out], checking their sizes.
func readAB(super *onnx.Model, meta *lora.Meta, mod lora.Module) (a, b []float32, err error) {
	rMax := int64(meta.RMax)
	if a, err = readF32(super, mod.A); err != nil {
		return nil, nil, err
	}
	if b, err = readF32(super, mod.B); err != nil {
		return nil, nil, err
	}
	if int64(len(a)) != mod.In*rMax || int64(len(b)) != rMax*mod.Out {
		return nil, nil, fmt.Errorf("merge: module %s: A has %d values, B %d; want %d×%d and %d×%d", mod.Name, len(a), len(b), mod.In, rMax, rMax, mod.Out)
	}
	return a, b, nil
}

// delta computes ΔW = s·A[:, :r]·B[:r, :] as [in, out] (float64 sums, rows in parallel).
func delta(super *onnx.Model, meta *lora.Meta, mod lora.Module, r int) ([]float32, error) {
	rMax := int64(meta.RMax)
	a, b, err := readAB(super, meta, mod)
	if err != nil {
		return nil, err
	}
	dw := make([]float32, mod.In*mod.Out)
	s := meta.Scale
	var wg sync.WaitGroup
	rows := make(chan int64)
	for w := 0; w < runtime.GOMAXPROCS(0); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			acc := make([]float64, mod.Out)
			for i := range rows {
				clear(acc)
				for k := int64(0); k < int64(r); k++ {
					aik := float64(a[i*rMax+k])
					if aik == 0 {
						continue
					}
					bk := b[k*mod.Out : (k+1)*mod.Out]
					for j, bv := range bk {
						acc[j] += aik * float64(bv)
					}
				}
				row := dw[i*mod.Out : (i+1)*mod.Out]
				for j := range row {
					row[j] = float32(s * acc[j])
				}
			}
		}()
	}
	for i := int64(0); i < mod.In; i++ {
		rows <- i
	}
	close(rows)
	wg.Wait()
	return dw, nil
}

// checkMergeable refuses weights that are not this linear's alone (tied weights: merging would
// change the other user too) and Gemm nodes whose alpha scales the weight.
func checkMergeable(ix *onnx.Index, l layers.Linear) error {
	n := ix.Nodes[l.Node]
	if n == nil {
		return fmt.Errorf("node %s not found", l.Node)
	}
	for _, a := range n.GetAttribute() {
		if n.GetOpType() == "Gemm" && a.GetName() == "alpha" && a.GetF() != 1 {
			return fmt.Errorf("node %s: Gemm alpha %g ≠ 1 is not supported", l.Node, a.GetF())
		}
	}
	t := l.Weight
	for hops := 0; hops < 8; hops++ {
		cs := ix.Consumers[t]
		if len(cs) != 1 || ix.Outputs[t] != nil {
			return fmt.Errorf("weight %s (on the way to %s) has %d readers; a shared weight cannot be merged", l.Weight, l.Node, len(cs))
		}
		c := cs[0]
		if c == n {
			return nil
		}
		switch c.GetOpType() {
		case "Transpose", "Cast", "Identity":
			t = c.GetOutput()[0]
		default:
			return fmt.Errorf("weight %s reaches %s through %s %s", l.Weight, l.Node, c.GetOpType(), c.GetName())
		}
	}
	return fmt.Errorf("weight %s does not reach %s", l.Weight, l.Node)
}

// removeAdapters deletes, for every module, the Add base + adapter and everything only the
// adapter used (A, B, scale, masks, the sparse mask's nodes, the rank-mask inputs), giving the
// base node its output name back.
func removeAdapters(g *onnxpb.GraphProto, meta *lora.Meta) error {
	ix := onnx.NewIndex(g)
	dead := map[*onnxpb.NodeProto]bool{}
	var seeds []string
	for _, mod := range meta.Modules {
		add := ix.Producer[mod.Output]
		if dead[add] {
			continue // the q, k, v modules of a fused linear share one Add (of their Concat)
		}
		if add == nil || add.GetOpType() != "Add" || len(add.Input) != 2 {
			return fmt.Errorf("module %s: the adapter Add producing %s is missing", mod.Name, mod.Output)
		}
		base := ix.Producer[add.Input[0]]
		if base == nil || base.GetName() != mod.Node {
			return fmt.Errorf("module %s: the adapter Add %s does not read the base node %s", mod.Name, add.GetName(), mod.Node)
		}
		base.Output[0] = mod.Output
		dead[add] = true
		seeds = append(seeds, add.Input[1])
	}
	// Walk back from the deltas: a node dies when nothing alive reads any of its outputs.
	readers := map[string]int{}
	for _, n := range g.Node {
		if dead[n] {
			continue
		}
		for _, in := range n.Input {
			readers[in]++
		}
	}
	for _, o := range g.Output {
		readers[o.GetName()]++
	}
	var candidates []string // tensors that lost a reader
	candidates = append(candidates, seeds...)
	for len(candidates) > 0 {
		t := candidates[len(candidates)-1]
		candidates = candidates[:len(candidates)-1]
		p := ix.Producer[t]
		if p == nil || dead[p] {
			continue
		}
		alive := false
		for _, o := range p.Output {
			if readers[o] > 0 {
				alive = true
			}
		}
		if alive {
			continue
		}
		dead[p] = true
		for _, in := range p.Input {
			readers[in]--
			candidates = append(candidates, in)
		}
	}
	// Tensors read only by dead nodes: drop those initializers and the rank-mask inputs.
	unread := func(name string) bool { return readers[name] <= 0 }
	gone := map[string]bool{}
	for n := range dead {
		for _, in := range n.Input {
			if unread(in) {
				gone[in] = true
			}
		}
		for _, o := range n.Output {
			gone[o] = true
		}
	}
	g.Node = slices.DeleteFunc(g.Node, func(n *onnxpb.NodeProto) bool { return dead[n] })
	g.Initializer = slices.DeleteFunc(g.Initializer, func(t *onnxpb.TensorProto) bool { return gone[t.GetName()] })
	masks := map[string]bool{}
	for _, gr := range meta.Groups {
		masks[gr.Mask] = true
	}
	for _, in := range g.Input {
		if masks[in.GetName()] && !gone[in.GetName()] {
			return fmt.Errorf("rank-mask input %s is still read after removing the adapters", in.GetName())
		}
	}
	g.Input = slices.DeleteFunc(g.Input, func(v *onnxpb.ValueInfoProto) bool { return gone[v.GetName()] && masks[v.GetName()] })
	g.ValueInfo = slices.DeleteFunc(g.ValueInfo, func(v *onnxpb.ValueInfoProto) bool { return gone[v.GetName()] })
	return nil
}

// setMeta replaces the lora metadata by the export record.
func setMeta(m *onnx.Model, rep *Report) error {
	rec := struct {
		Mode          Mode           `json:"mode"`
		SparseAdapter bool           `json:"sparse_adapter"`
		Scale         float64        `json:"scale"`
		Ranks         map[string]int `json:"ranks"`
		Exact         bool           `json:"exact"`
	}{rep.Mode, rep.SparseAdapter, rep.Scale, rep.Ranks, rep.Exact}
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("merge: metadata: %w", err)
	}
	props := slices.DeleteFunc(m.Proto.MetadataProps, func(kv *onnxpb.StringStringEntryProto) bool {
		return kv.GetKey() == lora.MetaKey || kv.GetKey() == MetaKey
	})
	m.Proto.MetadataProps = append(props, &onnxpb.StringStringEntryProto{Key: proto.String(MetaKey), Value: proto.String(string(b))})
	return nil
}
