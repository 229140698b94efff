package quant

import "fmt"

// BlobSize is the bytes of one packed block, block_size·bits/8.
func (l *Layer) BlobSize() int { return l.Config.BlockSize * l.Config.Bits / 8 }

// ZeroBytes is the bytes of one output's packed zero points, ceil(k_blocks·bits/8).
func (l *Layer) ZeroBytes() int { return (l.KBlocks()*l.Config.Bits + 7) / 8 }

// PackB is MatMulNBits input B, uint8 [N, k_blocks, blob_size]: codes along K, low bits first.
func (l *Layer) PackB() []byte { return packBits(l.Codes, l.Config.Bits, l.KBlocks()*l.BlobSize()*l.N) }

// PackZeros is MatMulNBits input zero_points in its packed uint8 form [N, ceil(k_blocks·bits/8)];
// nil for a symmetric layer, whose zero points are the operator's default.
func (l *Layer) PackZeros() []byte {
	if l.Config.Symmetric {
		return nil
	}
	kb, zb := l.KBlocks(), l.ZeroBytes()
	out := make([]byte, 0, l.N*zb)
	for n := 0; n < l.N; n++ {
		out = append(out, packBits(l.Zeros[n*kb:(n+1)*kb], l.Config.Bits, zb)...)
	}
	return out
}

// packBits packs bits-wide values into size bytes, low bits first (bits is 4 or 8).
func packBits(v []uint8, bits, size int) []byte {
	out := make([]byte, size)
	if bits == 8 {
		copy(out, v)
		return out
	}
	for i, x := range v {
		out[i/2] |= (x & 0xf) << (4 * (i % 2))
	}
	return out
}

// Unpack reads a layer back from MatMulNBits tensors (B, scales and optional packed zero
// points), the inverse of PackB/PackZeros; used by inspect, the train form and the merge.
func Unpack(k, n int, c Config, b []byte, scales []float32, zeros []byte) (*Layer, error) {
	l, err := NewLayer(k, n, c)
	if err != nil {
		return nil, err
	}
	kb := l.KBlocks()
	if len(b) != n*kb*l.BlobSize() {
		return nil, fmt.Errorf("matmulnbits B has %d bytes, want %d×%d×%d", len(b), n, kb, l.BlobSize())
	}
	if len(scales) != n*kb {
		return nil, fmt.Errorf("matmulnbits scales have %d values, want %d×%d", len(scales), n, kb)
	}
	unpackBits(b, c.Bits, l.Codes)
	copy(l.Scales, scales)
	if zeros != nil {
		zb := l.ZeroBytes()
		if len(zeros) != n*zb {
			return nil, fmt.Errorf("matmulnbits zero_points have %d bytes, want %d×%d", len(zeros), n, zb)
		}
		for j := 0; j < n; j++ {
			unpackBits(zeros[j*zb:(j+1)*zb], c.Bits, l.Zeros[j*kb:(j+1)*kb])
		}
	}
	return l, nil
}

func unpackBits(b []byte, bits int, out []uint8) {
	if bits == 8 {
		copy(out, b)
		return
	}
	for i := range out {
		out[i] = b[i/2] >> (4 * (i % 2)) & 0xf
	}
}
