package eval

import (
	"fmt"
	"slices"

	"github.com/shears-ml/shears/lm"
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
// tokens, the previous run's present.* outputs fed back as past_key_values.* (kvCache keeps them
// in buffers onnxruntime reads and writes in place); beam search reorders the cache rows when
// beams are chosen (reorder). Without one, every step reruns each row's whole sequence (with an
// empty past where the model has past inputs), O(length²) — the reference computation the cached
// path is tested against.
type decoder struct {
	m      Model
	it     *lm.Interface
	cached bool
	seqs   [][]int  // every row's tokens so far (prompt included)
	kv     *kvCache // the cache, or where a recomputing run's presents go; nil without past inputs
	// logits is the buffer later steps' logits are written into, once the first has told the
	// vocabulary size (vocab).
	logits *runtime.Tensor
	vocab  int
}

// newDecoder reads m's interface. recompute forces the uncached path on a model with a cache.
func newDecoder(m Model, recompute bool) (*decoder, error) {
	it, err := lm.FromIO(runtime.LMIO(m.Inputs()), nil)
	if err != nil {
		return nil, err
	}
	d := &decoder{m: m, it: it, cached: it.HasPast() && !recompute}
	if len(it.Other) > 0 {
		return nil, fmt.Errorf("the model input %q is not supported (expected input_ids, attention_mask, position_ids, past_key_values.*, use_cache_branch)", it.Other[0])
	}
	if it.HasPast() {
		d.kv = newKVCache(it)
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
// row, and the vocabulary size. The logits are valid until the next step.
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
	feeds := make(map[string]*runtime.Tensor, len(lf)+2*d.it.Layers)
	for name, t := range lf {
		if feeds[name], err = runtime.LMTensor(t); err != nil {
			return nil, 0, fmt.Errorf("decode: input %q: %w", name, err)
		}
	}
	b, t := len(tokens), len(batch.IDs[0])
	into := map[string]*runtime.Tensor{}
	if d.kv != nil {
		if d.cached {
			if err := d.kv.feeds(feeds); err != nil {
				return nil, 0, fmt.Errorf("decode: %w", err)
			}
		}
		// Presents are computed on every run; a recomputing decoder only never feeds them back.
		if err := d.kv.outputs(into, b, past+t); err != nil {
			return nil, 0, fmt.Errorf("decode: %w", err)
		}
	}
	if d.vocab > 0 {
		if into[lm.Logits], err = d.logitsView(b, t); err != nil {
			return nil, 0, fmt.Errorf("decode: logits: %w", err)
		}
	}
	res, err := d.m.RunInto(feeds, []string{lm.Logits}, into)
	if err != nil {
		return nil, 0, err
	}
	if d.cached {
		d.kv.swap(b, past+t)
	}
	l := res[lm.Logits]
	if l == nil || len(l.Shape) != 3 || l.Shape[0] != int64(b) || l.Shape[1] != int64(t) || l.DType != runtime.Float32 {
		return nil, 0, fmt.Errorf("decode: logits %v, want float32 [%d, %d, vocab]", shapeOf(l), b, t)
	}
	v := int(l.Shape[2])
	if d.vocab == 0 {
		d.vocab, d.logits = v, l
	}
	// Each row's last position, moved to the front in place (row r's lies at or after r·v).
	for r := 0; r < b && t > 1; r++ {
		copy(l.F32[r*v:(r+1)*v], l.F32[(r*t+t-1)*v:(r*t+t)*v])
	}
	return l.F32[:b*v], v, nil
}

// logitsView is the logits buffer shaped [rows, t, vocab], grown when needed.
func (d *decoder) logitsView(rows, t int) (*runtime.Tensor, error) {
	shape := []int64{int64(rows), int64(t), int64(d.vocab)}
	if v, err := d.logits.View(shape); err == nil {
		return v, nil
	}
	buf, err := runtime.Zeros(runtime.Float32, []int64{max(int64(rows*t*d.vocab), 2*int64(cap(d.logits.F32)))})
	if err != nil {
		return nil, err
	}
	d.logits = buf
	return buf.View(shape)
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
	if d.cached {
		if err := d.kv.reorder(src); err != nil {
			return fmt.Errorf("decode: reorder: %w", err)
		}
	}
	return nil
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
