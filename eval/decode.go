package eval

import (
	"fmt"
	"slices"

	"github.com/shears-ml/shears/lm"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/runtime"
)

// UseCacheBranch is the bool input of optimum's merged decoder that picks the branch: false runs
// the no-past graph (the prompt), true the with-past one (every later step).
// lm's interface feeds it (false with an empty past).
const UseCacheBranch = lm.UseCacheBranch

// decoder runs a causal LM over a batch of rows that grow together, one step at a time: the
// incremental form generation and beam search need.
//
// With a KV cache (the model has past inputs and the decoder was not asked to recompute) the
// first step runs the prompt once on an empty past, and each later step runs only the new
// tokens, the previous run's present.* outputs fed back as past_key_values.*; beam search
// reorders the cache rows when beams are chosen (reorder). Without one, every step reruns each
// row's whole sequence (with an empty past where the model has past inputs), O(length²) — the
// reference computation the cached path is tested against.
type decoder struct {
	m      Model
	it     *lm.Interface
	cached bool
	seqs   [][]int // every row's tokens so far (prompt included)
	// past holds the cache of every row after the last step, keyed by past input name:
	// [rows, kv_heads, len(seqs[0]), head_dim] each.
	past   map[string]*runtime.Tensor
	fixed  map[string]*runtime.Tensor // inputs outside the interface the decoder feeds itself
	shaped func(map[string]*runtime.Tensor, []string, map[string][]int64) (map[string]*runtime.Tensor, error)
}

// shapedModel is a Model that can be told its outputs' shapes (runtime.Session): needed for a
// float16 cache, whose presents onnxruntime_go cannot allocate itself.
type shapedModel interface {
	RunWithShapes(inputs map[string]*runtime.Tensor, outputs []string, shapes map[string][]int64) (map[string]*runtime.Tensor, error)
}

// newDecoder reads m's interface. recompute forces the uncached path on a model with a cache.
func newDecoder(m Model, recompute bool) (*decoder, error) {
	it, err := lm.FromIO(runtime.LMIO(m.Inputs()), nil)
	if err != nil {
		return nil, err
	}
	d := &decoder{m: m, it: it, cached: it.HasPast() && !recompute, fixed: map[string]*runtime.Tensor{}}
	if len(it.Other) > 0 {
		return nil, fmt.Errorf("the model input %q is not supported (expected input_ids, attention_mask, position_ids, past_key_values.*, use_cache_branch)", it.Other[0])
	}
	if d.cached && it.PastType != onnxpb.TensorProto_FLOAT {
		sm, ok := m.(shapedModel)
		if !ok {
			return nil, fmt.Errorf("a %v KV cache needs a session that takes output shapes", it.PastType)
		}
		d.shaped = sm.RunWithShapes
	}
	return d, nil
}

// length is the rows' current length (prompt + generated).
func (d *decoder) length() int {
	if len(d.seqs) == 0 {
		return 0
	}
	return len(d.seqs[0])
}

