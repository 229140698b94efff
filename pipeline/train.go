package pipeline

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/shears-ml/shears/data"
	"github.com/shears-ml/shears/internal/dirlock"
	"github.com/shears-ml/shears/nls"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/tokenizer"
	"github.com/shears-ml/shears/transform/lora"
)

// TrainOptions are the train stage's options (the flags of "shears train"): the files and
// the data reading here, the algorithm's options (nls.TrainOptions) embedded. Start from
// DefaultTrainOptions, the reference's settings.
type TrainOptions struct {
	Super     string // the super-network from "shears adapt" (lora metadata required)
	Data      string // training data (data.TrainSequences: LLM-Adapters .json, .jsonl or text)
	Tokenizer string // tokenizer.Load path; "" when every record of Data is pre-tokenized ({"ids": [...]})
	Out       string // run directory (created; with Resume it must hold run.json)

	Cutoff        int // tokens per sequence at most (reference 256)
	TrainOnInputs bool

	// Resume continues the run in Out from its checkpoint. The options must equal run.json's in
	// everything that changes the numbers (paths, hyper-parameters, seed, ranks, buckets); a
	// CheckpointEvery of 0 keeps the run's.
	Resume bool

	nls.TrainOptions
}

// DefaultTrainOptions are the reference's NLS settings (METHOD §3): 3 epochs, lr 3e-4, batch 16
// as 4 × 4, cutoff 256, loss on prompt and response, seed 42, no warmup, no weight decay, clip 1.
func DefaultTrainOptions() TrainOptions {
	return TrainOptions{Cutoff: 256, TrainOnInputs: true, TrainOptions: nls.DefaultTrainOptions()}
}

// TrainReport is what a training call did, with the run's layout from run.json. Its JSON is
// the "shears train --json" document.
type TrainReport struct {
	*nls.Result
	Dir       string  `json:"dir"`
	FirstLoss float64 `json:"first_loss"` // mean loss of the run's first step (from metrics.jsonl)
	LastLoss  float64 `json:"last_loss"`  // of the last step
	Adapter   string  `json:"adapter,omitempty"`
	Plot      string  `json:"plot,omitempty"`
	ElapsedS  float64 `json:"elapsed_s"`
	Super     string  `json:"config"` // the super-network trained (historical key)
	Metrics   string  `json:"metrics"`
	Epochs    int     `json:"epochs"`
	Ranks     []int   `json:"ranks"`
	Sequences int     `json:"sequences"`
	// TrainS is the run's training time, resumes included (metrics.jsonl's last elapsed_s).
	TrainS float64 `json:"train_seconds"`
	// Run is the run's run.json (for the summary; not repeated in the JSON).
	Run *RunConfig `json:"-"`
}

func (o *TrainOptions) check() error {
	switch {
	case o.Super == "":
		return fmt.Errorf("train: no super-network given")
	case o.Data == "":
		return fmt.Errorf("train: no training data given")
	case o.Out == "":
		return fmt.Errorf("%w: no run directory given", ErrUsage)
	case o.Cutoff < 2:
		return fmt.Errorf("train: cutoff %d: need at least 2 tokens", o.Cutoff)
	}
	return o.TrainOptions.Check()
}

// Train trains the elastic adapters of o.Super with NLS into the run directory o.Out, or
// resumes it: it prepares the inputs (super-network, tokenizer, sequences, digests, run.json),
// runs nls's training loop with the run directory as its store (metrics, samples,
// checkpoints) and finishes with the adapter and the loss plot. A run stopped by o.MaxSteps or
// o.Context returns its report with Stopped set (Interrupted for the Context) and no error.
func Train(o TrainOptions) (rep *TrainReport, err error) {
	o.Started = time.Now()
	if err := o.check(); err != nil {
		return nil, err
	}
	for _, p := range []*string{&o.Super, &o.Data, &o.Tokenizer, &o.Out} {
		if *p == "" {
			continue // no tokenizer: pre-tokenized data
		}
		if *p, err = filepath.Abs(*p); err != nil {
			return nil, fmt.Errorf("train: %w", err)
		}
	}
	fi, err := os.Stat(o.Super)
	if err != nil {
		return nil, fmt.Errorf("train: super-network: %w", err)
	}
	m, err := onnx.Load(o.Super)
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	defer m.Close()
	g, meta, err := nls.TrainGraph(m)
	if err != nil {
		return nil, err
	}
	space, err := meta.Space(o.Ranks)
	if err != nil {
		return nil, fmt.Errorf("train: %s: %w", o.Super, err)
	}
	digests, err := inputDigests(g, o.Data, o.Tokenizer)
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	// One process per run directory, held until Train returns (issue 14 case 7).
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	lock, err := dirlock.Acquire(o.Out, "shears train")
	if err != nil {
		return nil, fmt.Errorf("train: run directory %w", err)
	}
	defer lock.Release()
	var old *RunConfig
	if o.Resume {
		// Checked before the data is read: a resume over changed inputs would silently train
		// something else (issue 14 case 6: a loss jumping from 4.2 to 10.5).
		if old, err = ReadRunConfig(o.Out); err != nil {
			return nil, err
		}
		if err := checkDigests(old.Inputs, digests); err != nil {
			return nil, fmt.Errorf("resume %s: %w", o.Out, err)
		}
		if o.CheckpointEvery == 0 {
			o.CheckpointEvery = old.CheckpointEvery
		}
	}
	tok, err := trainTokenizer(o.Tokenizer, o.Data)
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	seqs, err := data.TrainSequences(o.Data, tok, data.TrainOptions{Cutoff: o.Cutoff, TrainOnInputs: o.TrainOnInputs})
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	tr, err := nls.NewTrainer(nls.TrainInputs{Graph: g, Meta: meta, Space: space, Seqs: seqs, Pad: tok.Pad()}, o.TrainOptions)
	if err != nil {
		return nil, err
	}
	defer tr.Close()
	cfg := newRunConfig(o, fi.Size(), digests, meta, space, tr.Layout)
	st, err := beginRun(o, old, cfg, tr)
	if err != nil {
		return nil, err
	}
	res, err := tr.Run(st)
	if cerr := st.close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	return finishRun(o, cfg, res, tr, meta, space)
}

