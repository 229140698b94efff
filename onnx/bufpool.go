package onnx

import (
	"sync"
	"unsafe"
)

// bufPool lends the large buffers a Save streams weights through: the bytes read from an
// external file, a TransformInto's output, and what the data file's writer is still writing.
// A model's tensors come in a few sizes, so after the first layer every tensor reuses a buffer
// that is already mapped instead of faulting in (and zeroing) fresh pages. Buffers are
// ioAlign-aligned so the data file's writer can hand them to the disk without a page-cache
// copy (direct I/O). The pool keeps at most as many buffers as were in use at once.
type bufPool struct {
	mu   sync.Mutex
	free []poolBuf
	all  []poolBuf // every live buffer, released by close
}

// poolBuf is one buffer: its memory (cap ioAlign-aligned) and how to give it back.
type poolBuf struct {
	b    []byte // full capacity, aligned
	free func()
}

// ioAlign is the alignment of pooled buffers and of direct writes (offset, length, address).
const ioAlign = 4096

// get returns an aligned buffer of length n whose capacity is a multiple of ioAlign. Its
// contents are whatever the previous user left.
func (p *bufPool) get(n int) []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	best, smaller := -1, -1
	for i, f := range p.free {
		c := cap(f.b)
		if c >= n && (best < 0 || c < cap(p.free[best].b)) {
			best = i
		}
		if c < n && (smaller < 0 || c > cap(p.free[smaller].b)) {
			smaller = i
		}
	}
	if best >= 0 {
		b := p.free[best].b
		p.free = append(p.free[:best], p.free[best+1:]...)
		return b[:n]
	}
	if smaller >= 0 {
		// A buffer too small for this tensor is dropped as the bigger one is made, so the pool
		// never holds more buffers than were in use at once.
		p.drop(p.free[smaller].b)
		p.free = append(p.free[:smaller], p.free[smaller+1:]...)
	}
	size := (max(n, 1) + ioAlign - 1) &^ (ioAlign - 1)
	b, free := allocIO(size)
	p.all = append(p.all, poolBuf{b: b[:size:size], free: free})
	return b[:n]
}

// put gives back a buffer from get.
func (p *bufPool) put(b []byte) {
	if b == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, a := range p.all {
		if unsafe.SliceData(a.b) == unsafe.SliceData(b) {
			p.free = append(p.free, a)
			return
		}
	}
}

// drop releases a buffer's memory (p.mu held).
func (p *bufPool) drop(b []byte) {
	for i, a := range p.all {
		if unsafe.SliceData(a.b) == unsafe.SliceData(b) {
			a.free()
			p.all = append(p.all[:i], p.all[i+1:]...)
			return
		}
	}
}

// close releases every buffer; none may be used afterwards.
func (p *bufPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, a := range p.all {
		a.free()
	}
	p.all, p.free = nil, nil
}

// aligned reports whether b starts at an ioAlign boundary.
func aligned(b []byte) bool {
	return len(b) > 0 && uintptr(unsafe.Pointer(unsafe.SliceData(b)))%ioAlign == 0
}

// heapIO is allocIO from the Go heap: an over-allocated slice cut to an aligned start.
func heapIO(size int) ([]byte, func()) {
	b := make([]byte, size+ioAlign)
	off := (ioAlign - int(uintptr(unsafe.Pointer(unsafe.SliceData(b)))%ioAlign)) % ioAlign
	return b[off : off+size : off+size], func() {}
}
