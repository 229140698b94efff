package nls

import (
	"context"
	"fmt"
	"time"

	"github.com/shears-ml/shears/internal/progress"
	"github.com/shears-ml/shears/runtime"
)

// TrainOptions configure a training run on already-loaded inputs (TrainInputs). Start from
// DefaultTrainOptions (the reference's settings). Files, tokenizers and the run directory are
// the caller's (pipeline.Train).
type TrainOptions struct {
	Epochs      int
	LR          float64
	Batch       int // effective batch (sequences per optimizer step)
	MicroBatch  int // sequences per micro-batch; Batch must be a multiple of it
	Seed        uint64
	Warmup      int // optimizer steps of linear warmup (0 = reference: none; > 0 is a deviation)
	WeightDecay float64
	MaxGradNorm float64 // global-norm clip (reference 1.0; 0 disables)
	// Ranks restricts the ranks sampled (nil: the super-network's rank space). One rank is plain
	// LoRA at that rank (every mask fixed).
	Ranks []int

	// CheckpointEvery asks for a checkpoint every N optimizer steps as well as at each epoch end.
	CheckpointEvery int
	// Bucket is the padding granularity (reference collator: multiples of 8) and MaxGraphs the
	// most step graphs kept open. Each graph is one onnxruntime session, and each session holds
	// its own copy of the frozen weights (onnxruntime does not share initializers between
	// sessions), so k graphs cost k × the model's weights in memory. MaxGraphs 0 means auto:
	// DefaultMaxGraphs, or a single graph (every micro-batch padded to the cutoff bucket: more
	// padding work, the weights once) when the weights exceed LargeModelBytes.
	Bucket, MaxGraphs int

	Runtime runtime.Options

	// MaxSteps, when > 0, stops after that many optimizer steps of the run (counted from the
	// start, not from a resume), checkpointing them so that a resume continues there.
	MaxSteps int
	// StopAfter, when > 0, stops after that many optimizer steps of the run (counted from the
	// start, not from a resume) without checkpointing: a simulated kill, for tests.
	StopAfter int
	// Context, when cancelled, stops the run before its next step, checkpointing the steps
	// done (resume continues from there).
	Context context.Context
	// Progress, when set, is told of every optimizer step (Stage "train"; Saved when the
	// step was checkpointed).
	Progress progress.Func
	// Started is when the run's preparation began (loading included); elapsed times count from
	// it. Zero: when Run starts.
	Started time.Time
}

// DefaultTrainOptions are the reference's NLS settings (METHOD §3): 3 epochs, lr 3e-4, batch 16
// as 4 × 4, seed 42, no warmup, no weight decay, clip 1, buckets of 8 tokens.
func DefaultTrainOptions() TrainOptions {
	return TrainOptions{Epochs: 3, LR: 3e-4, Batch: 16, MicroBatch: 4, Seed: 42, MaxGradNorm: 1, Bucket: 8}
}

// DefaultMaxGraphs is the number of step graphs of an automatic MaxGraphs for models of at
// most LargeModelBytes of weights.
const DefaultMaxGraphs = 4

// LargeModelBytes is the weight size above which an automatic MaxGraphs is 1 (one session,
// one copy of the weights in memory).
const LargeModelBytes = 1 << 30

// AutoMaxGraphs is the automatic MaxGraphs for a model with the given weight bytes.
func AutoMaxGraphs(weightBytes int64) int {
	if weightBytes > LargeModelBytes {
		return 1
	}
	return DefaultMaxGraphs
}

// Check validates the options; callers check before they load anything.
func (o TrainOptions) Check() error {
	switch {
	case o.Epochs < 1:
		return fmt.Errorf("nls: train: epochs %d: need at least 1", o.Epochs)
	case o.MicroBatch < 1 || o.Batch < 1 || o.Batch%o.MicroBatch != 0:
		return fmt.Errorf("nls: train: batch %d must be a positive multiple of the micro-batch %d", o.Batch, o.MicroBatch)
	case o.Warmup < 0:
		return fmt.Errorf("nls: train: warmup %d is negative", o.Warmup)
	case !(o.WeightDecay >= 0):
		return fmt.Errorf("nls: train: weight decay %v is negative", o.WeightDecay)
	case !(o.MaxGradNorm >= 0):
		return fmt.Errorf("nls: train: max grad norm %v is negative", o.MaxGradNorm)
	case o.MaxSteps < 0:
		return fmt.Errorf("nls: train: max-steps %d is negative", o.MaxSteps)
	case o.CheckpointEvery < 0:
		return fmt.Errorf("nls: train: checkpoint-every %d is negative", o.CheckpointEvery)
	case o.Bucket < 1:
		return fmt.Errorf("nls: train: bucket %d: need at least 1", o.Bucket)
	case o.MaxGraphs < 0:
		return fmt.Errorf("nls: train: max-graphs %d: need at least 1 (or 0 for auto)", o.MaxGraphs)
	}
	return o.Runtime.Validate()
}

// Result summarises what one call of Trainer.Run did.
type Result struct {
	Steps       int           `json:"steps"`        // optimizer steps done
	Total       int           `json:"total_steps"`  // of the run
	ResumedFrom int           `json:"resumed_from"` // steps already done when this call started
	Stopped     bool          `json:"stopped"`
	Interrupted bool          `json:"interrupted,omitempty"` // stopped by the Context (a signal), not by MaxSteps
	Tokens      int64         `json:"tokens"`                // non-pad tokens processed in this call
	TokensPerS  float64       `json:"tokens_per_s"`
	Elapsed     time.Duration `json:"-"`
	Buckets     []int         `json:"buckets"` // padded lengths of the step graphs
}
