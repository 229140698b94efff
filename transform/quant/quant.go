package quant

import (
	"fmt"
	"math"
)

// Config is a validated quantization grid configuration.
type Config struct {
	Bits      int  // 4 or 8
	BlockSize int  // a power of two ≥ 16 (the CLI offers 32, 64, 128)
	Symmetric bool // zero point fixed at 2^(bits−1); otherwise a zero point per block
}

// Check validates the configuration against what MatMulNBits and this package support.
func (c Config) Check() error {
	if c.Bits != 4 && c.Bits != 8 {
		return fmt.Errorf("bits %d: want 4 or 8", c.Bits)
	}
	if c.BlockSize < 16 || c.BlockSize&(c.BlockSize-1) != 0 {
		return fmt.Errorf("block size %d: want a power of two of at least 16 (32, 64 or 128)", c.BlockSize)
	}
	return nil
}

// MaxCode is the largest code, 2^bits − 1.
func (c Config) MaxCode() int { return 1<<c.Bits - 1 }

// DefaultZero is the operator's zero point when none is stored, 2^(bits−1).
func (c Config) DefaultZero() int { return 1 << (c.Bits - 1) }

// Layer is one quantized linear: N outputs, each K inputs long, in KBlocks blocks.
type Layer struct {
	K, N   int
	Config Config
	// Codes are the unpacked codes, [N][KBlocks·BlockSize] (the padding holds the zero point).
	Codes []uint8
	// Scales are [N][KBlocks].
	Scales []float32
	// Zeros are the zero points, [N][KBlocks] (all DefaultZero when Symmetric).
	Zeros []uint8
}

// KBlocks is ceil(K / BlockSize).
func (l *Layer) KBlocks() int { return (l.K + l.Config.BlockSize - 1) / l.Config.BlockSize }

// NewLayer allocates a layer whose codes all sit at the zero point (it dequantizes to 0).
func NewLayer(k, n int, c Config) (*Layer, error) {
	if err := c.Check(); err != nil {
		return nil, err
	}
	if k <= 0 || n <= 0 {
		return nil, fmt.Errorf("weight shape [%d, %d]: both sizes must be positive", k, n)
	}
	l := &Layer{K: k, N: n, Config: c}
	kb := l.KBlocks()
	l.Codes = make([]uint8, n*kb*c.BlockSize)
	l.Scales = make([]float32, n*kb)
	l.Zeros = make([]uint8, n*kb)
	for i := range l.Zeros {
		l.Zeros[i] = uint8(c.DefaultZero())
	}
	for i := range l.Codes {
		l.Codes[i] = uint8(c.DefaultZero())
	}
	return l, nil
}

// Grid is one block's scale and zero point.
type Grid struct {
	Scale float32
	Zero  int
}

// NewGrid is the block grid for values w (see the package doc for how it keeps 0 exact). An
// all-zero block gets scale 0: every code is the zero point and dequantizes to 0.
func NewGrid(w []float32, c Config) Grid {
	if c.Symmetric {
		amax := 0.0
		for _, v := range w {
			amax = math.Max(amax, math.Abs(float64(v)))
		}
		return Grid{Scale: float32(amax / float64(c.DefaultZero()-1)), Zero: c.DefaultZero()}
	}
	lo, hi := 0.0, 0.0
	for _, v := range w {
		lo, hi = math.Min(lo, float64(v)), math.Max(hi, float64(v))
	}
	if hi == lo {
		return Grid{Scale: 0, Zero: c.DefaultZero()}
	}
	s := float32((hi - lo) / float64(c.MaxCode()))
	z := int(math.RoundToEven(-lo / float64(s)))
	z = max(0, min(c.MaxCode(), z))
	return Grid{Scale: s, Zero: z}
}

// Code quantizes v on grid g: clamp(round_half_even(v/scale) + zero, 0, 2^bits−1). A zero
// scale (all-zero block) gives the zero point.
func (g Grid) Code(v float32, c Config) uint8 {
	if g.Scale == 0 {
		return uint8(g.Zero)
	}
	q := int(math.RoundToEven(float64(v)/float64(g.Scale))) + g.Zero
	return uint8(max(0, min(c.MaxCode(), q)))
}

// Value is the dequantized code: (code − zero)·scale, computed in float32 as the operator does.
func (g Grid) Value(code uint8) float32 { return float32(int(code)-g.Zero) * g.Scale }

// GridAt is the grid of output n's block b.
func (l *Layer) GridAt(n, b int) Grid {
	i := n*l.KBlocks() + b
	return Grid{Scale: l.Scales[i], Zero: int(l.Zeros[i])}
}

// Set stores grid g for output n's block b.
func (l *Layer) Set(n, b int, g Grid) {
	i := n*l.KBlocks() + b
	l.Scales[i], l.Zeros[i] = g.Scale, uint8(g.Zero)
}

// Code is the code of weight W[k, n].
func (l *Layer) Code(k, n int) uint8 { return l.Codes[n*l.KBlocks()*l.Config.BlockSize+k] }

// SetCode stores the code of weight W[k, n].
func (l *Layer) SetCode(k, n int, q uint8) { l.Codes[n*l.KBlocks()*l.Config.BlockSize+k] = q }

// Dequant is the float weight the operator multiplies by, in ONNX layout W[K, N].
func (l *Layer) Dequant() []float32 {
	out := make([]float32, l.K*l.N)
	bs := l.Config.BlockSize
	for n := 0; n < l.N; n++ {
		for k := 0; k < l.K; k++ {
			out[k*l.N+n] = l.GridAt(n, k/bs).Value(l.Code(k, n))
		}
	}
	return out
}

// RTN quantizes W[K, N] (ONNX layout, row-major) by rounding to nearest on per-block grids.
func RTN(w []float32, k, n int, c Config) (*Layer, error) {
	l, err := NewLayer(k, n, c)
	if err != nil {
		return nil, err
	}
	if len(w) != k*n {
		return nil, fmt.Errorf("weight has %d values, want %d×%d", len(w), k, n)
	}
	bs := c.BlockSize
	col := make([]float32, bs)
	for j := 0; j < n; j++ {
		for b := 0; b < l.KBlocks(); b++ {
			col = col[:0]
			for i := b * bs; i < min(k, (b+1)*bs); i++ {
				col = append(col, w[i*n+j])
			}
			g := NewGrid(col, c)
			l.Set(j, b, g)
			for t, v := range col {
				l.SetCode(b*bs+t, j, g.Code(v, c))
			}
		}
	}
	return l, nil
}
