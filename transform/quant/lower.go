package quant

import (
	"encoding/json"
	"fmt"
	"math"

	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/transform/layers"
	"google.golang.org/protobuf/proto"
)

// MetaKey is the metadata_props key of a lowered model (Lower): the quantization grid of every
// linear that was a MatMulNBits, so Raise can put the operator back.
const MetaKey = "shears.quant"

// Lowered records one lowered linear: its MatMul, the float weight W = dequant(B) [K, N], and
// the grid tensors kept beside it (Scales and Zeros, float32 [N, k_blocks]; a symmetric grid
// has the default zero point in Zeros too).
type Lowered struct {
	Node      string `json:"node"`
	Weight    string `json:"weight"`
	Scales    string `json:"scales"`
	Zeros     string `json:"zeros"`
	K         int    `json:"k"`
	N         int    `json:"n"`
	Bits      int    `json:"bits"`
	BlockSize int    `json:"block_size"`
	Symmetric bool   `json:"symmetric"`
	Bias      string `json:"bias,omitempty"` // MatMulNBits' bias input, now an Add after the MatMul
	// AccuracyLevel is the node's accuracy_level, written back by Raise.
	AccuracyLevel int `json:"accuracy_level,omitempty"`
}

// Config is the layer's grid configuration.
func (l Lowered) Config() Config {
	return Config{Bits: l.Bits, BlockSize: l.BlockSize, Symmetric: l.Symmetric}
}

// Lower returns a copy of m in which every MatMulNBits is a MatMul by its dequantized float32
// weight (the train form: MatMulNBits has no gradient rule, and QA-SparsePEFT trains on the
// dequantized base), with the grids kept as float32 initializers and recorded under MetaKey. m
// is not modified. Only float32 activations are supported.
func Lower(m *onnx.Model) (*onnx.Model, error) {
	out := &onnx.Model{Proto: proto.Clone(m.Proto).(*onnxpb.ModelProto), Dir: m.Dir, Path: m.Path}
	g := out.Graph()
	ix := onnx.NewIndex(g)
	types, err := onnx.InferShapes(m, nil)
	if err != nil {
		return nil, fmt.Errorf("lower %s: %w", m.Path, err)
	}
	var recs []Lowered
	var nodes []*onnxpb.NodeProto
	for _, n := range g.GetNode() {
		if n.GetOpType() != OpType || n.GetDomain() != Domain {
			nodes = append(nodes, n)
			continue
		}
		if et := types[n.GetInput()[0]].Elem; et != onnxpb.TensorProto_FLOAT {
			return nil, fmt.Errorf("lower %s: %s %s computes in %s; only float32 activations can be lowered for training", m.Path, OpType, n.GetName(), et)
		}
		l, _, err := ReadNode(m, n)
		if err != nil {
			return nil, fmt.Errorf("lower %s: %w", m.Path, err)
		}
		base := n.GetInput()[1]
		r := Lowered{Node: n.GetName(), Weight: ix.UniqueName(base + ".dequant"), Scales: ix.UniqueName(base + ".grid_scales"),
			Zeros: ix.UniqueName(base + ".grid_zeros"), K: l.K, N: l.N, Bits: l.Config.Bits, BlockSize: l.Config.BlockSize, Symmetric: l.Config.Symmetric}
		for _, a := range n.GetAttribute() {
			if a.GetName() == "accuracy_level" {
				r.AccuracyLevel = int(a.GetI())
			}
		}
		zf := make([]float32, len(l.Zeros))
		for i, z := range l.Zeros {
			zf[i] = float32(z)
		}
		kb := int64(l.KBlocks())
		g.Initializer = append(g.Initializer,
			onnx.Float32Tensor(r.Weight, []int64{int64(l.K), int64(l.N)}, l.Dequant()),
			onnx.Float32Tensor(r.Scales, []int64{int64(l.N), kb}, l.Scales),
			onnx.Float32Tensor(r.Zeros, []int64{int64(l.N), kb}, zf))
		y := n.GetOutput()[0]
		mm := &onnxpb.NodeProto{Name: proto.String(n.GetName()), OpType: proto.String("MatMul"),
			Input: []string{n.GetInput()[0], r.Weight}, Output: []string{y}}
		if len(n.GetInput()) > 5 && n.GetInput()[5] != "" {
			r.Bias = n.GetInput()[5]
			mid := ix.UniqueName(y + "_nobias")
			mm.Output = []string{mid}
			nodes = append(nodes, mm, &onnxpb.NodeProto{Name: proto.String(ix.UniqueName(n.GetName() + "/bias")), OpType: proto.String("Add"),
				Input: []string{mid, r.Bias}, Output: []string{y}})
		} else {
			nodes = append(nodes, mm)
		}
		recs = append(recs, r)
	}
	if len(recs) == 0 {
		return nil, fmt.Errorf("lower %s: no %s node", m.Path, OpType)
	}
	g.Node = nodes
	// Drop the packed tensors nothing reads any more.
	read := map[string]bool{}
	for _, n := range g.GetNode() {
		for _, in := range n.GetInput() {
			read[in] = true
		}
	}
	keep := g.Initializer[:0]
	for _, t := range g.GetInitializer() {
		if read[t.GetName()] || isGrid(recs, t.GetName()) {
			keep = append(keep, t)
		}
	}
	g.Initializer = keep
	b, err := json.Marshal(recs)
	if err != nil {
		return nil, err
	}
	setMetaProp(out.Proto, MetaKey, string(b))
	return out, nil
}

