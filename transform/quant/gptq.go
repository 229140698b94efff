package quant

import (
	"fmt"
	"math"
)

// GPTQOptions configure GPTQ.
type GPTQOptions struct {
	// Damp is added to the Hessian's diagonal as a fraction of its mean (the paper's 1%).
	Damp float64
	// Lazy is the lazy-batch width (columns updated together); a multiple of the block size,
	// so every block's grid is found on fully compensated values. Default 128 (or the block).
	Lazy int
}

// GPTQ quantizes W[K, N] (ONNX layout) with the error compensation of Frantar et al. 2022.
// h is the K×K Hessian of the layer's reconstruction loss, 2·XᵀX over the calibration inputs
// (row-major, symmetric). Inputs are quantized in order 0…K−1; each block's grid (scale, zero
// point) is found when its first input is reached, from the weights as compensated so far, and
// quantizing input i moves the not-yet-quantized inputs by −(w_i − q_i)/[H⁻¹]_ii · [H⁻¹]_i,· (in
// the Cholesky form: U upper with H⁻¹ = UᵀU). Weights that are zero in w (a pruned base) are held
// at zero: their code is the zero point and their compensated value counts as error, as SparseGPT
// and SQFT do. Inputs whose Hessian diagonal is 0 (never active) are set to 0. h is not modified.
func GPTQ(w []float32, k, n int, h []float64, c Config, o GPTQOptions) (*Layer, error) {
	l, err := NewLayer(k, n, c)
	if err != nil {
		return nil, err
	}
	if len(w) != k*n || len(h) != k*k {
		return nil, fmt.Errorf("gptq: weight has %d values and hessian %d, want %d×%d and %d²", len(w), len(h), k, n, k)
	}
	if !(o.Damp > 0) {
		o.Damp = 0.01
	}
	bs := c.BlockSize
	if o.Lazy <= 0 {
		o.Lazy = 128
	}
	o.Lazy = max(bs, o.Lazy/bs*bs)
	// Work on rows = outputs: W[n][k] in float64; pruned[n][k] marks the base's zeros.
	W := make([]float64, n*k)
	pruned := make([]bool, n*k)
	for i := 0; i < k; i++ {
		for j := 0; j < n; j++ {
			W[j*k+i] = float64(w[i*n+j])
			pruned[j*k+i] = w[i*n+j] == 0
		}
	}
	H := append([]float64(nil), h...)
	mean := 0.0
	for i := 0; i < k; i++ {
		if H[i*k+i] == 0 {
			H[i*k+i] = 1
			for j := 0; j < n; j++ {
				W[j*k+i] = 0
			}
		}
		mean += H[i*k+i] / float64(k)
	}
	for i := 0; i < k; i++ {
		H[i*k+i] += o.Damp * mean
	}
	U, err := invCholUpper(H, k)
	if err != nil {
		return nil, fmt.Errorf("gptq: %w (raise the damping)", err)
	}
	vals := make([]float32, 0, bs)
	grids := make([]Grid, n)
	errs := make([]float64, n*o.Lazy) // Err1[row][col in batch]
	for i1 := 0; i1 < k; i1 += o.Lazy {
		i2 := min(k, i1+o.Lazy)
		for i := i1; i < i2; i++ {
			if i%bs == 0 {
				for j := 0; j < n; j++ {
					vals = vals[:0]
					for t := i; t < min(k, i+bs); t++ {
						if !pruned[j*k+t] {
							vals = append(vals, float32(W[j*k+t]))
						}
					}
					grids[j] = NewGrid(vals, c)
					l.Set(j, i/bs, grids[j])
				}
			}
			d := U[i*k+i]
			for j := 0; j < n; j++ {
				wv := W[j*k+i]
				code := uint8(grids[j].Zero)
				if !pruned[j*k+i] {
					code = grids[j].Code(float32(wv), c)
				}
				l.SetCode(i, j, code)
				e := (wv - float64(grids[j].Value(code))) / d
				errs[j*o.Lazy+i-i1] = e
				row := W[j*k : (j+1)*k]
				urow := U[i*k : (i+1)*k]
				for t := i + 1; t < i2; t++ {
					row[t] -= e * urow[t]
				}
			}
		}
		// Lazy batch update of the columns after the batch: W[:, i2:] −= Err1 · U[i1:i2, i2:].
		for j := 0; j < n; j++ {
			row := W[j*k : (j+1)*k]
			for i := i1; i < i2; i++ {
				e := errs[j*o.Lazy+i-i1]
				if e == 0 {
					continue
				}
				urow := U[i*k : (i+1)*k]
				for t := i2; t < k; t++ {
					row[t] -= e * urow[t]
				}
			}
		}
	}
	return l, nil
}

// invCholUpper returns the upper Cholesky factor U of H⁻¹ (H⁻¹ = UᵀU) for a symmetric positive
// definite H (k×k, row-major): H = LLᵀ, H⁻¹ = L⁻ᵀL⁻¹, then the Cholesky factor of that.
func invCholUpper(h []float64, k int) ([]float64, error) {
	L, err := cholesky(h, k)
	if err != nil {
		return nil, err
	}
	// Li = L⁻¹ (lower triangular), by forward substitution column by column.
	Li := make([]float64, k*k)
	for c := 0; c < k; c++ {
		Li[c*k+c] = 1 / L[c*k+c]
		for r := c + 1; r < k; r++ {
			s := 0.0
			for t := c; t < r; t++ {
				s += L[r*k+t] * Li[t*k+c]
			}
			Li[r*k+c] = -s / L[r*k+r]
		}
	}
	// Hinv = Liᵀ·Li.
	hinv := make([]float64, k*k)
	for r := 0; r < k; r++ {
		for c := r; c < k; c++ {
			s := 0.0
			for t := c; t < k; t++ { // Li[t][r], Li[t][c] nonzero only for t ≥ max(r, c)
				s += Li[t*k+r] * Li[t*k+c]
			}
			hinv[r*k+c], hinv[c*k+r] = s, s
		}
	}
	L2, err := cholesky(hinv, k)
	if err != nil {
		return nil, err
	}
	U := make([]float64, k*k)
	for r := 0; r < k; r++ {
		for c := 0; c <= r; c++ {
			U[c*k+r] = L2[r*k+c]
		}
	}
	return U, nil
}

// cholesky is the lower factor L of a symmetric positive definite matrix (h = LLᵀ).
func cholesky(h []float64, k int) ([]float64, error) {
	L := make([]float64, k*k)
	for r := 0; r < k; r++ {
		for c := 0; c <= r; c++ {
			s := h[r*k+c]
			for t := 0; t < c; t++ {
				s -= L[r*k+t] * L[c*k+t]
			}
			if r == c {
				if !(s > 0) {
					return nil, fmt.Errorf("hessian is not positive definite at input %d", r)
				}
				L[r*k+r] = math.Sqrt(s)
			} else {
				L[r*k+c] = s / L[c*k+c]
			}
		}
	}
	return L, nil
}
