//go:build !amd64

package hf

import "unsafe"

func transposeTile16(dst unsafe.Pointer, stride uintptr, buf unsafe.Pointer) {
	panic("hf: no transposeTile16 on this architecture")
}

func transposeTile32(dst unsafe.Pointer, stride uintptr, buf unsafe.Pointer) {
	panic("hf: no transposeTile32 on this architecture")
}

const tileKernels = false
