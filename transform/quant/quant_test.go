package quant

import (
	"math"
	"math/rand/v2"
	"testing"
)

// sparseWeight is a random W[K, N] with about half of its entries exactly zero.
func sparseWeight(r *rand.Rand, k, n int) []float32 {
	w := make([]float32, k*n)
	for i := range w {
		if r.IntN(2) == 0 {
			w[i] = float32(r.NormFloat64() * 0.1)
		}
	}
	return w
}

var grids = []Config{
	{4, 32, true}, {4, 32, false}, {4, 64, true}, {4, 64, false}, {4, 128, true}, {4, 128, false},
	{8, 32, true}, {8, 32, false}, {8, 64, false}, {8, 128, true},
}

// TestRTNFormula checks every code, scale and zero point against the formulas written out
// independently here, on a K that no block size divides (padding), and that every zero of the
// sparse weight dequantizes to exactly 0.
func TestRTNFormula(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const k, n = 172, 9
	w := sparseWeight(r, k, n)
	for _, c := range grids {
		l, err := RTN(w, k, n, c)
		if err != nil {
			t.Fatal(err)
		}
		qmax := float64(int(1)<<c.Bits - 1)
		deq := l.Dequant()
		for j := 0; j < n; j++ {
			for b := 0; b*c.BlockSize < k; b++ {
				lo, hi, amax := 0.0, 0.0, 0.0
				end := min(k, (b+1)*c.BlockSize)
				for i := b * c.BlockSize; i < end; i++ {
					v := float64(w[i*n+j])
					lo, hi, amax = math.Min(lo, v), math.Max(hi, v), math.Max(amax, math.Abs(v))
				}
				var scale float32
				var zero float64
				if c.Symmetric {
					scale, zero = float32(amax/(qmax/2-0.5)), (qmax+1)/2 // amax / (2^(b−1) − 1), zero 2^(b−1)
				} else {
					scale = float32((hi - lo) / qmax)
					zero = math.RoundToEven(-lo / float64(scale))
				}
				g := l.GridAt(j, b)
				if g.Scale != scale || float64(g.Zero) != zero {
					t.Fatalf("%+v out %d block %d: grid %+v, want scale %g zero %g", c, j, b, g, scale, zero)
				}
				for i := b * c.BlockSize; i < end; i++ {
					v := float64(w[i*n+j])
					want := zero
					if scale != 0 {
						want = math.Max(0, math.Min(qmax, math.RoundToEven(v/float64(scale))+zero))
					}
					if float64(l.Code(i, j)) != want {
						t.Fatalf("%+v W[%d,%d] = %g: code %d, want %g", c, i, j, v, l.Code(i, j), want)
					}
					if v == 0 && deq[i*n+j] != 0 {
						t.Fatalf("%+v W[%d,%d] is zero but dequantizes to %g", c, i, j, deq[i*n+j])
					}
					step := float64(scale)
					if d := math.Abs(float64(deq[i*n+j]) - v); !(d <= step/2*1.0001+1e-12) {
						t.Fatalf("%+v W[%d,%d]: rounding error %g above half a step %g", c, i, j, d, step/2)
					}
				}
			}
		}
	}
}

// TestPackRoundTrip checks the MatMulNBits byte layout on a hand-made case and that Unpack
// inverts PackB/PackZeros.
func TestPackRoundTrip(t *testing.T) {
	l, _ := NewLayer(32, 1, Config{4, 16, false})
	for k := 0; k < 32; k++ {
		l.SetCode(k, 0, uint8(k%16))
	}
	l.Zeros[0], l.Zeros[1] = 3, 12
	b := l.PackB()
	if len(b) != 16 || b[0] != 0x10 || b[1] != 0x32 || b[15] != 0xfe {
		t.Fatalf("packed B % x: want low nibble first (10 32 ... fe)", b)
	}
	if z := l.PackZeros(); len(z) != 1 || z[0] != 0xc3 {
		t.Fatalf("packed zero points % x, want c3", z)
	}
	r := rand.New(rand.NewPCG(3, 4))
	for _, c := range grids {
		src, _ := RTN(sparseWeight(r, 100, 7), 100, 7, c)
		back, err := Unpack(100, 7, c, src.PackB(), src.Scales, src.PackZeros())
		if err != nil {
			t.Fatal(err)
		}
		for i := range src.Codes {
			if src.Codes[i] != back.Codes[i] {
				t.Fatalf("%+v code %d: %d after round trip, want %d", c, i, back.Codes[i], src.Codes[i])
			}
		}
		for i := range src.Zeros {
			if src.Zeros[i] != back.Zeros[i] {
				t.Fatalf("%+v zero point %d: %d after round trip, want %d", c, i, back.Zeros[i], src.Zeros[i])
			}
		}
	}
}

func TestConfigCheck(t *testing.T) {
	for _, c := range []Config{{3, 32, true}, {4, 24, true}, {4, 8, false}, {16, 32, true}} {
		if err := c.Check(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}
