package prune

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// Method is how a weight's importance is scored.
type Method string

const (
	Wanda     Method = "wanda"     // |W[i,j]| · ‖X_i‖₂ (Sun et al. 2023)
	Magnitude Method = "magnitude" // |W[i,j]|
)

// Pattern is the sparsity pattern: unstructured (N = M = 0) or N zeros in every M consecutive
// inputs of each output.
type Pattern struct{ N, M int }

// Unstructured is the reference Shears pattern.
var Unstructured = Pattern{}

func (p Pattern) String() string {
	if p.M == 0 {
		return "unstructured"
	}
	return fmt.Sprintf("%d:%d", p.N, p.M)
}

// ParsePattern reads "unstructured", "2:4", "4:8", ...
func ParsePattern(s string) (Pattern, error) {
	if s == "" || s == "unstructured" {
		return Unstructured, nil
	}
	a, b, ok := strings.Cut(s, ":")
	n, err1 := strconv.Atoi(a)
	m, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || n <= 0 || m <= 0 || n >= m {
		return Pattern{}, fmt.Errorf("pattern %q: want \"unstructured\" or N:M with 0 < N < M (e.g. 2:4)", s)
	}
	return Pattern{n, m}, nil
}

// Config is a validated pruning configuration.
type Config struct {
	Method   Method
	Sparsity float64
	Pattern  Pattern
}

// Check validates the configuration: sparsity in [0, 1), a known method, and N:M patterns only
// at their own sparsity N/M (as Wanda asserts).
func (c Config) Check() error {
	if c.Method != Wanda && c.Method != Magnitude {
		return fmt.Errorf("method %q: want wanda or magnitude", c.Method)
	}
	if !(c.Sparsity >= 0 && c.Sparsity < 1) {
		return fmt.Errorf("sparsity %g: must be in [0, 1)", c.Sparsity)
	}
	if c.Pattern.M > 0 && math.Abs(c.Sparsity-float64(c.Pattern.N)/float64(c.Pattern.M)) > 1e-9 {
		return fmt.Errorf("pattern %s prunes exactly %g of the weights, but sparsity is %g (use --sparsity %g)",
			c.Pattern, float64(c.Pattern.N)/float64(c.Pattern.M), c.Sparsity, float64(c.Pattern.N)/float64(c.Pattern.M))
	}
	return nil
}

// CheckLayers refuses, before any work is done, layers that the pattern cannot tile.
func (c Config) CheckLayers(names []string, inputs []int64) error {
	if c.Pattern.M == 0 {
		return nil
	}
	for k, in := range inputs {
		if in%int64(c.Pattern.M) != 0 {
			return fmt.Errorf("pattern %s: layer %s has %d inputs, not a multiple of %d (exclude it with --exclude)", c.Pattern, names[k], in, c.Pattern.M)
		}
	}
	return nil
}

// Weight describes a weight matrix for Mask: W[i,j] (input i, output j) is stored at
// i*Out+j when !Transposed ([in, out], ONNX MatMul layout) and at j*In+i when Transposed.
type Weight struct {
	In, Out    int
	Transposed bool
}

func (w Weight) at(i, j int) int {
	if w.Transposed {
		return j*w.In + i
	}
	return i*w.Out + j
}

// Mask returns the flat indices (into the stored weight) to zero. values are the weight's
// elements as float32; inNorm2 is Σ x_i² per input feature (nil for magnitude). Within each
// output, scores are sorted ascending with a stable sort (ties keep input order, as torch.sort
// with stable=True does) and the k = floor(in·s) smallest are pruned (unstructured), or the N
// smallest of every M consecutive inputs (N:M).
func Mask(values []float32, w Weight, inNorm2 []float64, c Config) ([]int, error) {
	if err := c.Check(); err != nil {
		return nil, err
	}
	if len(values) != w.In*w.Out {
		return nil, fmt.Errorf("mask: %d values for a %d×%d weight", len(values), w.In, w.Out)
	}
	if c.Method == Wanda && len(inNorm2) != w.In {
		return nil, fmt.Errorf("mask: wanda needs %d input norms, got %d", w.In, len(inNorm2))
	}
	if c.Pattern.M > 0 && w.In%c.Pattern.M != 0 {
		return nil, fmt.Errorf("mask: %s pattern needs the input size (%d) to be a multiple of %d", c.Pattern, w.In, c.Pattern.M)
	}
	norm := make([]float64, w.In)
	for i := range norm {
		norm[i] = 1
		if c.Method == Wanda {
			norm[i] = math.Sqrt(inNorm2[i])
		}
	}
	k := int(math.Floor(float64(w.In) * c.Sparsity))
	if c.Pattern.M > 0 {
		k = w.In / c.Pattern.M * c.Pattern.N
	}
	var out []int
	if k == 0 {
		return out, nil
	}
	out = make([]int, 0, k*w.Out)
	score := make([]float64, w.In)
	idx := make([]int, w.In)
	for j := 0; j < w.Out; j++ {
		for i := 0; i < w.In; i++ {
			score[i] = math.Abs(float64(values[w.at(i, j)])) * norm[i]
			idx[i] = i
		}
		if c.Pattern.M == 0 {
			sortStable(idx, score)
			for _, i := range idx[:k] {
				out = append(out, w.at(i, j))
			}
			continue
		}
		for g := 0; g < w.In; g += c.Pattern.M {
			grp := idx[g : g+c.Pattern.M]
			sortStable(grp, score)
			for _, i := range grp[:c.Pattern.N] {
				out = append(out, w.at(i, j))
			}
		}
	}
	return out, nil
}

// sortStable orders idx by ascending score; equal scores keep their order.
func sortStable(idx []int, score []float64) {
	sort.SliceStable(idx, func(a, b int) bool { return score[idx[a]] < score[idx[b]] })
}

// ZeroElements zeroes the given elements of a raw little-endian tensor of elemSize-byte
// elements. Zero bits are 0.0 in every IEEE float format, so this is exact for fp32/fp16/bf16.
func ZeroElements(raw []byte, elemSize int, idx []int) {
	for _, k := range idx {
		clear(raw[k*elemSize : (k+1)*elemSize])
	}
}
