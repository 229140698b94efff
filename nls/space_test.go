package nls

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/shears-ml/shears/transform/lora"
)

func testMeta(groups int) *lora.Meta {
	m := &lora.Meta{Ranks: []int{32, 24, 16}, RMax: 32}
	for i := 0; i < groups; i++ {
		n := "layers." + string(rune('0'+i/3)) + "." + []string{"qkv", "up", "down"}[i%3]
		m.Groups = append(m.Groups, lora.Group{Name: n, Mask: "lora_rank_mask." + n})
	}
	return m
}

// Sample draws each group's rank by hand: PCG(seed ^ "ranks", t), one IntN(3) per group in
// order. Pinned values guard resume compatibility across versions.
func TestSampleByHand(t *testing.T) {
	sp, err := testMeta(6).Space(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []int{0, 1, 17} {
		rng := rand.New(rand.NewPCG(42^streamRanks, uint64(tt)))
		var want []int
		for range 6 {
			want = append(want, []int{32, 24, 16}[rng.IntN(3)])
		}
		if got := Sample(sp, 42, tt); !slices.Equal(got, want) {
			t.Fatalf("t=%d: %v, want %v", tt, got, want)
		}
	}
	if a, b := Sample(sp, 42, 5), Sample(sp, 42, 5); !slices.Equal(a, b) {
		t.Fatal("Sample is not a function of (seed, t)")
	}
	if got := sp.Heuristic()["layers.1.down"]; got != 24 {
		t.Fatalf("heuristic rank %d, want 24", got)
	}
}

// Over many micro-batches each group's rank is uniform (chi-square, 2 dof), pairs of groups are
// independent (chi-square on the 3×3 table, 4 dof), and consecutive micro-batches differ.
func TestSampleUniformIndependent(t *testing.T) {
	sp, err := testMeta(15).Space(nil)
	if err != nil {
		t.Fatal(err)
	}
	const n = 6000
	idx := map[int]int{32: 0, 24: 1, 16: 2}
	counts := make([][3]int, 15)
	var joint [3][3]int
	same := 0
	var prev []int
	for tt := 0; tt < n; tt++ {
		rs := Sample(sp, 7, tt)
		for g, r := range rs {
			counts[g][idx[r]]++
		}
		joint[idx[rs[0]]][idx[rs[1]]]++
		if tt > 0 && slices.Equal(rs, prev) {
			same++
		}
		prev = rs
	}
	// 99.9% quantiles: χ²(2) 13.8, χ²(4) 18.5.
	for g, c := range counts {
		var chi float64
		for _, o := range c {
			chi += math.Pow(float64(o)-n/3.0, 2) / (n / 3.0)
		}
		if chi > 13.8 {
			t.Errorf("group %d counts %v: χ² %.1f, not uniform", g, c, chi)
		}
	}
	var chi float64
	for i := range joint {
		for j := range joint[i] {
			chi += math.Pow(float64(joint[i][j])-n/9.0, 2) / (n / 9.0)
		}
	}
	if chi > 18.5 {
		t.Errorf("groups 0 and 1 joint %v: χ² %.1f, not independent", joint, chi)
	}
	if same > 2 { // P(equal) = 3^-15 per pair
		t.Errorf("%d consecutive micro-batches drew identical configurations", same)
	}
}

func TestSingleRankAndBadRanks(t *testing.T) {
	sp, err := testMeta(4).Space([]int{32})
	if err != nil {
		t.Fatal(err)
	}
	for tt := 0; tt < 10; tt++ {
		if got := Sample(sp, 1, tt); !slices.Equal(got, []int{32, 32, 32, 32}) {
			t.Fatalf("single rank: %v", got)
		}
	}
	sp, err = testMeta(1).Space([]int{8, 16})
	if err != nil || !slices.Equal(sp.Ranks, []int{16, 8}) {
		t.Fatalf("ranks %v sorted descending: %v", sp.Ranks, err)
	}
	for _, bad := range [][]int{{40}, {0}, {16, 16}} {
		if _, err := testMeta(1).Space(bad); err == nil || !strings.Contains(err.Error(), "rank") {
			t.Errorf("ranks %v: %v", bad, err)
		}
	}
}

func TestOrderAndKeepMask(t *testing.T) {
	a, b := Order(3, 0, 50), Order(3, 1, 50)
	if slices.Equal(a, b) {
		t.Fatal("epochs 0 and 1 have the same order")
	}
	s := slices.Clone(a)
	slices.Sort(s)
	for i, v := range s {
		if v != i {
			t.Fatalf("order is not a permutation: %v", a)
		}
	}
	if !slices.Equal(a, Order(3, 0, 50)) {
		t.Fatal("Order is not a function of (seed, epoch)")
	}

	keep := make([]float32, 100000)
	KeepMask(keep, 0.1, 9, 4, "q")
	var kept int
	for _, v := range keep {
		switch v {
		case 0:
		case float32(1 / 0.9):
			kept++
		default:
			t.Fatalf("keep value %v, want 0 or 1/0.9", v)
		}
	}
	// 90% kept ± 5σ (σ = √(n·p·(1−p)) ≈ 95).
	if !(math.Abs(float64(kept)-90000) <= 475) {
		t.Fatalf("kept %d of 100000, want ~90000", kept)
	}
	again := make([]float32, len(keep))
	KeepMask(again, 0.1, 9, 4, "q")
	other := make([]float32, len(keep))
	KeepMask(other, 0.1, 9, 4, "k")
	if !slices.Equal(keep, again) || slices.Equal(keep, other) {
		t.Fatal("keep masks must repeat for (seed, t, module) and differ across modules")
	}
	KeepMask(other, 0, 9, 4, "k")
	if slices.ContainsFunc(other, func(v float32) bool { return v != 1 }) {
		t.Fatal("p = 0 must keep everything")
	}
}

// The cosine schedule against hand values: lr0 = 1, T = 8 micro-batches, 2 steps of 4.
func TestSchedule(t *testing.T) {
	s := Schedule{LR0: 1, Micro: 8, Steps: 2}
	for _, c := range []struct {
		step, t int
		want    float64
	}{
		{0, 0, 1},
		{0, 3, 0.5 * (1 + math.Cos(3*math.Pi/8))}, // 0.6913417
		{1, 4, 0.5},
		{1, 7, 0.5 * (1 + math.Cos(7*math.Pi/8))}, // 0.0380602
	} {
		if got := s.LR(c.step, c.t); !(math.Abs(got-c.want) <= 1e-15) {
			t.Errorf("LR(step %d, t %d) = %v, want %v", c.step, c.t, got, c.want)
		}
	}
	if got := s.LR(0, 3); !(math.Abs(got-0.69134171618) <= 1e-10) {
		t.Errorf("step-1 lr %v", got)
	}
	// HF warmup (deviation): 10 steps, 2 of warmup: 0, 0.5, then cosine over the 8 left.
	w := Schedule{LR0: 2, Micro: 40, Steps: 10, Warmup: 2}
	for step, want := range map[int]float64{0: 0, 1: 1, 2: 2, 6: 1, 9: 1 + math.Cos(7*math.Pi/8)} {
		if got := w.LR(step, 999); !(math.Abs(got-want) <= 1e-12) {
			t.Errorf("warmup LR(step %d) = %v, want %v", step, got, want)
		}
	}
	if err := (Schedule{LR0: 1, Micro: 4, Steps: 2, Warmup: 2}).Check(); err == nil {
		t.Error("warmup covering every step accepted")
	}
}

func TestChooseBuckets(t *testing.T) {
	var ls []int
	add := func(l, n int) {
		for range n {
			ls = append(ls, l)
		}
	}
	add(8, 10)
	add(16, 1)
	add(24, 1)
	add(64, 5)
	// With 2 buckets: {8,64} costs 8·10 + 64·7 = 528 < {16,64} 560 < {24,64} 608.
	if got := ChooseBuckets(ls, 2); !slices.Equal(got, []int{8, 64}) {
		t.Fatalf("2 buckets: %v", got)
	}
	// With 3: {8,24,64} = 80 + 48 + 320 = 448 beats {8,16,64} = 80 + 16 + 384 = 480.
	if got := ChooseBuckets(ls, 3); !slices.Equal(got, []int{8, 24, 64}) {
		t.Fatalf("3 buckets: %v", got)
	}
	if got := ChooseBuckets(ls, 4); !slices.Equal(got, []int{8, 16, 24, 64}) {
		t.Fatalf("4 buckets: %v", got)
	}
	if got := ChooseBuckets(ls, 1); !slices.Equal(got, []int{64}) {
		t.Fatalf("1 bucket: %v", got)
	}
	if b, err := bucketFor([]int{8, 64}, 16); err != nil || b != 64 {
		t.Fatalf("bucket for 16: %d %v", b, err)
	}
	if _, err := bucketFor([]int{8, 64}, 72); err == nil {
		t.Fatal("a length over the largest bucket accepted")
	}
}

// 22 sequences, micro-batches of 4, steps of 2: 6 micro-batches per epoch (the last with 2
// rows), 3 steps per epoch (each of 2 micro-batches).
func TestLayout(t *testing.T) {
	l := newLayout(22, 4, 2, 2, 5)
	if l.M != 6 || l.S != 3 || l.steps() != 6 || l.micros() != 12 {
		t.Fatalf("layout %+v", l)
	}
	for s, want := range [][3]int{{0, 0, 2}, {0, 2, 4}, {0, 4, 6}, {1, 6, 8}, {1, 8, 10}, {1, 10, 12}} {
		e, t0, t1 := l.stepMicros(s)
		if [3]int{e, t0, t1} != want {
			t.Errorf("step %d: %d %d %d, want %v", s, e, t0, t1, want)
		}
	}
	if len(l.rows(5)) != 2 || len(l.rows(6)) != 4 || l.rows(6)[0] != Order(5, 1, 22)[0] {
		t.Fatalf("rows: %v %v", l.rows(5), l.rows(6))
	}
	// 5 micro-batches per epoch with steps of 4: a full step and a step of 1.
	l = newLayout(20, 4, 4, 1, 5)
	if _, t0, t1 := l.stepMicros(1); l.S != 2 || t0 != 4 || t1 != 5 {
		t.Fatalf("short last step: %d..%d of %d steps", t0, t1, l.S)
	}
}
