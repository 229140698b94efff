package hf

import "unsafe"

// transposeTile16 writes the transpose of a tileRows × tileCols block of 16-bit elements at
// buf (rows tileCols elements apart) to tileCols rows at dst, stride bytes apart (SSE2, in
// transpose_amd64.s). It is the bf16/fp16 import's inner loop: a quarter of the scalar loop's
// instructions.
//
//go:noescape
func transposeTile16(dst unsafe.Pointer, stride uintptr, buf unsafe.Pointer)

// transposeTile32 is transposeTile16 for 32-bit elements (fp32 checkpoints, and bf16/fp16
// widened by --dtype fp32).
//
//go:noescape
func transposeTile32(dst unsafe.Pointer, stride uintptr, buf unsafe.Pointer)

// tileKernels says transposeTile16 and transposeTile32 exist on this architecture.
const tileKernels = true
