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
// group; see Check), computing what the super-network computes with those rank masks. The
// result has the base model's inputs only, no rank masks. super is not modified. Mode None
// delegates to lora.Extract; Dense and Sparse write the merged weights in the weight's stored
// layout (Transposed [out, in] weights get ΔWᵀ), remove every adapter node, tensor and input,
// and replace the "shears.lora" metadata by MetaKey.
func Export(super *onnx.Model, ranks lora.Ranks, mode Mode) (*onnx.Model, *Report, error) {
	meta, err := lora.ReadConfig(super)
	if err != nil {
		return nil, nil, fmt.Errorf("merge: %w", err)
	}
	if meta.Train {
		return nil, nil, fmt.Errorf("merge: %s is a train graph (dropout inputs); export from the inference super-network", name(super))
	}
	if len(meta.Fixed) > 0 {
		return nil, nil, fmt.Errorf("merge: %s is an extracted sub-adapter, not a super-network", name(super))
	}
	if _, err := ParseMode(string(mode)); err != nil {
		return nil, nil, err
	}
	if _, err := Check(meta, ranks); err != nil {
		return nil, nil, err
	}
	rep := &Report{Mode: mode, SparseAdapter: meta.SparseAdapter, Ranks: ranks.Clone(), Scale: meta.Scale, Exact: true}
	if mode == None {
		out, err := lora.Extract(super, ranks)
		if err != nil {
			return nil, nil, fmt.Errorf("merge: %w", err)
		}
		for _, mod := range meta.Modules {
			w, err := readF32(super, mod.Weight)
			if err != nil {
				return nil, nil, err
			}
			z, total := zeros(w), int64(len(w))
			if mod.Slice != nil {
				z, total = sliceZeros(w, super.Initializer(mod.Weight).GetDims(), mod)
			}
			rep.add(Layer{Module: mod.Name, Weight: mod.Weight, Group: mod.Group, Rank: ranks[mod.Group], Total: total, ZerosBefore: z, ZerosAfter: z})
		}
		return out, rep, nil
	}

	out := &onnx.Model{Proto: proto.Clone(super.Proto).(*onnxpb.ModelProto), Dir: super.Dir, Path: super.Path}
	g := out.Graph()
	lins, err := layers.Find(out)
	if err != nil {
		return nil, nil, fmt.Errorf("merge: %w", err)
	}
	linOf := map[string]layers.Linear{}
	for _, l := range lins {
		linOf[l.Node] = l
	}
	if err := removeAdapters(g, meta); err != nil {
		return nil, nil, fmt.Errorf("merge: %s: %w", name(super), err)
	}
	ix := onnx.NewIndex(g)
	masked := mode == Sparse || meta.SparseAdapter
	// merged holds a weight already updated by an earlier module: the q, k and v modules of a
	// fused linear each add their slice's columns to the same weight.
	merged := map[string][]float32{}
	for _, mod := range meta.Modules {
		l, ok := linOf[mod.Node]
		if !ok || l.Weight != mod.Weight {
			return nil, nil, fmt.Errorf("merge: module %s: linear node %s with weight %s not found", mod.Name, mod.Node, mod.Weight)
		}
		if err := checkMergeable(ix, l); err != nil {
			return nil, nil, fmt.Errorf("merge: module %s: %w", mod.Name, err)
		}
		r := ranks[mod.Group]
		dw, err := delta(super, meta, mod, r)
		if err != nil {
			return nil, nil, err
		}
		t := ix.Initializers[mod.Weight]
		w, err := out.Float32s(t)
		if err != nil {
			return nil, nil, fmt.Errorf("merge: module %s: %w", mod.Name, err)
		}
		// Columns [lo, lo+mod.Out) of the linear's l.Out outputs: all of them, or a fused
		// linear's q, k or v slice.
		lo, width := int64(0), l.Out
		if mod.Slice != nil {
			lo = mod.Slice[0]
		}
		nw := merged[mod.Weight]
		if nw == nil {
			nw = append([]float32(nil), w...)
		}
		var before, total int64
		var kept, lost float64
		for i := int64(0); i < mod.In; i++ {
			for j := int64(0); j < mod.Out; j++ {
				s := i*width + lo + j // the stored index of W[i, lo+j]
				if l.Transposed {
					s = (lo+j)*mod.In + i
				}
				total++
				if w[s] == 0 {
					before++
				}
				d := float64(dw[i*mod.Out+j])
				if w[s] == 0 {
					lost += d * d
					if masked {
						continue // nw[s] stays 0
					}
				} else {
					kept += d * d
				}
				nw[s] = w[s] + float32(d)
			}
		}
		// The layer's counts are over the elements this module changes (its slice's columns).
		lay := Layer{Module: mod.Name, Weight: mod.Weight, Group: mod.Group, Rank: r, Total: total, ZerosBefore: before}
		if lost > 0 && !meta.SparseAdapter { // a SparseAdapter's trained delta is M ⊙ ΔW: nothing is dropped
			lay.Dropped = math.Sqrt(lost / (lost + kept))
			if mode == Sparse && !meta.SparseAdapter {
				rep.Exact = false
			}
		}
		for i := int64(0); i < mod.In; i++ {
			for j := int64(0); j < mod.Out; j++ {
				s := i*width + lo + j
				if l.Transposed {
					s = (lo+j)*mod.In + i
				}
				if nw[s] == 0 {
					lay.ZerosAfter++
				}
			}
		}
		merged[mod.Weight] = nw
		rep.add(lay)
	}
	// The merged weights keep the base's type (a float16 base exports in float16).
	for name, nw := range merged {
		t := ix.Initializers[name]
		nt := onnx.NewTensor(name, onnx.DataType(t), onnx.Dims(t), nil)
		if err := onnx.SetFloat32s(nt, nw); err != nil {
			return nil, nil, fmt.Errorf("merge: weight %s: %w", name, err)
		}
		g.Initializer[slices.Index(g.Initializer, t)] = nt
	}
	if err := setMeta(out, rep); err != nil {
		return nil, nil, err
	}
	return out, rep, nil
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