// newRunConfig is run.json of a run with these options and inputs, laid out as l.
func newRunConfig(o TrainOptions, superSize int64, digests []InputDigest, meta *lora.Meta, space *lora.Space, l nls.Layout) *RunConfig {
	cfg := &RunConfig{
		Version: RunVersion, Shears: buildVersion(), Super: o.Super, SuperSize: superSize, Data: o.Data, Tokenizer: o.Tokenizer,
		Inputs: digests, CheckpointEvery: o.CheckpointEvery,
		Hyper: Hyper{Epochs: o.Epochs, LR: o.LR, Batch: o.Batch, MicroBatch: o.MicroBatch, Accumulation: l.Accumulation, Cutoff: o.Cutoff,
			TrainOnInputs: o.TrainOnInputs, Seed: o.Seed, Warmup: o.Warmup, WeightDecay: o.WeightDecay, MaxGradNorm: o.MaxGradNorm,
			Ranks: space.Ranks, Bucket: o.Bucket, MaxGraphs: l.MaxGraphs, Beta1: l.AdamW.Beta1, Beta2: l.AdamW.Beta2, Eps: l.AdamW.Eps},
		RankSpace: meta.Ranks, RMax: meta.RMax, Alpha: meta.Alpha, Scale: meta.Scale, Dropout: meta.Dropout,
		Groups: space.Groups, Modules: len(meta.Modules), Params: l.Params,
		Sequences: l.Sequences, MicroPerEpoch: l.MicroPerEpoch, StepsPerEpoch: l.StepsPerEpoch, TotalMicro: l.TotalMicro, TotalSteps: l.TotalSteps,
		Buckets: l.Buckets, PaddedTokens: l.PaddedTokens, RealTokens: l.RealTokens,
		Schedule: l.Schedule, Deviations: l.Deviations, Device: o.Runtime.Device, Threads: o.Runtime.Threads,
	}
	if cfg.Device == "" {
		cfg.Device = "cpu"
	}
	return cfg
}

// beginRun readies the run directory: a new run's run.json (refusing a directory that holds
// one), or a resumed run's agreement with run.json, its checkpoint restored into tr and the
// records written after that checkpoint dropped (they are replayed). It returns the store the
// loop writes to.
func beginRun(o TrainOptions, old, cfg *RunConfig, tr *nls.Trainer) (*runStore, error) {
	runPath := filepath.Join(o.Out, RunFile)
	ckPath := filepath.Join(o.Out, CheckpointFile)
	steps := 0
	if o.Resume {
		if d := diffRun(old, cfg); len(d) > 0 {
			return nil, fmt.Errorf("resume %s: the options differ from the run's: %v", o.Out, d)
		}
		if old.CheckpointEvery != cfg.CheckpointEvery || (old.Inputs == nil && cfg.Inputs != nil) {
			// Not a number-changing option: the run keeps going with the new value.
			old.CheckpointEvery = cfg.CheckpointEvery
			if old.Inputs == nil {
				old.Inputs = cfg.Inputs
			}
			if err := writeJSONAtomic(runPath, old); err != nil {
				return nil, err
			}
		}
		if _, err := os.Stat(ckPath); err == nil {
			s, err := readCheckpoint(ckPath)
			if err != nil {
				return nil, err
			}
			if err := tr.Restore(s); err != nil {
				return nil, fmt.Errorf("%s: %w", ckPath, err)
			}
			steps = s.Steps
		}
		// Records written after the checkpoint (a kill between checkpoints) are replayed.
		for _, f := range []string{MetricsFile, SamplesFile} {
			if err := truncateJSONL(filepath.Join(o.Out, f), steps); err != nil {
				return nil, err
			}
		}
	} else {
		if _, err := os.Stat(runPath); err == nil {
			return nil, fmt.Errorf("train: %s: %w", o.Out, ErrRunExists)
		}
		for _, f := range []string{MetricsFile, SamplesFile, CheckpointFile, AdapterFile, PlotFile} {
			os.Remove(filepath.Join(o.Out, f))
		}
		if err := writeJSONAtomic(runPath, cfg); err != nil {
			return nil, err
		}
	}
	return openRunStore(o.Out)
}

