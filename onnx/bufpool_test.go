package onnx

import (
	"testing"
	"unsafe"
)

// The pool hands out aligned buffers, reuses a freed one that fits, and drops a smaller free
// one when it must make a bigger one, so it holds no more buffers than were in use at once.
func TestBufPoolReusesAndBounds(t *testing.T) {
	var p bufPool
	defer p.close()
	a := p.get(3 << 20) // mapped
	b := p.get(5000)    // from the heap
	for _, x := range [][]byte{a, b} {
		if !aligned(x) || cap(x)%ioAlign != 0 {
			t.Fatalf("buffer of %d bytes at %p, capacity %d: not aligned", len(x), unsafe.SliceData(x), cap(x))
		}
	}
	a[len(a)-1], b[len(b)-1] = 1, 2
	p.put(a)
	p.put(b)
	if c := p.get(4000); unsafe.SliceData(c) != unsafe.SliceData(b) || len(c) != 4000 {
		t.Fatalf("get(4000) did not reuse the 5000-byte buffer (the smallest that fits)")
	}
	if d := p.get(2 << 20); unsafe.SliceData(d) != unsafe.SliceData(a) {
		t.Fatalf("get(2 MiB) did not reuse the 3 MiB buffer")
	}
	p.put(a)
	p.put(b)
	e := p.get(8 << 20) // neither fits: the 3 MiB one is dropped for it
	if len(p.all) != 2 || len(p.free) != 1 || cap(e) < 8<<20 {
		t.Fatalf("after a bigger get: %d buffers, %d free", len(p.all), len(p.free))
	}
}
