package onnx

import "math"

// Float16ToFloat32 widens an IEEE 754 binary16 value (given by its bits) to float32. The
// conversion is exact: every half value, subnormals, infinities and NaN payloads included,
// has a float32 representation.
func Float16ToFloat32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h & 0x3ff)
	switch exp {
	case 0:
		// zero or subnormal: mant · 2^-24, exact in float32
		v := float32(mant) * (1.0 / (1 << 24))
		return math.Float32frombits(math.Float32bits(v) | sign)
	case 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
}

// Float32ToFloat16 narrows f to binary16 bits, rounding to nearest with ties to even, the
// rounding IEEE 754 and numpy use; overflow gives ±Inf, NaN stays NaN (payload kept where it fits).
func Float32ToFloat16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23) & 0xff
	mant := b & 0x7fffff
	if exp == 0xff {
		if mant == 0 {
			return sign | 0x7c00
		}
		p := uint16(mant >> 13)
		if p == 0 {
			p = 0x200
		}
		return sign | 0x7c00 | p
	}
	e := exp - 127 + 15
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e <= 0 {
		// below the smallest normal half: the result is a multiple of 2^-24. The product is
		// exact in float64, and 1024 (a carry into the exponent) is the smallest normal's bits.
		a := math.Abs(float64(f)) * (1 << 24)
		return sign | uint16(math.RoundToEven(a))
	}
	h := uint32(e)<<10 | mant>>13
	rem := mant & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && h&1 == 1) {
		h++ // may carry into the exponent, up to 0x7c00 = Inf, which is the right answer
	}
	return sign | uint16(h)
}

// BFloat16ToFloat32 widens bfloat16 bits to float32 (exact: bfloat16 is float32's top half).
func BFloat16ToFloat32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// Float32ToBFloat16 narrows f to bfloat16 bits, rounding to nearest with ties to even; NaN stays
// a (quiet) NaN instead of rounding into Inf.
func Float32ToBFloat16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7f800000 == 0x7f800000 && b&0x7fffff != 0 {
		return uint16(b>>16) | 0x40
	}
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}
