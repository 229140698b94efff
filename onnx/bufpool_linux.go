package onnx

import (
	"os"
	"syscall"
)

// mmapMin is the smallest buffer mapped on its own rather than taken from the Go heap.
const mmapMin = 1 << 20

// allocIO maps size bytes of anonymous memory outside the Go heap (page-aligned, so fit for
// direct I/O), unmapped as soon as the pool drops it rather than when the garbage collector and
// the scavenger get to it: a 1B import's peak RSS is then its buffers and little else. Small
// buffers, and any the kernel will not map, come from the Go heap. (Huge pages were tried: a
// transpose gets ~15% faster with fewer TLB misses, but on a VM that returns free memory to its
// host, faulting in fresh 2 MB pages costs more than that.)
func allocIO(size int) ([]byte, func()) {
	if size < mmapMin {
		return heapIO(size)
	}
	m, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return heapIO(size)
	}
	return m[:size:size], func() { syscall.Munmap(m) }
}

// openDirect opens path for writing with O_DIRECT: writes from aligned buffers go from user
// memory to the disk without being copied into the page cache. nil where the file system
// refuses it (tmpfs on older kernels).
func openDirect(path string) *os.File {
	f, err := os.OpenFile(path, os.O_WRONLY|syscall.O_DIRECT, 0)
	if err != nil {
		return nil
	}
	return f
}

// mapFile maps n bytes of f from off read-only (MAP_POPULATE: the page cache's pages are put
// in the page table in one call, not faulted one by one). Reading a tensor this way skips the
// copy a read makes (a fifth of a 1B import's CPU). The file must not shrink while mapped.
func mapFile(f *os.File, off, n int64) ([]byte, func(), bool) {
	start := off &^ (ioAlign - 1)
	m, err := syscall.Mmap(int(f.Fd()), start, int(off-start+n), syscall.PROT_READ, syscall.MAP_SHARED|syscall.MAP_POPULATE)
	if err != nil {
		return nil, nil, false
	}
	return m[off-start:], func() { syscall.Munmap(m) }, true
}
