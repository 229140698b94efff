package hf

import (
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
)

// transposeInto against the definition (convert each element, then put element (r, c) at
// (c, r)), for shapes with partial blocks, single rows and columns, and matrices large enough
// to be split into bands across cores; same type and converted (widened and narrowed).
func TestTransposeInto(t *testing.T) {
	bf16, f32 := onnxpb.TensorProto_BFLOAT16, onnxpb.TensorProto_FLOAT
	narrow := func(_ onnxpb.TensorProto_DataType, f float32) uint16 { return onnx.Float32ToBFloat16(f) }
	for _, types := range [][2]onnxpb.TensorProto_DataType{{bf16, bf16}, {f32, f32}, {bf16, f32}, {f32, bf16}} {
		from, to := types[0], types[1]
		ef, et := onnx.ElemSize(from), onnx.ElemSize(to)
		for _, sh := range [][2]int{{1, 1}, {1, 7}, {7, 1}, {32, 32}, {33, 31}, {64, 96}, {100, 45}, {1500, 700}, {1023, 1061}, {64, 300}, {40, 128}} {
			rows, cols := sh[0], sh[1]
			m := make([]byte, rows*cols*ef)
			for i := 0; i < rows*cols; i++ {
				f := float32(int32(uint32(i)*2654435761)>>8) / 1024
				if ef == 2 {
					binary.LittleEndian.PutUint16(m[2*i:], onnx.Float32ToBFloat16(f))
				} else {
					binary.LittleEndian.PutUint32(m[4*i:], math.Float32bits(f))
				}
			}
			conv := make([]byte, rows*cols*et)
			retypeInto(conv, m, from, to, narrow)
			dst := make([]byte, len(conv))
			if err := transposeInto(dst, m, rows, cols, from, to, narrow); err != nil {
				t.Fatal(err)
			}
			for r := 0; r < rows; r++ {
				for c := 0; c < cols; c++ {
					src, out := (r*cols+c)*et, (c*rows+r)*et
					if string(conv[src:src+et]) != string(dst[out:out+et]) {
						t.Fatalf("%s → %s %dx%d: element (%d, %d) not at (%d, %d)", from, to, rows, cols, r, c, c, r)
					}
				}
			}
		}
	}
}

// A transpose reading a file mapping whose file was truncated returns an *onnx.FaultError
// from every band (each band's goroutine catches its own fault) instead of killing the
// process with SIGBUS.
func TestTransposeIntoTruncatedMapping(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2)) // two bands, on two goroutines
	rows, cols := 1024, 2048                        // 4 MiB of bf16
	p := filepath.Join(t.TempDir(), "m.bin")
	if err := os.WriteFile(p, make([]byte, rows*cols*2), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := syscall.Mmap(int(f.Fd()), 0, rows*cols*2, syscall.PROT_READ, syscall.MAP_SHARED|syscall.MAP_POPULATE)
	if err != nil {
		t.Skipf("mmap: %v", err)
	}
	defer syscall.Munmap(m)
	if err := os.Truncate(p, 0); err != nil {
		t.Fatal(err)
	}
	bf16 := onnxpb.TensorProto_BFLOAT16
	err = transposeInto(make([]byte, len(m)), m, rows, cols, bf16, bf16, nil)
	var fe *onnx.FaultError
	if !errors.As(err, &fe) {
		t.Fatalf("transpose of a truncated mapping: %v, want an *onnx.FaultError", err)
	}
	if u := uintptr(unsafe.Pointer(&m[0])); fe.Addr < u || fe.Addr >= u+uintptr(len(m)) {
		t.Errorf("fault address %#x outside the mapping [%#x, %#x)", fe.Addr, u, u+uintptr(len(m)))
	}
	if n := strings.Count(err.Error(), "memory fault"); n != 2 {
		t.Errorf("%d bands reported the fault, want 2: %v", n, err)
	}
}