// step appends tokens[r] to row r (the first call gives the prompts, all of one length; later
// calls one token per row, say) and returns the logits at each row's last position, row after
// row, and the vocabulary size.
func (d *decoder) step(tokens [][]int) ([]float32, int, error) {
	if len(tokens) == 0 {
		return nil, 0, fmt.Errorf("decode: no rows")
	}
	if d.seqs != nil && len(tokens) != len(d.seqs) {
		return nil, 0, fmt.Errorf("decode: %d rows of new tokens for %d rows", len(tokens), len(d.seqs))
	}
	n := len(tokens[0])
	for _, r := range tokens {
		if len(r) != n || n == 0 {
			return nil, 0, fmt.Errorf("decode: rows of new tokens must be non-empty and of one length")
		}
	}
	if d.seqs == nil {
		d.seqs = make([][]int, len(tokens))
	}
	past := d.length()
	for i := range d.seqs {
		d.seqs[i] = append(d.seqs[i], tokens[i]...)
	}
	batch := lm.Batch{IDs: tokens}
	if !d.cached {
		batch.IDs, past = d.seqs, 0
	} else if past > 0 {
		// Every row is all real tokens: generation rows grow together, unpadded.
		ones := make([]int64, past)
		for i := range ones {
			ones[i] = 1
		}
		batch.PastMask = make([][]int64, len(tokens))
		for i := range batch.PastMask {
			batch.PastMask[i] = ones
		}
	}
	lf, err := d.it.Feeds(batch)
	if err != nil {
		return nil, 0, err
	}
	feeds := make(map[string]*runtime.Tensor, len(lf)+len(d.past)+1)
	for name, t := range lf {
		if feeds[name], err = runtime.LMTensor(t); err != nil {
			return nil, 0, fmt.Errorf("decode: input %q: %w", name, err)
		}
	}
	if past > 0 {
		for name, t := range d.past {
			feeds[name] = t
		}
	}
	outs := []string{lm.Logits}
	var shapes map[string][]int64
	if d.cached {
		for i := 0; i < d.it.Layers; i++ {
			for _, k := range []lm.Kind{lm.Key, lm.Value} {
				outs = append(outs, lm.Present(i, k))
			}
		}
		if d.shaped != nil {
			shapes = map[string][]int64{}
			for _, o := range outs[1:] {
				shapes[o] = []int64{int64(len(tokens)), d.it.KVHeads, int64(past + n), d.it.HeadDim}
			}
		}
	}
	var res map[string]*runtime.Tensor
	if shapes != nil {
		res, err = d.shaped(feeds, outs, shapes)
	} else {
		res, err = d.m.Run(feeds, outs)
	}
	if err != nil {
		return nil, 0, err
	}
	if d.cached {
		d.past = make(map[string]*runtime.Tensor, 2*d.it.Layers)
		for i := 0; i < d.it.Layers; i++ {
			for _, k := range []lm.Kind{lm.Key, lm.Value} {
				p := res[lm.Present(i, k)]
				if p == nil || len(p.Shape) != 4 || p.Shape[0] != int64(len(tokens)) || p.Shape[2] != int64(past+n) {
					return nil, 0, fmt.Errorf("decode: output %q is %v, want [%d, kv_heads, %d, head_dim]", lm.Present(i, k), shapeOf(p), len(tokens), past+n)
				}
				d.past[lm.Past(i, k)] = p
			}
		}
	}
	l := res[lm.Logits]
	b, t := len(tokens), len(batch.IDs[0])
	if l == nil || len(l.Shape) != 3 || l.Shape[0] != int64(b) || l.Shape[1] != int64(t) || l.DType != runtime.Float32 {
		return nil, 0, fmt.Errorf("decode: logits %v, want float32 [%d, %d, vocab]", shapeOf(l), b, t)
	}
	v := int(l.Shape[2])
	out := make([]float32, 0, b*v)
	for r := 0; r < b; r++ {
		out = append(out, l.F32[(r*t+t-1)*v:(r*t+t)*v]...)
	}
	return out, v, nil
}

// reorder makes row r a copy of the old row src[r] (beam search keeping, dropping and
// duplicating beams), the cache rows gathered along the batch axis with the sequences.
func (d *decoder) reorder(src []int) error {
	same := len(src) == len(d.seqs)
	for i, s := range src {
		if s < 0 || s >= len(d.seqs) {
			return fmt.Errorf("decode: reorder: row %d of %d", s, len(d.seqs))
		}
		same = same && s == i
	}
	if same {
		return nil
	}
	seqs := make([][]int, len(src))
	for i, s := range src {
		seqs[i] = slices.Clone(d.seqs[s])
	}
	d.seqs = seqs
	for name, t := range d.past {
		g, err := gatherRows(t, src)
		if err != nil {
			return fmt.Errorf("decode: reorder %s: %w", name, err)
		}
		d.past[name] = g
	}
	return nil
}

// gatherRows returns t's rows (axis 0) in the order src.
func gatherRows(t *runtime.Tensor, src []int) (*runtime.Tensor, error) {
	shape := slices.Clone(t.Shape)
	rows := int(shape[0])
	shape[0] = int64(len(src))
	switch {
	case t.DType == runtime.Float32:
		n := len(t.F32) / max(rows, 1)
		out := make([]float32, 0, n*len(src))
		for _, s := range src {
			out = append(out, t.F32[s*n:(s+1)*n]...)
		}
		return runtime.F32(shape, out), nil
	case t.Raw != nil || t.DType.Size() > 0 && t.F64 == nil && t.I64 == nil:
		n := len(t.Raw) / max(rows, 1)
		out := make([]byte, 0, n*len(src))
		for _, s := range src {
			out = append(out, t.Raw[s*n:(s+1)*n]...)
		}
		return runtime.RawTensor(t.DType, shape, out), nil
	}
	return nil, fmt.Errorf("cache of type %s", t.DType)
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}

func shapeOf(t *runtime.Tensor) any {
	if t == nil {
		return "missing"
	}
	return fmt.Sprintf("%s %v", t.DType, t.Shape)
}

// Caching says how Generate, BeamSearch and GenItem will run m: "kv cache" when it has past
// inputs (and noCache is false), else "recompute" (the whole prefix every step).
func Caching(m Model, noCache bool) (string, error) {
	d, err := newDecoder(m, noCache)
	if err != nil {
		return "", err
	}
	if d.cached {
		return "kv cache", nil
	}
	return "recompute", nil
}
