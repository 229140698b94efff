//go:build !linux

package onnx

import "os"

// allocIO is the Go heap's aligned slice where huge pages are not asked for.
func allocIO(size int) ([]byte, func()) { return heapIO(size) }

// openDirect is nil: direct I/O is only used on Linux.
func openDirect(string) *os.File { return nil }

// mapFile is not available: tensors are read.
func mapFile(*os.File, int64, int64) ([]byte, func(), bool) { return nil, nil, false }
