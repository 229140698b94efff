package train

import "testing"

func TestLossScalerOverflowAndGrowth(t *testing.T) {
	s, err := LossScaler{Scale: 1024, Interval: 3}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	// Overflow: skip, halve, restart the good-step count.
	s.Good = 2
	if !s.Update(true) || s.Scale != 512 || s.Good != 0 {
		t.Fatalf("overflow: %+v", s)
	}
	// Two good steps: no change; the third grows ×2 and restarts the count.
	for i := 1; i <= 2; i++ {
		if s.Update(false) || s.Scale != 512 || s.Good != i {
			t.Fatalf("good step %d: %+v", i, s)
		}
	}
	if s.Update(false) || s.Scale != 1024 || s.Good != 0 {
		t.Fatalf("growth: %+v", s)
	}
	// The scale never reaches 0 nor overflows float32.
	tiny := LossScaler{Scale: 0x1p-126, Growth: 2, Backoff: 0.5, Interval: 1}
	tiny.Update(true)
	if tiny.Scale != 0x1p-126 {
		t.Fatalf("backoff below the smallest normal: %g", tiny.Scale)
	}
	huge := LossScaler{Scale: 0x1p127, Growth: 2, Backoff: 0.5, Interval: 1}
	huge.Update(false)
	if huge.Scale != 0x1p127 {
		t.Fatalf("growth past float32: %g", huge.Scale)
	}
	if d := DefaultLossScaler(); d.Scale != 65536 || d.Interval != 2000 || d.Growth != 2 || d.Backoff != 0.5 {
		t.Fatalf("defaults %+v", d)
	}
	for _, bad := range []LossScaler{{Scale: -1}, {Backoff: 1}, {Growth: 0.5}, {Interval: -1}} {
		if _, err := bad.withDefaults(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}