func isGrid(recs []Lowered, name string) bool {
	for _, r := range recs {
		if r.Scales == name || r.Zeros == name {
			return true
		}
	}
	return false
}

func setMetaProp(mp *onnxpb.ModelProto, key, value string) {
	for _, p := range mp.MetadataProps {
		if p.GetKey() == key {
			p.Value = proto.String(value)
			return
		}
	}
	mp.MetadataProps = append(mp.MetadataProps, &onnxpb.StringStringEntryProto{Key: proto.String(key), Value: proto.String(value)})
}

// ReadLowered returns the lowered linears recorded in m (nil when m was not lowered).
func ReadLowered(m *onnx.Model) ([]Lowered, error) {
	for _, p := range m.Proto.GetMetadataProps() {
		if p.GetKey() == MetaKey {
			var recs []Lowered
			if err := json.Unmarshal([]byte(p.GetValue()), &recs); err != nil {
				return nil, fmt.Errorf("%s: metadata %s: %w", m.Path, MetaKey, err)
			}
			return recs, nil
		}
	}
	return nil, nil
}

// Grid reads a lowered linear's grid from src (the model that holds its grid tensors) as a
// Layer whose codes are unset.
func (r Lowered) Grid(src *onnx.Model) (*Layer, error) {
	l, err := NewLayer(r.K, r.N, r.Config())
	if err != nil {
		return nil, err
	}
	st, zt := src.Initializer(r.Scales), src.Initializer(r.Zeros)
	if st == nil || zt == nil {
		return nil, fmt.Errorf("lowered linear %s: grid tensors %s, %s not found", r.Node, r.Scales, r.Zeros)
	}
	s, err := src.Float32s(st)
	if err != nil {
		return nil, err
	}
	z, err := src.Float32s(zt)
	if err != nil {
		return nil, err
	}
	if len(s) != len(l.Scales) || len(z) != len(l.Zeros) {
		return nil, fmt.Errorf("lowered linear %s: grid has %d scales and %d zero points, want %d", r.Node, len(s), len(z), len(l.Scales))
	}
	copy(l.Scales, s)
	for i, v := range z {
		l.Zeros[i] = uint8(v)
	}
	return l, nil
}

// KeepQuantized turns the named lowered linears of m back to their stored integers: the MatMul
// still reads a float weight, but it is dequantized in the graph from the packed tensors
// (dequantOp: standard operators over initializers, which onnxruntime folds at load and
// FoldKept replaces before a session opens, so a step costs nothing more) instead of a float32
// initializer, and the linear's grid tensors are removed. It is for the linears of a
// QA-SparsePEFT super-network that got no adapter: nothing else reads their weight or grid, so
// the file keeps the base's 4- or 8-bit bytes, onnxruntime is given no unused grid
// initializer, and no gradient flows into the weight. Raise puts them back as they were.
func KeepQuantized(m *onnx.Model, nodes []string) error {
	recs, err := ReadLowered(m)
	if err != nil {
		return err
	}
	byNode := map[string]Lowered{}
	for _, r := range recs {
		byNode[r.Node] = r
	}
	g := m.Graph()
	b := onnx.BuilderFor(m)
	for _, name := range nodes {
		r, ok := byNode[name]
		n := nodeByName(g, name)
		if !ok || n == nil || n.GetOpType() != "MatMul" || len(n.GetInput()) != 2 || n.GetInput()[1] != r.Weight {
			return fmt.Errorf("keep %s quantized: %s is not a linear Lower made", m.Path, name)
		}
		for i, t := range []string{r.Weight, r.Scales, r.Zeros} {
			if c := readers(g, t); c != max(0, 1-i) || m.Initializer(t) == nil {
				return fmt.Errorf("keep %s quantized: %s: tensor %s is read by %d nodes, want %d", m.Path, name, t, c, max(0, 1-i))
			}
		}
		w, err := m.Float32s(m.Initializer(r.Weight))
		if err != nil {
			return err
		}
		grid, err := r.Grid(m)
		if err != nil {
			return err
		}
		l, refit, err := Requantize(w, grid)
		if err != nil || refit != 0 {
			return fmt.Errorf("keep %s quantized: %s: the weight is not on its grid (%d blocks off, %v)", m.Path, name, refit, err)
		}
		t := Target{Linear: linearOf(n, r), K: r.K, N: r.N, ScaleType: onnxpb.TensorProto_FLOAT,
			B: r.Node + ".qweight", Scales: r.Node + ".scales"}
		if !r.Symmetric {
			t.Zeros = r.Node + ".qzeros"
		}
		p := &Plan{Config: r.Config(), AccuracyLevel: r.AccuracyLevel}
		inits, _ := p.tensors(t, l)
		var ins []string // the builder's names (suffixed when taken)
		for _, it := range inits {
			ins = append(ins, b.Initializer(it))
		}
		n.Input[1] = dequantOp(b, r.Node, r.K, r.N, r.Config(), ins)
		for _, t := range []string{r.Weight, r.Scales, r.Zeros} {
			removeDeadChain(g, t)
		}
	}
	if err := b.Err(); err != nil {
		return fmt.Errorf("keep %s quantized: %w", m.Path, err)
	}
	order, err := onnx.NewIndex(g).TopoOrder()
	if err != nil {
		return err
	}
	g.Node = order
	return nil
}

