package nls

import (
	"context"
	"fmt"
	"time"

	"github.com/shears-ml/shears/internal/progress"
	"github.com/shears-ml/shears/runtime"
)

// TrainOptions configure Train. Start from DefaultTrainOptions (the reference's settings) and
// set the paths.
type TrainOptions struct {
	Super     string // the super-network from "shears adapt" (lora metadata required)
	Data      string // training data (data.TrainSequences: LLM-Adapters .json, .jsonl or text)
	Tokenizer string // tokenizer.Load path; "" when every record of Data is pre-tokenized ({"ids": [...]})
	Out       string // run directory (created; with Resume it must hold run.json)

	Epochs        int
	LR            float64
	Batch         int // effective batch (sequences per optimizer step)
	MicroBatch    int // sequences per micro-batch; Batch must be a multiple of it
	Cutoff        int // tokens per sequence at most (reference 256)
	TrainOnInputs bool
	Seed          uint64
	Warmup        int // optimizer steps of linear warmup (0 = reference: none; > 0 is a deviation)
	WeightDecay   float64
	MaxGradNorm   float64 // global-norm clip (reference 1.0; 0 disables)
	// Ranks restricts the ranks sampled (nil: the super-network's rank space). One rank is plain
	// LoRA at that rank (every mask fixed).
	Ranks []int

	// CheckpointEvery writes a checkpoint every N optimizer steps as well as at each epoch end.
	// It is stored in run.json; on Resume, 0 keeps the run's value.
	CheckpointEvery int
	// Bucket is the padding granularity (reference collator: multiples of 8) and MaxGraphs the
	// most step graphs kept open. Each graph is one onnxruntime session, and each session holds
	// its own copy of the frozen weights (onnxruntime does not share initializers between
	// sessions), so k graphs cost k × the model's weights in memory. MaxGraphs 0 means auto:
	// DefaultMaxGraphs, or a single graph (every micro-batch padded to the cutoff bucket: more
	// padding work, the weights once) when the weights exceed LargeModelBytes.
	Bucket, MaxGraphs int

	Runtime runtime.Options
	// Resume continues the run in Out from its checkpoint. The options must equal run.json's in
	// everything that changes the numbers (paths, hyper-parameters, seed, ranks, buckets).
	Resume bool

	// MaxSteps, when > 0, stops after that many optimizer steps of the run (counted from the
	// start, not from a resume), writing a checkpoint of them so that Resume continues there.
	MaxSteps int
	// StopAfter, when > 0, stops after that many optimizer steps of the run (counted from the
	// start, not from a resume) without writing anything more: a simulated kill, for tests.
	StopAfter int
	// Context, when cancelled, stops the run before its next step, writing a checkpoint of the
	// steps done (resume continues from there).
	Context context.Context
	// Progress, when set, is told of every optimizer step (Stage "train"; Saved when the
	// step was checkpointed).
	Progress progress.Func
}

// DefaultTrainOptions are the reference's NLS settings (METHOD §3): 3 epochs, lr 3e-4, batch 16
// as 4 × 4, cutoff 256, loss on prompt and response, seed 42, no warmup, no weight decay, clip 1.
func DefaultTrainOptions() TrainOptions {
	return TrainOptions{Epochs: 3, LR: 3e-4, Batch: 16, MicroBatch: 4, Cutoff: 256, TrainOnInputs: true,
		Seed: 42, MaxGradNorm: 1, Bucket: 8}
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

func (o TrainOptions) check() error {
	switch {
	case o.Super == "":
		return fmt.Errorf("nls: train: no super-network given")
	case o.Data == "":
		return fmt.Errorf("nls: train: no training data given")
	case o.Out == "":
		return fmt.Errorf("nls: train: no run directory given")
	case o.Epochs < 1:
		return fmt.Errorf("nls: train: epochs %d: need at least 1", o.Epochs)
	case o.MicroBatch < 1 || o.Batch < 1 || o.Batch%o.MicroBatch != 0:
		return fmt.Errorf("nls: train: batch %d must be a positive multiple of the micro-batch %d", o.Batch, o.MicroBatch)
	case o.Cutoff < 2:
		return fmt.Errorf("nls: train: cutoff %d: need at least 2 tokens", o.Cutoff)
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

// Result summarises a finished (or stopped) run.
type Result struct {
	Dir         string        `json:"dir"`
	Steps       int           `json:"steps"`        // optimizer steps done
	Total       int           `json:"total_steps"`  // of the run
	ResumedFrom int           `json:"resumed_from"` // steps already done when this call started
	Stopped     bool          `json:"stopped"`
	Interrupted bool          `json:"interrupted,omitempty"` // stopped by the Context (a signal), not by MaxSteps
	FirstLoss   float64       `json:"first_loss"`            // mean loss of the run's first step (from metrics.jsonl)
	LastLoss    float64       `json:"last_loss"`             // of the last step
	Tokens      int64         `json:"tokens"`                // non-pad tokens processed in this call
	TokensPerS  float64       `json:"tokens_per_s"`
	Elapsed     time.Duration `json:"-"`
	Buckets     []int         `json:"buckets"` // padded lengths of the step graphs
	Adapter     string        `json:"adapter,omitempty"`
	Plot        string        `json:"plot,omitempty"`
}
