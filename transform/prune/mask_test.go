package prune

import (
	"slices"
	"testing"
)

func TestMaskUnstructuredPerOutputWithStableTies(t *testing.T) {
	// W is [in=4, out=2]; column 0 has a tie between inputs 1 and 2.
	w := []float32{
		4, -1,
		1, 2,
		-1, 3,
		2, -4,
	}
	norm2 := []float64{1, 1, 1, 1}
	idx, err := Mask(w, Weight{In: 4, Out: 2}, norm2, Config{Method: Wanda, Sparsity: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(idx)
	// column 0: |1| (i=1) and |-1| (i=2) tie → both pruned; column 1: |-1| (i=0), |2| (i=1).
	if want := []int{1, 2, 3, 4}; !slices.Equal(idx, want) {
		t.Fatalf("pruned %v, want %v", idx, want)
	}
	// Wanda weighs inputs: a large norm on input 1 protects it.
	idx, _ = Mask(w, Weight{In: 4, Out: 2}, []float64{1, 100, 1, 1}, Config{Method: Wanda, Sparsity: 0.25})
	slices.Sort(idx)
	if want := []int{4, 1}; !slices.Equal(idx, []int{1, 4}) {
		t.Fatalf("pruned %v, want %v", idx, want)
	}
}

func TestMaskTransposedLayoutMatchesPlain(t *testing.T) {
	in, out := 8, 3
	w := make([]float32, in*out)
	wt := make([]float32, in*out)
	for i := 0; i < in; i++ {
		for j := 0; j < out; j++ {
			v := float32((i*7+j*13)%11) - 5
			w[i*out+j] = v
			wt[j*in+i] = v
		}
	}
	norm2 := []float64{1, 2, 3, 4, 5, 6, 7, 8}
	for _, c := range []Config{{Method: Wanda, Sparsity: 0.5}, {Method: Magnitude, Sparsity: 0.5, Pattern: Pattern{2, 4}}} {
		a, _ := Mask(w, Weight{In: in, Out: out}, norm2, c)
		b, _ := Mask(wt, Weight{In: in, Out: out, Transposed: true}, norm2, c)
		za, zb := make([]bool, in*out), make([]bool, in*out)
		for _, k := range a {
			za[k] = true
		}
		for _, k := range b {
			i, j := k%in, k/in
			zb[i*out+j] = true
		}
		if !slices.Equal(za, zb) {
			t.Errorf("%+v: transposed mask differs", c)
		}
	}
}

func TestConfigChecks(t *testing.T) {
	for _, c := range []Config{
		{Method: Wanda, Sparsity: 1},
		{Method: Wanda, Sparsity: -0.01},
		{Method: "x", Sparsity: 0.5},
		{Method: Wanda, Sparsity: 0.4, Pattern: Pattern{2, 4}},
	} {
		if c.Check() == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	if (Config{Method: Magnitude, Sparsity: 0.5, Pattern: Pattern{4, 8}}).Check() != nil {
		t.Error("4:8 at 0.5 refused")
	}
	for _, s := range []string{"3:2", "a:4", "2", "0:4"} {
		if _, err := ParsePattern(s); err == nil {
			t.Errorf("pattern %q accepted", s)
		}
	}
	if p, _ := ParsePattern("2:4"); p != (Pattern{2, 4}) {
		t.Errorf("2:4 parsed as %v", p)
	}
}

func TestSparsityZeroChangesNothing(t *testing.T) {
	idx, err := Mask([]float32{1, 2, 3, 4}, Weight{In: 2, Out: 2}, []float64{1, 1}, Config{Method: Wanda, Sparsity: 0})
	if err != nil || len(idx) != 0 {
		t.Fatalf("sparsity 0 pruned %v (%v)", idx, err)
	}
}

// The selection must pick exactly the set a stable sort would, ties included.
func TestSelectLowestMatchesStableSort(t *testing.T) {
	for trial := 0; trial < 300; trial++ {
		n := 1 + trial%97
		buf := make([]scored, n)
		for i := range buf {
			buf[i] = scored{float64((i*7919 + trial*31) % (3 + trial%11)), i} // many ties
		}
		ref := slices.Clone(buf)
		slices.SortStableFunc(ref, func(a, b scored) int {
			switch {
			case a.score < b.score:
				return -1
			case a.score > b.score:
				return 1
			}
			return 0
		})
		k := trial % (n + 1)
		selectLowest(buf, k)
		got := map[int]bool{}
		for _, s := range buf[:k] {
			got[s.idx] = true
		}
		for _, s := range ref[:k] {
			if !got[s.idx] {
				t.Fatalf("trial %d (n=%d, k=%d): index %d missing from the selection", trial, n, k, s.idx)
			}
		}
	}
}