// Requantize puts w [K, N] on g's grid, block by block, each weight to its block's nearest
// code. A block whose values leave g's range by more than half a step (a merged weight past
// the block's extremes) gets its own grid instead (Refit; see refit.go), so every weight is
// within half a step of its dequantized value; refit counts those blocks. The base's zeros
// and anything else that rounds to the zero point dequantize to exactly 0 either way.
func Requantize(w []float32, g *Layer) (l *Layer, refit int, err error) {
	if len(w) != g.K*g.N {
		return nil, 0, fmt.Errorf("requantize: %d values, want %d×%d", len(w), g.K, g.N)
	}
	l, err = NewLayer(g.K, g.N, g.Config) // padding codes: the default zero point, as RTN's
	if err != nil {
		return nil, 0, err
	}
	bs := g.Config.BlockSize
	for j := 0; j < g.N; j++ {
		for b := 0; b < g.KBlocks(); b++ {
			gr := g.GridAt(j, b)
			if lo, hi := blockRange(w, g.K, g.N, j, b, bs); !gr.Fits(lo, hi, g.Config) {
				gr = Refit(lo, hi, g.Config)
				refit++
			}
			l.Set(j, b, gr)
			for i := b * bs; i < min(g.K, (b+1)*bs); i++ {
				l.SetCode(i, j, gr.Code(w[i*g.N+j], g.Config))
			}
		}
	}
	return l, refit, nil
}

// Raised is one linear Raise put back on its grid.
type Raised struct {
	Lowered
	// MaxSteps is max |w − dequant(code)| / scale over all weights (≤ 0.5: every block's
	// weights round to nearest on a grid that covers them); RefitBlocks of Blocks got a grid of
	// their own because w left the base's (Requantize), the largest by MaxScaleRatio × the
	// base's scale.
	MaxSteps      float64 `json:"max_steps"`
	RefitBlocks   int64   `json:"refit_blocks"`
	Blocks        int64   `json:"blocks"`
	MaxScaleRatio float64 `json:"max_scale_ratio,omitempty"`
	Weights       int64   `json:"weights"`
	// ZerosIn counts exact zeros of the float weight; ZerosKept is true when each of them
	// dequantizes to exactly 0.
	ZerosIn   int64 `json:"zeros_in"`
	ZerosKept bool  `json:"zeros_kept"`
}

