package onnx

import "github.com/shears-ml/shears/onnx/onnxpb"

// mapAhead maps the next external tensor a TransformInto will read while the current one is
// transformed: mapping a tensor populates its page table (MAP_POPULATE), kernel work that was
// 0.4 s on the critical path of a 1B import. One tensor ahead at most.
type mapAhead struct {
	t    *onnxpb.TensorProto // the tensor being mapped (nil: none)
	want int64
	done chan mapped
}

// mapped is one mapping's outcome, as mapExternal returns it.
type mapped struct {
	b     []byte
	unmap func()
	ok    bool
	err   error
}

// start begins mapping t (want bytes) on a goroutine, unless t is already under way.
func (a *mapAhead) start(m *Model, t *onnxpb.TensorProto, want int64) {
	if a.t == t {
		return
	}
	a.release()
	a.t, a.want, a.done = t, want, make(chan mapped, 1)
	done := a.done
	go func() {
		var r mapped
		r.b, r.unmap, r.ok, r.err = m.mapExternal(t, want)
		done <- r
	}()
}

// take returns the mapping of t if it was started, and whether it was.
func (a *mapAhead) take(t *onnxpb.TensorProto, want int64) (mapped, bool) {
	if a.t != t || a.want != want {
		return mapped{}, false
	}
	r := <-a.done
	a.t, a.done = nil, nil
	return r, true
}

// release waits for a mapping nobody took and unmaps it.
func (a *mapAhead) release() {
	if a.t == nil {
		return
	}
	if r := <-a.done; r.ok {
		r.unmap()
	}
	a.t, a.done = nil, nil
}
