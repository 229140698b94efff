package onnx

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"unsafe"
)

// FaultError is a memory fault caught by CatchFault: a read or write of a file mapping whose
// file shrank (or whose disk failed) after it was mapped. Without it the process dies of
// SIGBUS.
type FaultError struct {
	Addr uintptr // the faulting address
}

func (e *FaultError) Error() string {
	return fmt.Sprintf("memory fault at %#x (a mapped file was truncated or its disk failed)", e.Addr)
}

// CatchFault runs f with the runtime's panic-on-fault set and turns a memory fault in f into a
// *FaultError. The setting is per goroutine: every goroutine that touches a file mapping must
// run its work through CatchFault (and pass the error on), or a fault there still kills the
// process. Other panics go on as they were.
func CatchFault(f func()) (err error) {
	old := debug.SetPanicOnFault(true)
	defer func() {
		debug.SetPanicOnFault(old)
		if r := recover(); r != nil {
			_, isRuntime := r.(runtime.Error)
			fa, hasAddr := r.(interface{ Addr() uintptr })
			if !isRuntime || !hasAddr {
				panic(r)
			}
			err = &FaultError{Addr: fa.Addr()}
		}
	}()
	f()
	return nil
}

// within reports whether addr lies in b's bytes.
func within(addr uintptr, b []byte) bool {
	if len(b) == 0 {
		return false
	}
	p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	return addr >= p && addr < p+uintptr(len(b))
}
