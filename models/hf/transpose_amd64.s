#include "textflag.h"

// func transposeTile16(dst unsafe.Pointer, stride uintptr, buf unsafe.Pointer)
//
// Writes the transpose of buf, a 32 × 128 block of 16-bit elements (rows 256 bytes apart), as
// 128 rows of 32 elements at dst, stride bytes apart: 8 × 8 sub-blocks, each loaded as 8 SSE2
// registers, transposed in three rounds of interleaves (words, then pairs, then quads) and
// stored as 8 rows of 16 bytes. Each destination row gets its 64 bytes from 4 consecutive
// sub-blocks, so it is written as a whole cache line.
TEXT ·transposeTile16(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ stride+8(FP), DX
	MOVQ buf+16(FP), SI
	LEAQ (DX)(DX*2), R8     // 3 × stride
	LEAQ (DX)(DX*4), R9     // 5 × stride
	LEAQ (R8)(R8*1), R10    // 6 × stride
	LEAQ (DX*8), R11        // 8 × stride
	MOVQ R11, R12
	SUBQ DX, R12            // 7 × stride
	MOVQ $16, CX            // column blocks of 8

cols:
	MOVQ SI, AX
	MOVQ DI, BX
	MOVQ $4, R13            // row blocks of 8

rows:
	MOVOU 0(AX), X0
	MOVOU 256(AX), X1
	MOVOU 512(AX), X2
	MOVOU 768(AX), X3
	MOVOU 1024(AX), X4
	MOVOU 1280(AX), X5
	MOVOU 1536(AX), X6
	MOVOU 1792(AX), X7

	// words: X0, X8 = rows 0,1 interleaved (low, high halves); X2, X9 rows 2,3; X4, X10 rows 4,5; X6, X11 rows 6,7
	MOVO X0, X8
	PUNPCKLWL X1, X0
	PUNPCKHWL X1, X8
	MOVO X2, X9
	PUNPCKLWL X3, X2
	PUNPCKHWL X3, X9
	MOVO X4, X10
	PUNPCKLWL X5, X4
	PUNPCKHWL X5, X10
	MOVO X6, X11
	PUNPCKLWL X7, X6
	PUNPCKHWL X7, X11

	// pairs: X0 columns 0,1 of rows 0-3; X1 columns 2,3; X8 4,5; X3 6,7; X4, X5, X10, X7 the same of rows 4-7
	MOVO X0, X1
	PUNPCKLLQ X2, X0
	PUNPCKHLQ X2, X1
	MOVO X8, X3
	PUNPCKLLQ X9, X8
	PUNPCKHLQ X9, X3
	MOVO X4, X5
	PUNPCKLLQ X6, X4
	PUNPCKHLQ X6, X5
	MOVO X10, X7
	PUNPCKLLQ X11, X10
	PUNPCKHLQ X11, X7

	// quads: columns 0-7 of rows 0-7 in X0, X2, X1, X6, X8, X9, X3, X11
	MOVO X0, X2
	PUNPCKLQDQ X4, X0
	PUNPCKHQDQ X4, X2
	MOVO X1, X6
	PUNPCKLQDQ X5, X1
	PUNPCKHQDQ X5, X6
	MOVO X8, X9
	PUNPCKLQDQ X10, X8
	PUNPCKHQDQ X10, X9
	MOVO X3, X11
	PUNPCKLQDQ X7, X3
	PUNPCKHQDQ X7, X11

	MOVOU X0, (BX)
	MOVOU X2, (BX)(DX*1)
	MOVOU X1, (BX)(DX*2)
	MOVOU X6, (BX)(R8*1)
	MOVOU X8, (BX)(DX*4)
	MOVOU X9, (BX)(R9*1)
	MOVOU X3, (BX)(R10*1)
	MOVOU X11, (BX)(R12*1)

	ADDQ $2048, AX          // 8 rows of buf down
	ADDQ $16, BX            // 8 elements along the destination rows
	DECQ R13
	JNZ rows

	ADDQ $16, SI            // 8 columns of buf right
	ADDQ R11, DI            // 8 destination rows down
	DECQ CX
	JNZ cols
	RET

// func transposeTile32(dst unsafe.Pointer, stride uintptr, buf unsafe.Pointer)
//
// transposeTile16 for 32-bit elements: buf is a 32 × 128 block (rows 512 bytes apart), taken as
// 8 × 4 sub-blocks, each two 4 × 4 transposes in two rounds of interleaves (pairs, then quads);
// each destination row gets 32 bytes per sub-block, 128 (two cache lines) per block.
TEXT ·transposeTile32(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ stride+8(FP), DX
	MOVQ buf+16(FP), SI
	LEAQ (DX)(DX*2), R8     // 3 × stride
	LEAQ (DX*4), R9         // 4 × stride
	MOVQ $32, CX            // column blocks of 4

cols32:
	MOVQ SI, AX
	MOVQ DI, BX
	MOVQ $4, R13            // row blocks of 8

rows32:
	MOVOU 0(AX), X0
	MOVOU 512(AX), X1
	MOVOU 1024(AX), X2
	MOVOU 1536(AX), X3
	MOVOU 2048(AX), X4
	MOVOU 2560(AX), X5
	MOVOU 3072(AX), X6
	MOVOU 3584(AX), X7

	// rows 0-3: columns 0-3 end in X0, X1, X8, X3
	MOVO X0, X8
	PUNPCKLLQ X1, X0
	PUNPCKHLQ X1, X8
	MOVO X2, X9
	PUNPCKLLQ X3, X2
	PUNPCKHLQ X3, X9
	MOVO X0, X1
	PUNPCKLQDQ X2, X0
	PUNPCKHQDQ X2, X1
	MOVO X8, X3
	PUNPCKLQDQ X9, X8
	PUNPCKHQDQ X9, X3

	// rows 4-7: columns 0-3 end in X4, X5, X10, X7
	MOVO X4, X10
	PUNPCKLLQ X5, X4
	PUNPCKHLQ X5, X10
	MOVO X6, X11
	PUNPCKLLQ X7, X6
	PUNPCKHLQ X7, X11
	MOVO X4, X5
	PUNPCKLQDQ X6, X4
	PUNPCKHQDQ X6, X5
	MOVO X10, X7
	PUNPCKLQDQ X11, X10
	PUNPCKHQDQ X11, X7

	MOVOU X0, (BX)
	MOVOU X4, 16(BX)
	MOVOU X1, (BX)(DX*1)
	MOVOU X5, 16(BX)(DX*1)
	MOVOU X8, (BX)(DX*2)
	MOVOU X10, 16(BX)(DX*2)
	MOVOU X3, (BX)(R8*1)
	MOVOU X7, 16(BX)(R8*1)

	ADDQ $4096, AX          // 8 rows of buf down
	ADDQ $32, BX            // 8 elements along the destination rows
	DECQ R13
	JNZ rows32

	ADDQ $16, SI            // 4 columns of buf right
	ADDQ R9, DI             // 4 destination rows down
	DECQ CX
	JNZ cols32
	RET
