package eval

import (
	"fmt"

	"github.com/shears-ml/shears/lm"
	"github.com/shears-ml/shears/runtime"
)

// kvCache is a decoder's KV cache in Go memory that onnxruntime reads and writes in place.
// Each layer's key and value have two flat buffers that take turns: a step feeds
// past_key_values.* as a view of the buffer holding the cache ([rows, kv_heads, length,
// head_dim], dense) and has onnxruntime write present.* straight into the other one, which then
// holds the cache. So a step allocates nothing and copies nothing of the cache on the Go side
// (onnxruntime_go would otherwise copy every present out of onnxruntime's memory into a new Go
// slice); the graph's own concatenation of past and new positions is the only copy left. A
// buffer is allocated with room to spare and grows, doubling, only when the cache outgrows it.
type kvCache struct {
	dtype            runtime.DType
	kvHeads, headDim int64
	rows, length     int // the cache's shape: rows × length positions
	layers           []kvBuffers
	allocs           int // buffers allocated so far (tests check they are reused)
}

// kvBuffers are one past input's two buffers; buf[cur] holds the cache.
type kvBuffers struct {
	past, present string
	buf           [2]*runtime.Tensor
	cur           int
}

func newKVCache(it *lm.Interface) *kvCache {
	c := &kvCache{dtype: runtime.DType(it.PastType), kvHeads: it.KVHeads, headDim: it.HeadDim}
	for i := 0; i < it.Layers; i++ {
		for _, k := range []lm.Kind{lm.Key, lm.Value} {
			c.layers = append(c.layers, kvBuffers{past: lm.Past(i, k), present: lm.Present(i, k)})
		}
	}
	return c
}

func (c *kvCache) shape(rows, length int) []int64 {
	return []int64{int64(rows), c.kvHeads, int64(length), c.headDim}
}

// feeds sets the past inputs to the cache (nothing when it is empty: lm's feeds hold the empty
// past then).
func (c *kvCache) feeds(feeds map[string]*runtime.Tensor) error {
	if c.length == 0 {
		return nil
	}
	for i := range c.layers {
		l := &c.layers[i]
		v, err := l.buf[l.cur].View(c.shape(c.rows, c.length))
		if err != nil {
			return fmt.Errorf("kv cache %s: %w", l.past, err)
		}
		feeds[l.past] = v
	}
	return nil
}

// outputs points the present outputs of a run over rows × length positions at the spare
// buffers, growing them when needed.
func (c *kvCache) outputs(into map[string]*runtime.Tensor, rows, length int) error {
	for i := range c.layers {
		l := &c.layers[i]
		v, err := c.spare(l, rows, length)
		if err != nil {
			return fmt.Errorf("kv cache %s: %w", l.present, err)
		}
		into[l.present] = v
	}
	return nil
}

// spare is a view of shape [rows, kv_heads, length, head_dim] of l's spare buffer.
func (c *kvCache) spare(l *kvBuffers, rows, length int) (*runtime.Tensor, error) {
	shape := c.shape(rows, length)
	s := &l.buf[1-l.cur]
	if *s != nil {
		if v, err := (*s).View(shape); err == nil {
			return v, nil
		}
	}
	// Twice what is needed: a cache grows a row at a time, so reallocations stay O(log length).
	n := 2 * int64(rows) * c.kvHeads * int64(length) * c.headDim
	if *s != nil {
		n = max(n, 2*capacity(*s))
	}
	b, err := runtime.Zeros(c.dtype, []int64{n})
	if err != nil {
		return nil, err
	}
	*s = b
	c.allocs++
	return b.View(shape)
}

// capacity is how many elements t's data slice can hold.
func capacity(t *runtime.Tensor) int64 {
	switch t.DType {
	case runtime.Float32:
		return int64(cap(t.F32))
	case runtime.Float64:
		return int64(cap(t.F64))
	case runtime.Int64:
		return int64(cap(t.I64))
	}
	return int64(cap(t.Raw) / t.DType.Size())
}

// swap makes the spare buffers, which a run just filled with rows × length positions, the cache.
func (c *kvCache) swap(rows, length int) {
	for i := range c.layers {
		c.layers[i].cur = 1 - c.layers[i].cur
	}
	c.rows, c.length = rows, length
}

// reorder makes cache row r a copy of the old row src[r], gathered into the spare buffers.
func (c *kvCache) reorder(src []int) error {
	if c.length == 0 {
		c.rows = len(src)
		return nil
	}
	row := int(c.kvHeads) * c.length * int(c.headDim) // elements per row
	for i := range c.layers {
		l := &c.layers[i]
		from, err := l.buf[l.cur].View(c.shape(c.rows, c.length))
		if err != nil {
			return fmt.Errorf("kv cache %s: %w", l.past, err)
		}
		to, err := c.spare(l, len(src), c.length)
		if err != nil {
			return fmt.Errorf("kv cache %s: %w", l.past, err)
		}
		if err := gatherRows(to, from, src, row); err != nil {
			return fmt.Errorf("kv cache %s: %w", l.past, err)
		}
	}
	c.swap(len(src), c.length)
	return nil
}

// gatherRows copies from's rows (row elements each) into to in the order src.
func gatherRows(to, from *runtime.Tensor, src []int, row int) error {
	switch {
	case from.DType == runtime.Float32:
		for r, s := range src {
			copy(to.F32[r*row:(r+1)*row], from.F32[s*row:(s+1)*row])
		}
	case from.DType == runtime.Float64:
		for r, s := range src {
			copy(to.F64[r*row:(r+1)*row], from.F64[s*row:(s+1)*row])
		}
	case from.DType != runtime.Int64 && from.DType.Size() > 0:
		row *= from.DType.Size()
		for r, s := range src {
			copy(to.Raw[r*row:(r+1)*row], from.Raw[s*row:(s+1)*row])
		}
	default:
		return fmt.Errorf("a cache of type %s", from.DType)
	}
	return nil
}
