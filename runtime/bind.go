package runtime

import (
	"fmt"
	"unsafe"

	ort "github.com/yalue/onnxruntime_go"
)

// Bound is a session with its tensors attached once, for loops that run the same shapes many
// times (a train step). onnxruntime reads the inputs' and writes the outputs' Go slices in place:
// change their contents between runs, never the slices themselves. A Bound is not safe for
// concurrent use; it is released by Close or by closing its Session.
type Bound struct {
	s      *Session
	closed bool

	in      []ort.Value
	inT     []*Tensor // the caller's tensors, to detect replaced slices and to rebuild scalars
	out     []ort.Value
	outT    []*Tensor // nil for outputs onnxruntime allocates on each run (then discarded)
	syncs   []func()  // copy rank-0 outputs back into the caller's tensors
	inData  []unsafe.Pointer
	outData []unsafe.Pointer
}

// Bind attaches inputs (every model input) and outputs (any subset of the model's outputs) to the
// session. Outputs not bound are still computed; fp16/bf16 and rank-0 ones among them are
// preallocated from their static shape.
func (s *Session) Bind(inputs map[string]*Tensor, outputs map[string]*Tensor) (b *Bound, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("runtime: model %s: bind on a closed session", s.name)
	}
	if err := s.checkInputs(inputs); err != nil {
		return nil, err
	}
	if err := s.checkOutputs(outputs); err != nil {
		return nil, err
	}
	b = &Bound{s: s,
		in: make([]ort.Value, len(s.inputs)), inT: make([]*Tensor, len(s.inputs)), inData: make([]unsafe.Pointer, len(s.inputs)),
		out: make([]ort.Value, len(s.outputs)), outT: make([]*Tensor, len(s.outputs)), outData: make([]unsafe.Pointer, len(s.outputs)),
	}
	defer func() {
		if err != nil {
			b.release()
		}
	}()
	for i, info := range s.inputs {
		t := inputs[info.Name]
		b.inT[i], b.inData[i] = t, dataPtr(t)
		if len(t.Shape) == 0 {
			continue // scalars are rebuilt on each run: onnxruntime_go scalars own their memory
		}
		if b.in[i], _, err = t.value(); err != nil {
			return nil, fmt.Errorf("runtime: model %s: input %q: %v", s.name, info.Name, err)
		}
	}
	for j, info := range s.outputs {
		t := outputs[info.Name]
		if t == nil {
			if t, err = s.prealloc(info); err != nil {
				return nil, err
			}
			if t == nil {
				continue
			}
		}
		v, sync, err := t.value()
		if err != nil {
			return nil, fmt.Errorf("runtime: model %s: output %q: %v", s.name, info.Name, err)
		}
		b.out[j], b.outT[j], b.outData[j] = v, t, dataPtr(t)
		if sync != nil {
			b.syncs = append(b.syncs, sync)
		}
	}
	s.bounds[b] = struct{}{}
	return b, nil
}

// Run runs the session on the bound tensors; on success the bound outputs hold the results.
func (b *Bound) Run() error {
	s := b.s
	s.mu.RLock()
	defer s.mu.RUnlock()
	if b.closed || s.closed {
		return fmt.Errorf("runtime: model %s: run on a closed binding", s.name)
	}
	in := make([]ort.Value, len(b.in))
	for i, t := range b.inT {
		if dataPtr(t) != b.inData[i] {
			return fmt.Errorf("runtime: model %s: input %q: its data slice was replaced after Bind; change its contents in place",
				s.name, s.inputs[i].Name)
		}
		in[i] = b.in[i]
		if in[i] == nil {
			v, _, err := t.value()
			if err != nil {
				return fmt.Errorf("runtime: model %s: input %q: %v", s.name, s.inputs[i].Name, err)
			}
			defer v.Destroy()
			in[i] = v
		}
	}
	out := make([]ort.Value, len(b.out))
	for j, t := range b.outT {
		if t != nil && dataPtr(t) != b.outData[j] {
			return fmt.Errorf("runtime: model %s: output %q: its data slice was replaced after Bind; change its contents in place",
				s.name, s.outputs[j].Name)
		}
		out[j] = b.out[j]
	}
	err := s.dyn.Run(in, out)
	for j, v := range out {
		if b.out[j] == nil && v != nil {
			v.Destroy()
		}
	}
	if err != nil {
		return fmt.Errorf("runtime: running %s: %s", s.name, oneLine(err.Error()))
	}
	for _, f := range b.syncs {
		f()
	}
	return nil
}

// Close releases the bound onnxruntime values; the caller's tensors stay valid. It is idempotent.
func (b *Bound) Close() error {
	s := b.s
	s.mu.Lock()
	defer s.mu.Unlock()
	b.release()
	if s.bounds != nil {
		delete(s.bounds, b)
	}
	return nil
}

// release destroys the values; the caller holds the session lock (or owns b exclusively).
func (b *Bound) release() {
	if b.closed {
		return
	}
	b.closed = true
	for _, v := range b.in {
		if v != nil {
			v.Destroy()
		}
	}
	for _, v := range b.out {
		if v != nil {
			v.Destroy()
		}
	}
	b.in, b.out = nil, nil
}

// dataPtr is the address of the tensor's data, to notice a slice replaced after Bind.
func dataPtr(t *Tensor) unsafe.Pointer {
	switch t.DType {
	case Float32:
		return unsafe.Pointer(unsafe.SliceData(t.F32))
	case Float64:
		return unsafe.Pointer(unsafe.SliceData(t.F64))
	case Int64:
		return unsafe.Pointer(unsafe.SliceData(t.I64))
	}
	return unsafe.Pointer(unsafe.SliceData(t.Raw))
}