// finishRun reports the run and, when it reached its end, writes the adapter and the loss plot.
func finishRun(o TrainOptions, cfg *RunConfig, res *nls.Result, tr *nls.Trainer, meta *lora.Meta, space *lora.Space) (*TrainReport, error) {
	rep := &TrainReport{Result: res, Dir: o.Out, ElapsedS: res.Elapsed.Seconds(), Metrics: filepath.Join(o.Out, MetricsFile), Run: cfg,
		Super: cfg.Super, Epochs: cfg.Hyper.Epochs, Ranks: cfg.Hyper.Ranks, Sequences: cfg.Sequences}
	recs, err := ReadMetrics(o.Out)
	if err != nil {
		return nil, err
	}
	if len(recs) > 0 {
		rep.FirstLoss, rep.LastLoss = recs[0].Loss, recs[len(recs)-1].Loss
		rep.TrainS = recs[len(recs)-1].ElapsedS
	}
	if res.Stopped {
		return rep, nil
	}
	rep.Adapter = filepath.Join(o.Out, AdapterFile)
	if err := writeAdapter(rep.Adapter, tr.Adapter(), meta, res.Steps); err != nil {
		return nil, err
	}
	rep.Plot = filepath.Join(o.Out, PlotFile)
	title := fmt.Sprintf("NLS %s: ranks %v, %d epochs, lr %g", filepath.Base(o.Super), space.Ranks, o.Epochs, o.LR)
	if err := PlotLoss(rep.Plot, title, recs); err != nil {
		return nil, err
	}
	return rep, nil
}

// trainTokenizer loads path, or with no path checks that every record of the training data is
// pre-tokenized ({"ids": [...]} lines of a .jsonl file) and returns a tokenizer that only pads
// (id 0; padded positions are masked from the loss, so the id does not matter).
func trainTokenizer(path, dataPath string) (tokenizer.Tokenizer, error) {
	if path != "" {
		return tokenizer.Load(path)
	}
	if !strings.EqualFold(filepath.Ext(dataPath), ".jsonl") {
		return nil, fmt.Errorf("no tokenizer given: training without one needs pre-tokenized .jsonl data ({\"ids\": [...]} records), %s is not .jsonl", dataPath)
	}
	docs, err := data.ReadDocuments(dataPath)
	if err != nil {
		return nil, err
	}
	for i, d := range docs {
		if d.IDs == nil {
			return nil, fmt.Errorf("no tokenizer given: record %d of %s has text, not ids; give --tokenizer", i+1, dataPath)
		}
	}
	return idsOnly{}, nil
}

// idsOnly stands in for a tokenizer when the data is pre-tokenized: it is asked only for Pad.
type idsOnly struct{}

func (idsOnly) Encode(string) []int { return nil }
func (idsOnly) Decode([]int) string { return "" }
func (idsOnly) BOS() int            { return 1 }
func (idsOnly) EOS() int            { return 2 }
func (idsOnly) Pad() int            { return 0 }
func (idsOnly) VocabSize() int      { return 0 }

// ResumeTrainOptions fills t for "shears train --resume --out RUN_DIR" from t.Out's run.json:
// the super-network always, and every option whose flag changed (by its CLI name: data,
// tokenizer, epochs, lr, ...) reports false for. A flag the user set keeps its value; Train
// then checks it agrees with the run.
func ResumeTrainOptions(t *TrainOptions, changed func(flag string) bool) error {
	c, err := ReadRunConfig(t.Out)
	if err != nil {
		// A live first train may not have written run.json yet: name the holder instead.
		if l, lerr := dirlock.Acquire(t.Out, "shears train --resume"); errors.Is(lerr, dirlock.ErrBusy) {
			return fmt.Errorf("train: run directory %w", lerr)
		} else if lerr == nil {
			l.Release()
		}
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
