package nls

import (
	"fmt"
	"math"
)

// Schedule is the learning-rate schedule of a run.
//
// Default (Warmup 0), the reference's NNCF StageLRScheduler: lr(t) = 0.5·lr0·(1 + cos(π·t/T))
// with t the global micro-batch index (0-based) and T = epochs × micro-batches per epoch, no
// warmup; an optimizer step uses the value at its last micro-batch.
//
// Warmup W > 0 is a labelled deviation, Hugging Face's get_cosine_schedule_with_warmup (what
// SQFT uses), per optimizer step s (0-based) of S: lr0·s/W for s < W, then
// 0.5·lr0·(1 + cos(π·(s−W)/(S−W))). As in Hugging Face, the first step has lr 0.
type Schedule struct {
	LR0    float64
	Micro  int // T: micro-batches in the whole run
	Steps  int // S: optimizer steps in the whole run
	Warmup int // W: warmup optimizer steps (0: the reference schedule)
}

// Check validates the schedule.
func (s Schedule) Check() error {
	if !(s.LR0 >= 0) || math.IsInf(s.LR0, 0) {
		return fmt.Errorf("nls: learning rate %v is not a finite non-negative number", s.LR0)
	}
	if s.Micro < 1 || s.Steps < 1 {
		return fmt.Errorf("nls: schedule over %d micro-batches and %d steps", s.Micro, s.Steps)
	}
	if s.Warmup < 0 || s.Warmup >= s.Steps {
		return fmt.Errorf("nls: warmup of %d steps must be in [0, %d) (the run's optimizer steps)", s.Warmup, s.Steps)
	}
	return nil
}

// LR is the learning rate of optimizer step s (0-based) whose last micro-batch is t (0-based).
func (s Schedule) LR(step, lastMicro int) float64 {
	if s.Warmup == 0 {
		return 0.5 * s.LR0 * (1 + math.Cos(math.Pi*float64(lastMicro)/float64(s.Micro)))
	}
	if step < s.Warmup {
		return s.LR0 * float64(step) / float64(s.Warmup)
	}
	p := float64(step-s.Warmup) / float64(max(1, s.Steps-s.Warmup))
	return 0.5 * s.LR0 * (1 + math.Cos(math.Pi*p))
}
