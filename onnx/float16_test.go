package onnx

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"
)

func TestFloat16RoundTripAllPatterns(t *testing.T) {
	for h := 0; h < 1<<16; h++ {
		f := Float16ToFloat32(uint16(h))
		if back := Float32ToFloat16(f); back != uint16(h) {
			t.Fatalf("fp16 %#04x → %v (%#08x) → %#04x", h, f, math.Float32bits(f), back)
		}
	}
}

func TestFloat16KnownValues(t *testing.T) {
	cases := []struct {
		h uint16
		f float32
	}{
		{0x0000, 0}, {0x3c00, 1}, {0xc000, -2}, {0x7bff, 65504}, {0x0400, 1.0 / 16384},
		{0x0001, 1.0 / (1 << 24)}, {0x03ff, 1023.0 / (1 << 24)}, {0x3555, 0.333251953125},
	}
	for _, c := range cases {
		if got := Float16ToFloat32(c.h); got != c.f {
			t.Errorf("Float16ToFloat32(%#04x) = %v, want %v", c.h, got, c.f)
		}
	}
	if v := Float16ToFloat32(0x7c00); !math.IsInf(float64(v), 1) {
		t.Errorf("0x7c00 = %v, want +Inf", v)
	}
	if v := Float16ToFloat32(0x7e00); !math.IsNaN(float64(v)) {
		t.Errorf("0x7e00 = %v, want NaN", v)
	}
	if h := Float32ToFloat16(float32(math.NaN())); h&0x7c00 != 0x7c00 || h&0x3ff == 0 {
		t.Errorf("NaN → %#04x, want a NaN pattern", h)
	}
	if h := Float32ToFloat16(1e6); h != 0x7c00 {
		t.Errorf("1e6 → %#04x, want +Inf 0x7c00", h)
	}
	if h := Float32ToFloat16(-1e-10); h != 0x8000 {
		t.Errorf("-1e-10 → %#04x, want -0 0x8000", h)
	}
}

// refFloat16 rounds x to the nearest fp16 by searching the sorted table of all finite positive
// half values in float64, ties to the even bit pattern: an implementation independent of the
// bit manipulation under test.
func refFloat16(x float32, table []float64) uint16 {
	v := math.Abs(float64(x))
	sign := uint16(0)
	if math.Signbit(float64(x)) {
		sign = 0x8000
	}
	const maxHalf, inf = 65504.0, 65536.0 // the value the next pattern (0x7c00) would have
	if v >= (maxHalf+inf)/2 {
		return sign | 0x7c00
	}
	i := sort.SearchFloat64s(table, v) // table[i] >= v
	if i == len(table) {
		return sign | 0x7bff // above the largest half, below the rounding threshold to Inf
	}
	if table[i] == v {
		return sign | uint16(i)
	}
	lo, hi := uint16(i-1), uint16(i)
	dl, dh := v-table[lo], table[hi]-v
	switch {
	case dl < dh:
		return sign | lo
	case dh < dl:
		return sign | hi
	case lo%2 == 0:
		return sign | lo
	}
	return sign | hi
}

func TestFloat32ToFloat16MatchesReference(t *testing.T) {
	table := make([]float64, 0x7c00)
	for h := range table {
		table[h] = float64(Float16ToFloat32(uint16(h)))
	}
	check := func(x float32) {
		t.Helper()
		if got, want := Float32ToFloat16(x), refFloat16(x, table); got != want {
			t.Fatalf("Float32ToFloat16(%v = %#08x) = %#04x, want %#04x", x, math.Float32bits(x), got, want)
		}
	}
	// exact ties: midpoints between consecutive halves (representable in float32), both parities
	ties := 0
	for h := 0; h < 0x7bff; h++ {
		mid := (table[h] + table[h+1]) / 2
		if float64(float32(mid)) != mid {
			t.Fatalf("midpoint %v not exact in float32", mid)
		}
		check(float32(mid))
		check(-float32(mid))
		check(math.Nextafter32(float32(mid), 0))
		check(math.Nextafter32(float32(mid), 1e9))
		ties++
	}
	check(65519.998) // just below the overflow threshold
	check(65520)     // the tie that rounds to Inf
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 200000; i++ {
		b := rng.Uint32()
		if b&0x7f800000 == 0x7f800000 {
			continue
		}
		check(math.Float32frombits(b))
	}
	if ties != 0x7bff {
		t.Fatalf("checked %d ties", ties)
	}
	// Known ties: 1 + 2^-11 is halfway between 1 and 1+2^-10 → even (1); 1 + 3·2^-11 → 1+2^-9.
	if h := Float32ToFloat16(1 + 1.0/2048); h != 0x3c00 {
		t.Errorf("tie 1+2^-11 → %#04x, want 0x3c00", h)
	}
	if h := Float32ToFloat16(1 + 3.0/2048); h != 0x3c02 {
		t.Errorf("tie 1+3·2^-11 → %#04x, want 0x3c02", h)
	}
}

func TestBFloat16(t *testing.T) {
	for h := 0; h < 1<<16; h++ {
		f := BFloat16ToFloat32(uint16(h))
		if math.IsNaN(float64(f)) {
			if back := Float32ToBFloat16(f); back&0x7f80 != 0x7f80 || back&0x7f == 0 {
				t.Fatalf("bf16 NaN %#04x → %#04x, not NaN", h, back)
			}
			continue
		}
		if back := Float32ToBFloat16(f); back != uint16(h) {
			t.Fatalf("bf16 %#04x → %v → %#04x", h, f, back)
		}
	}
	// float64 reference: the two bf16 neighbours of x, nearest wins, ties to even.
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 200000; i++ {
		b := rng.Uint32()
		if i%4 == 0 {
			b = b&0xffff0000 | 0x8000 // an exact tie
		}
		if b&0x7f800000 == 0x7f800000 {
			continue
		}
		x := math.Float32frombits(b)
		lo := uint16(b >> 16)
		hi := lo + 1
		dl := math.Abs(float64(x) - float64(BFloat16ToFloat32(lo)))
		vh := float64(BFloat16ToFloat32(hi))
		if math.IsInf(vh, 0) { // IEEE overflow: Inf stands for the value 2^128 when rounding
			vh = math.Copysign(math.Ldexp(1, 128), vh)
		}
		dh := math.Abs(vh - float64(x))
		want := lo
		if dh < dl || (dh == dl && lo%2 == 1) {
			want = hi
		}
		if got := Float32ToBFloat16(x); got != want {
			t.Fatalf("Float32ToBFloat16(%#08x) = %#04x, want %#04x", b, got, want)
		}
	}
}
