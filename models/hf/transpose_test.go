package hf

import (
	"encoding/binary"
	"testing"
)

// transposeInto against the definition, element by element, for shapes with partial tiles,
// single rows and columns, and matrices large enough to be split into bands across cores.
func TestTransposeInto(t *testing.T) {
	for _, es := range []int{2, 4} {
		for _, sh := range [][2]int{{1, 1}, {1, 7}, {7, 1}, {32, 32}, {33, 31}, {64, 96}, {100, 45}, {1500, 700}, {1023, 1061}, {64, 300}, {40, 128}} {
			rows, cols := sh[0], sh[1]
			m := make([]byte, rows*cols*es)
			for i := 0; i < rows*cols; i++ {
				if es == 2 {
					binary.LittleEndian.PutUint16(m[2*i:], uint16(i*2654435761>>7))
				} else {
					binary.LittleEndian.PutUint32(m[4*i:], uint32(i*2654435761))
				}
			}
			dst := make([]byte, len(m))
			transposeInto(dst, m, rows, cols, es)
			for r := 0; r < rows; r++ {
				for c := 0; c < cols; c++ {
					src, out := (r*cols+c)*es, (c*rows+r)*es
					if string(m[src:src+es]) != string(dst[out:out+es]) {
						t.Fatalf("%d-byte %dx%d: element (%d, %d) not at (%d, %d)", es, rows, cols, r, c, c, r)
					}
				}
			}
		}
	}
}