// Raise is Lower's inverse on a model derived from a lowered one (a merged export): every
// recorded linear whose MatMul still reads a float weight becomes a MatMulNBits again, its
// weight (as it is in m now: the base's, or a merged one) put on the grid read from src. The
// grid tensors and the metadata are removed from m. It returns the raised linears.
func Raise(m, src *onnx.Model) ([]Raised, error) {
	recs, err := ReadLowered(src)
	if err != nil || recs == nil {
		return nil, err
	}
	g := m.Graph()
	var raised []Raised
	for _, r := range recs {
		n := nodeByName(g, r.Node)
		if n == nil || n.GetOpType() != "MatMul" || len(n.GetInput()) != 2 {
			return nil, fmt.Errorf("raise %s: linear %s is not the MatMul Lower made", m.Path, r.Node)
		}
		var w []float32
		var l, grid *Layer
		var refit int
		kept := false // a kept linear (KeepQuantized): its dequantization is removed once raised
		if dq := onnx.NewIndex(g).Producer[n.GetInput()[1]]; dq != nil && dq.GetName() == r.Node+dequantSuffix {
			if l, _, err = readDequant(m, r); err != nil {
				return nil, fmt.Errorf("raise %s: %w", m.Path, err)
			}
			grid, w, kept = l, l.Dequant(), true
		} else {
			wt := m.Initializer(n.GetInput()[1])
			if wt == nil {
				return nil, fmt.Errorf("raise %s: linear %s does not read a weight initializer", m.Path, r.Node)
			}
			if w, err = m.Float32s(wt); err != nil {
				return nil, err
			}
			if grid, err = r.Grid(src); err != nil {
				return nil, err
			}
			if l, refit, err = Requantize(w, grid); err != nil {
				return nil, fmt.Errorf("raise %s: %s: %w", m.Path, r.Node, err)
			}
		}
		ix := onnx.NewIndex(g)
		t := Target{Linear: linearOf(n, r), K: r.K, N: r.N, ScaleType: onnxpb.TensorProto_FLOAT,
			B: ix.UniqueName(r.Node + ".qweight"), Scales: ix.UniqueName(r.Node + ".scales")}
		if !r.Symmetric {
			t.Zeros = ix.UniqueName(r.Node + ".qzeros")
		}
		p := &Plan{Config: r.Config(), AccuracyLevel: r.AccuracyLevel}
		if err := p.ApplyTarget(m, t, l); err != nil {
			return nil, err
		}
		if kept {
			removeDequant(g, r.Node)
		}
		st := Raised{Lowered: r, ZerosKept: true, Weights: int64(len(w)), RefitBlocks: int64(refit), Blocks: int64(len(l.Scales))}
		for i, s := range l.Scales {
			if grid.Scales[i] != 0 && s != grid.Scales[i] {
				st.MaxScaleRatio = math.Max(st.MaxScaleRatio, float64(s)/float64(grid.Scales[i]))
			}
		}
		deq := l.Dequant()
		for i, v := range w {
			if v == 0 {
				st.ZerosIn++
				st.ZerosKept = st.ZerosKept && deq[i] == 0
			}
			if gr := l.GridAt(i%r.N, i/r.N/r.BlockSize); gr.Scale != 0 {
				st.MaxSteps = math.Max(st.MaxSteps, math.Abs(float64(v-deq[i]))/float64(gr.Scale))
			} else if v != 0 {
				st.MaxSteps = math.Inf(1) // cannot happen: a zero scale is refit unless the block is all zero
			}
		}
		raised = append(raised, st)
	}
	for _, r := range recs {
		for _, name := range []string{r.Scales, r.Zeros} {
			removeDeadChain(g, name)
		}
	}
	kept := m.Proto.MetadataProps[:0]
	for _, p := range m.Proto.GetMetadataProps() {
		if p.GetKey() != MetaKey {
			kept = append(kept, p)
		}
	}
	m.Proto.MetadataProps = kept
	return raised, nil
}

func linearOf(n *onnxpb.NodeProto, r Lowered) layers.Linear {
	return layers.Linear{Node: r.Node, Op: "MatMul", Weight: n.GetInput()[1], Input: n.GetInput()[0], Output: n.GetOutput()[0],
		In: int64(r.K), Out: int64(r.N), Block: -1}
}

// DequantReads replaces every remaining read of a raised linear's float weight (an unmerged
// export's sparse-adapter mask M = (W ≠ 0)) by the weight dequantized in the graph from the
// MatMulNBits tensors themselves (maskDequantOp: MatMulNBits(I_K), run on every forward), so
// no float copy of the base stays in the file. The float weights are then removed.
func DequantReads(m *onnx.Model, raised []Raised) error {
	g := m.Graph()
	b := onnx.BuilderFor(m)
	for _, r := range raised {
		var readers []*onnxpb.NodeProto
		for _, n := range g.GetNode() {
			for _, in := range n.GetInput() {
				if in == r.Weight {
					readers = append(readers, n)
				}
			}
		}
		if len(readers) == 0 {
			continue
		}
		q := nodeByName(g, r.Node)
		if q == nil || q.GetOpType() != OpType {
			return fmt.Errorf("dequantize reads of %s: node %s is not a %s", r.Weight, r.Node, OpType)
		}
		ins := q.GetInput()[1:]
		if len(ins) > 3 {
			ins = ins[:3] // no bias: the weight alone
		}
		deq := maskDequantOp(b, r.Node, r.K, ins, q.GetAttribute())
		for _, n := range readers {
			for i, in := range n.GetInput() {
				if in == r.Weight {
					n.Input[i] = deq
				}
			}
		}
		removeDeadChain(g, r.Weight)
	}
	if err := b.Err(); err != nil {
		return fmt.Errorf("dequantize reads: %w", err)
	}
	order, err := onnx.NewIndex(g).TopoOrder()
	if err != nil {
		return err
	}
	g.Node = order
	return nil
}
