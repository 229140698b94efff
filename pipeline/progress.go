package pipeline

import "github.com/shears-ml/shears/internal/progress"

// Event is one unit of a long stage's work (a training step, a search evaluation); every stage
// reports progress in this one shape, so the CLI draws them all with one bar.
type Event = progress.Event

// ProgressFunc receives a stage's Events (nil: nobody listens).
type ProgressFunc = progress.Func
