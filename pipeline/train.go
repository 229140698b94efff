package pipeline

import "github.com/shears-ml/shears/nls"

// ResumeTrainOptions fills t for "shears train --resume --out RUN_DIR" from t.Out's run.json:
// the super-network always, and every option whose flag changed (by its CLI name: data,
// tokenizer, epochs, lr, ...) reports false for. A flag the user set keeps its value; nls.Train
// then checks it agrees with the run.
func ResumeTrainOptions(t *nls.TrainOptions, changed func(flag string) bool) error {
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
