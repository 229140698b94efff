package pipeline

import (
	"fmt"

	"github.com/shears-ml/shears/internal/progress"
)

// Event is one unit of a long stage's work (a training step, a search evaluation); every stage
// reports progress in this one shape, so the CLI draws them all with one bar.
type Event = progress.Event

// ProgressFunc receives a stage's Events (nil: nobody listens).
type ProgressFunc = progress.Func

// calibrationProgress adapts calibrate's per-window callback (stage s of stages, the block it
// calibrates, or -1 for one pass over the whole model) to Events: one bar over every window
// of every stage, labelled by the block ("block 3/8") or "one-shot".
func calibrationProgress(f ProgressFunc) func(stage, stages, block, done, total int) {
	if f == nil {
		return nil
	}
	return func(stage, stages, block, done, total int) {
		label := fmt.Sprintf("block %d/%d", stage+1, stages)
		if block < 0 {
			label = "one-shot"
		}
		f(Event{Stage: label, Done: stage*total + done, Total: stages * total})
	}
}

// importProgress adapts the importer's per-tensor callback to Events (nil when nobody listens).
func (o ImportOptions) importProgress() func(done, total int) {
	if o.Progress == nil {
		return nil
	}
	return func(done, total int) { o.Progress(Event{Stage: "import", Done: done, Total: total, Detail: "tensors"}) }
}
