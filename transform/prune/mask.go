package prune

import (
	"fmt"
	"math"
	"runtime"
	"strconv"
	"strings"
	"sync"
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
	if k == 0 {
		return []int{}, nil
	}
	// Outputs are independent: split them over the cores, each worker with its own buffers,
	// and concatenate in output order so the result does not depend on the split.
	workers := min(runtime.GOMAXPROCS(0), w.Out)
	parts := make([][]int, workers)
	var wg sync.WaitGroup
	for p := 0; p < workers; p++ {
		wg.Add(1)
		go func(p int) {
			defer wg.Done()
			lo, hi := p*w.Out/workers, (p+1)*w.Out/workers
			// A tile of outputs is scored together so that, in the [in, out] layout, each row
			// read is one contiguous run instead of a cache miss per element.
			const tile = 16
			bufs := make([][]scored, tile)
			for t := range bufs {
				bufs[t] = make([]scored, w.In)
			}
			part := make([]int, 0, k*(hi-lo))
			for j0 := lo; j0 < hi; j0 += tile {
				nt := min(tile, hi-j0)
				for i := 0; i < w.In; i++ {
					for t := 0; t < nt; t++ {
						bufs[t][i] = scored{math.Abs(float64(values[w.at(i, j0+t)])) * norm[i], i}
					}
				}
				for t := 0; t < nt; t++ {
					j, buf := j0+t, bufs[t]
					if c.Pattern.M == 0 {
						part = appendLowest(part, buf, k, w, j)
						continue
					}
					for g := 0; g < w.In; g += c.Pattern.M {
						part = appendLowest(part, buf[g:g+c.Pattern.M], c.Pattern.N, w, j)
					}
				}
			}
			parts[p] = part
		}(p)
	}
	wg.Wait()
	out := make([]int, 0, k*w.Out)
	for _, part := range parts {
		out = append(out, part...)
	}
	return out, nil
}

// scored is one input's score within an output; idx breaks ties, so ordering by (score, idx)
// equals a stable sort by score (torch.sort(stable=True) in the reference).
type scored struct {
	score float64
	idx   int
}

// appendLowest appends the stored positions of the n lowest-scoring inputs of buf (one output's
// inputs, or one N:M group) in the (score, input index) order, which makes the chosen set exactly
// that of a stable sort. Only the set matters, so a selection (linear on average) replaces the sort.
func appendLowest(out []int, buf []scored, n int, w Weight, j int) []int {
	selectLowest(buf, n)
	for _, s := range buf[:n] {
		out = append(out, w.at(s.idx, j))
	}
	return out
}

func less(a, b scored) bool { return a.score < b.score || a.score == b.score && a.idx < b.idx }

// selectLowest reorders buf so that its first n elements are the n smallest (Hoare's
// quickselect with a median-of-three pivot; the order within each side is unspecified).
// Small ranges are finished with an insertion sort.
func selectLowest(buf []scored, n int) {
	lo, hi := 0, len(buf)-1
	for hi-lo > 16 {
		mid := lo + (hi-lo)/2
		if less(buf[mid], buf[lo]) {
			buf[mid], buf[lo] = buf[lo], buf[mid]
		}
		if less(buf[hi], buf[lo]) {
			buf[hi], buf[lo] = buf[lo], buf[hi]
		}
		if less(buf[hi], buf[mid]) {
			buf[hi], buf[mid] = buf[mid], buf[hi]
		}
		pivot := buf[mid]
		i, j := lo, hi
		for i <= j {
			for less(buf[i], pivot) {
				i++
			}
			for less(pivot, buf[j]) {
				j--
			}
			if i <= j {
				buf[i], buf[j] = buf[j], buf[i]
				i++
				j--
			}
		}
		// Now buf[lo..j] ≤ pivot ≤ buf[i..hi], and elements between j and i equal the pivot.
		switch {
		case n-1 <= j:
			hi = j
		case n-1 >= i:
			lo = i
		default:
			return
		}
	}
	for a := lo + 1; a <= hi; a++ {
		for b := a; b > lo && less(buf[b], buf[b-1]); b-- {
			buf[b], buf[b-1] = buf[b-1], buf[b]
		}
	}
}

// ZeroElements zeroes the given elements of a raw little-endian tensor of elemSize-byte
// elements. Zero bits are 0.0 in every IEEE float format, so this is exact for fp32/fp16/bf16.
func ZeroElements(raw []byte, elemSize int, idx []int) {
	for _, k := range idx {
		clear(raw[k*elemSize : (k+1)*elemSize])
	}
}
