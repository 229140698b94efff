package pipeline

import (
	"fmt"
	"path/filepath"

	"github.com/shears-ml/shears/nls"
)

// TrainOptions are the train stage's options (the flags of "shears train"); start from
// DefaultTrainOptions, the reference's settings.
type TrainOptions = nls.TrainOptions

// DefaultTrainOptions are the reference's NLS settings (METHOD §3).
func DefaultTrainOptions() TrainOptions { return nls.DefaultTrainOptions() }

// TrainReport is what a training call did, with the run's layout from run.json. Its JSON is
// the "shears train --json" document.
type TrainReport struct {
	*nls.Result
	ElapsedS  float64 `json:"elapsed_s"`
	Super     string  `json:"config"` // the super-network trained (historical key)
	Metrics   string  `json:"metrics"`
	Epochs    int     `json:"epochs"`
	Ranks     []int   `json:"ranks"`
	Sequences int     `json:"sequences"`
	// TrainS is the run's training time, resumes included (metrics.jsonl's last elapsed_s).
	TrainS float64 `json:"train_seconds"`
	// Run is the run's run.json (for the summary; not repeated in the JSON).
	Run *nls.RunConfig `json:"-"`
}

// Train trains the elastic adapters of o.Super with NLS into the run directory o.Out (or
// resumes it). A run stopped by o.MaxSteps or o.Context returns its report with Stopped set
// (Interrupted for the Context) and no error.
func Train(o TrainOptions) (*TrainReport, error) {
	if o.Out == "" {
		return nil, fmt.Errorf("%w: no run directory given", ErrUsage)
	}
	res, err := nls.Train(o)
	if err != nil {
		return nil, err
	}
	rep := &TrainReport{Result: res, ElapsedS: res.Elapsed.Seconds(), Metrics: filepath.Join(res.Dir, nls.MetricsFile)}
	if rep.Run, err = nls.ReadRunConfig(res.Dir); err != nil {
		return nil, err
	}
	recs, err := nls.ReadMetrics(res.Dir)
	if err != nil {
		return nil, err
	}
	if len(recs) > 0 {
		rep.TrainS = recs[len(recs)-1].ElapsedS
	}
	rep.Super, rep.Epochs, rep.Ranks, rep.Sequences = rep.Run.Super, rep.Run.Hyper.Epochs, rep.Run.Hyper.Ranks, rep.Run.Sequences
	return rep, nil
}

// ResumeTrainOptions fills t for "shears train --resume --out RUN_DIR" from t.Out's run.json:
// the super-network always, and every option whose flag changed (by its CLI name: data,
// tokenizer, epochs, lr, ...) reports false for. A flag the user set keeps its value; Train
// then checks it agrees with the run.
func ResumeTrainOptions(t *TrainOptions, changed func(flag string) bool) error {
	c, err := nls.ReadRunConfig(t.Out)
	if err != nil {
		return err
	}
	h := c.Hyper
	t.Super = c.Super
	set := func(flag string, apply func()) {
		if !changed(flag) {
			apply()
		}
	}
	set("data", func() { t.Data = c.Data })
	set("tokenizer", func() { t.Tokenizer = c.Tokenizer })
	set("epochs", func() { t.Epochs = h.Epochs })
	set("lr", func() { t.LR = h.LR })
	set("batch", func() { t.Batch = h.Batch })
	set("micro-batch", func() { t.MicroBatch = h.MicroBatch })
	set("cutoff", func() { t.Cutoff = h.Cutoff })
	set("seed", func() { t.Seed = h.Seed })
	set("warmup", func() { t.Warmup = h.Warmup })
	set("weight-decay", func() { t.WeightDecay = h.WeightDecay })
	set("max-grad-norm", func() { t.MaxGradNorm = h.MaxGradNorm })
	set("ranks", func() { t.Ranks = h.Ranks })
	set("train-on-inputs", func() { t.TrainOnInputs = h.TrainOnInputs })
	set("bucket", func() { t.Bucket = h.Bucket })
	set("max-graphs", func() { t.MaxGraphs = h.MaxGraphs })
	return nil
}
