package train

import (
	"fmt"
	"math"
)

// LossScaler is dynamic loss scaling for a float16 backward (the standard scheme of mixed
// precision training, as torch.cuda.amp.GradScaler): the loss is multiplied by Scale before the
// backward pass so that small gradients survive float16's range, the gradients are divided by
// Scale in float32 on the host, and a step whose scaled gradients hold an inf or NaN is skipped
// with the scale multiplied by Backoff; after Interval good steps in a row the scale is
// multiplied by Growth. The state (Scale, Good) is what a checkpoint must keep.
type LossScaler struct {
	Scale    float64 `json:"scale"`           // current scale
	Growth   float64 `json:"growth"`          // factor after Interval good steps
	Backoff  float64 `json:"backoff"`         // factor after an overflow
	Interval int     `json:"growth_interval"` // good steps before growing
	Good     int     `json:"good_steps"`      // good steps since the last change
}

// DefaultLossScaler is torch's GradScaler default: 2^16, ×2 after 2000 good steps, ×½ on overflow.
func DefaultLossScaler() LossScaler {
	return LossScaler{Scale: 65536, Growth: 2, Backoff: 0.5, Interval: 2000}
}

func (s LossScaler) withDefaults() (LossScaler, error) {
	d := DefaultLossScaler()
	if s.Scale == 0 {
		s.Scale = d.Scale
	}
	if s.Growth == 0 {
		s.Growth = d.Growth
	}
	if s.Backoff == 0 {
		s.Backoff = d.Backoff
	}
	if s.Interval == 0 {
		s.Interval = d.Interval
	}
	switch {
	case !(s.Scale > 0) || math.IsInf(s.Scale, 0):
		return s, fmt.Errorf("loss scale %v is not a positive finite number", s.Scale)
	case !(s.Growth >= 1) || math.IsInf(s.Growth, 0):
		return s, fmt.Errorf("loss-scale growth %v must be ≥ 1", s.Growth)
	case !(s.Backoff > 0 && s.Backoff < 1):
		return s, fmt.Errorf("loss-scale backoff %v must be in (0, 1)", s.Backoff)
	case s.Interval < 1 || s.Good < 0:
		return s, fmt.Errorf("loss-scale growth interval %d (good steps %d) must be positive", s.Interval, s.Good)
	}
	return s, nil
}

// Update records one optimizer step's outcome and reports whether to skip it: on overflow the
// scale backs off (never below the smallest positive float32 normal, so it cannot reach 0) and
// the good-step count restarts; otherwise after Interval good steps the scale grows (never past
// float32's largest power of two).
func (s *LossScaler) Update(overflow bool) (skip bool) {
	if overflow {
		s.Scale = math.Max(s.Scale*s.Backoff, 0x1p-126)
		s.Good = 0
		return true
	}
	s.Good++
	if s.Good >= s.Interval {
		s.Scale = math.Min(s.Scale*s.Growth, 0x1p127)
		s.Good = 0
	}
	return false
}
