package nls

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/shears-ml/shears/data"
	"github.com/shears-ml/shears/internal/dirlock"
	"github.com/shears-ml/shears/internal/progress"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/tokenizer"
	"github.com/shears-ml/shears/train"
	"github.com/shears-ml/shears/transform/decoder"
	"github.com/shears-ml/shears/transform/lora"
	"github.com/shears-ml/shears/transform/trainstep"
)

// ErrRunExists is returned when Out already holds a run and Resume is not set.
var ErrRunExists = errors.New("the run directory already holds a run (resume it or choose another)")

// layout places every micro-batch of the run: epoch e has micro-batches j = 0..M−1 over the
// sequences order[e][j·micro : (j+1)·micro] (the last one short when micro does not divide n,
// filled with empty rows), optimizer step k of the epoch takes micro-batches kG..min((k+1)G, M)−1,
// and global micro-batch t = e·M + j.
type layout struct {
	n, micro, accum, epochs int
	M, S                    int // micro-batches and optimizer steps per epoch
	orders                  [][]int
}

func newLayout(n, micro, accum, epochs int, seed uint64) layout {
	l := layout{n: n, micro: micro, accum: accum, epochs: epochs}
	l.M = (n + micro - 1) / micro
	l.S = (l.M + accum - 1) / accum
	for e := 0; e < epochs; e++ {
		l.orders = append(l.orders, Order(seed, e, n))
	}
	return l
}

func (l layout) steps() int  { return l.epochs * l.S }
func (l layout) micros() int { return l.epochs * l.M }

// stepMicros is the range [t0, t1) of global micro-batches of optimizer step s (0-based).
func (l layout) stepMicros(s int) (epoch, t0, t1 int) {
	e, k := s/l.S, s%l.S
	return e, e*l.M + k*l.accum, e*l.M + min((k+1)*l.accum, l.M)
}

// rows are the sequence indices of global micro-batch t.
func (l layout) rows(t int) []int {
	e, j := t/l.M, t%l.M
	return l.orders[e][j*l.micro : min((j+1)*l.micro, l.n)]
}

func roundUp(x, k int) int { return (x + k - 1) / k * k }

// Train trains the elastic adapters of a super-network with NLS and writes the run directory.
// A stop (StopAfter or a cancelled Context) returns a Result with Stopped set and no error.
func Train(o TrainOptions) (res *Result, err error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	ctx := o.Context
	if ctx == nil {
		ctx = context.Background()
	}
	start := time.Now()
	for _, p := range []*string{&o.Super, &o.Data, &o.Tokenizer, &o.Out} {
		if *p == "" {
			continue // no tokenizer: pre-tokenized data
		}
		if *p, err = filepath.Abs(*p); err != nil {
			return nil, fmt.Errorf("nls: train: %w", err)
		}
	}
	fi, err := os.Stat(o.Super)
	if err != nil {
		return nil, fmt.Errorf("nls: train: super-network: %w", err)
	}
	m, err := onnx.Load(o.Super)
	if err != nil {
		return nil, fmt.Errorf("nls: train: %w", err)
	}
	defer m.Close()
	meta, err := lora.ReadConfig(m)
	if err != nil {
		return nil, fmt.Errorf("nls: train: %w", err)
	}
	if len(meta.Fixed) > 0 {
		return nil, fmt.Errorf("nls: train: %s is an extracted sub-adapter, not a super-network", o.Super)
	}
	if decoder.IsMerged(m) {
		// A merged decoder trains its no-cache branch (the adapters of both read the same A, B).
		if m, err = decoder.TrainForm(m); err != nil {
			return nil, fmt.Errorf("nls: train: %w", err)
		}
	}
	if meta.Dropout > 0 && !meta.Train {
		// The train graph needs the keep-mask inputs; the file on disk stays the inference graph.
		if err := lora.AddDropout(m); err != nil {
			return nil, fmt.Errorf("nls: train: %w", err)
		}
		if meta, err = lora.ReadConfig(m); err != nil {
			return nil, fmt.Errorf("nls: train: %w", err)
		}
	}
	space, err := meta.Space(o.Ranks)
	if err != nil {
		return nil, fmt.Errorf("nls: train: %s: %w", o.Super, err)
	}
	digests, err := inputDigests(m, o.Data, o.Tokenizer)
	if err != nil {
		return nil, fmt.Errorf("nls: train: %w", err)
	}
	// One process per run directory, held until Train returns (issue 14 case 7).
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, fmt.Errorf("nls: train: %w", err)
	}
	lock, err := dirlock.Acquire(o.Out, "shears train")
	if err != nil {
		return nil, fmt.Errorf("nls: train: run directory %w", err)
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
			return nil, fmt.Errorf("nls: resume %s: %w", o.Out, err)
		}
		if o.CheckpointEvery == 0 {
			o.CheckpointEvery = old.CheckpointEvery
		}
	}
	tok, err := loadTokenizer(o.Tokenizer, o.Data)
	if err != nil {
		return nil, fmt.Errorf("nls: train: %w", err)
	}
	if o.MaxGraphs == 0 {
		o.MaxGraphs = AutoMaxGraphs(weightBytes(m))
	}
	seqs, err := data.TrainSequences(o.Data, tok, data.TrainOptions{Cutoff: o.Cutoff, TrainOnInputs: o.TrainOnInputs})
	if err != nil {
		return nil, fmt.Errorf("nls: train: %w", err)
	}
	accum := o.Batch / o.MicroBatch
	lay := newLayout(len(seqs), o.MicroBatch, accum, o.Epochs, o.Seed)
	lengths := make([]int, lay.micros())
	var realTokens int64
	for t := range lengths {
		longest := 2
		for _, i := range lay.rows(t) {
			longest = max(longest, len(seqs[i].IDs))
			realTokens += int64(len(seqs[i].IDs))
		}
		lengths[t] = roundUp(longest, o.Bucket)
	}
	buckets := ChooseBuckets(lengths, o.MaxGraphs)
	var padded int64
	for _, l := range lengths {
		b, _ := bucketFor(buckets, l)
		padded += int64(b * o.MicroBatch)
	}
	hp := trainstep.DefaultAdamW()
	hp.WeightDecay = o.WeightDecay
	sched := Schedule{LR0: o.LR, Micro: lay.micros(), Steps: lay.steps(), Warmup: o.Warmup}
	if err := sched.Check(); err != nil {
		return nil, fmt.Errorf("nls: train: %w", err)
	}
	cfg := &RunConfig{
		Version: RunVersion, Shears: Version(), Super: o.Super, SuperSize: fi.Size(), Data: o.Data, Tokenizer: o.Tokenizer,
		Inputs: digests, CheckpointEvery: o.CheckpointEvery,
		Hyper: Hyper{Epochs: o.Epochs, LR: o.LR, Batch: o.Batch, MicroBatch: o.MicroBatch, Accumulation: accum, Cutoff: o.Cutoff,
			TrainOnInputs: o.TrainOnInputs, Seed: o.Seed, Warmup: o.Warmup, WeightDecay: o.WeightDecay, MaxGradNorm: o.MaxGradNorm,
			Ranks: space.Ranks, Bucket: o.Bucket, MaxGraphs: o.MaxGraphs, Beta1: hp.Beta1, Beta2: hp.Beta2, Eps: hp.Eps},
		RankSpace: meta.Ranks, RMax: meta.RMax, Alpha: meta.Alpha, Scale: meta.Scale, Dropout: meta.Dropout,
		Groups: space.Groups, Modules: len(meta.Modules),
		Sequences: len(seqs), MicroPerEpoch: lay.M, StepsPerEpoch: lay.S, TotalMicro: lay.micros(), TotalSteps: lay.steps(),
		Buckets: buckets, PaddedTokens: padded, RealTokens: realTokens,
		Schedule: "cosine per micro-batch: lr(t) = 0.5·lr0·(1+cos(π·t/T)), t = the step's last micro-batch (0-based), T = total micro-batches",
		Device:   o.Runtime.Device, Threads: o.Runtime.Threads,
	}
	if cfg.Device == "" {
		cfg.Device = "cpu"
	}
	if o.Warmup > 0 {
		cfg.Schedule = fmt.Sprintf("Hugging Face cosine with %d warmup steps, per optimizer step", o.Warmup)
		cfg.Deviations = append(cfg.Deviations, "warmup + per-optimizer-step cosine (SQFT-style) instead of the reference's per-micro-batch cosine without warmup")
	}
	if len(space.Ranks) == 1 {
		cfg.Deviations = append(cfg.Deviations, fmt.Sprintf("single rank %d: plain LoRA baseline, no rank sampling", space.Ranks[0]))
	}
	if len(buckets) < len(ChooseBuckets(lengths, math.MaxInt32)) {
		cfg.Deviations = append(cfg.Deviations, fmt.Sprintf("micro-batches padded to %d length buckets (max-graphs %d) instead of each to its own multiple of %d; pads are masked from the loss, so only the work changes", len(buckets), o.MaxGraphs, o.Bucket))
	}

	runPath := filepath.Join(o.Out, RunFile)
	ckPath := filepath.Join(o.Out, CheckpointFile)
	eng, err := newEngine(m, meta, o.MicroBatch, train.Options{Runtime: o.Runtime, AdamW: hp, MaxGradNorm: o.MaxGradNorm})
	if err != nil {
		return nil, err
	}
	defer eng.close()
	for _, p := range eng.params {
		cfg.Params += int64(len(p.value))
	}
	var ck checkpoint
	if o.Resume {
		if d := diffRun(old, cfg); len(d) > 0 {
			return nil, fmt.Errorf("nls: resume %s: the options differ from the run's: %v", o.Out, d)
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
			if ck, err = eng.loadCheckpoint(ckPath); err != nil {
				return nil, err
			}
		}
		// Records written after the checkpoint (a kill between checkpoints) are replayed.
		for _, f := range []string{MetricsFile, SamplesFile} {
			if err := truncateJSONL(filepath.Join(o.Out, f), ck.Steps); err != nil {
				return nil, err
			}
		}
	} else {
		if _, err := os.Stat(runPath); err == nil {
			return nil, fmt.Errorf("nls: train: %s: %w", o.Out, ErrRunExists)
		}
		for _, f := range []string{MetricsFile, SamplesFile, CheckpointFile, AdapterFile, PlotFile} {
			os.Remove(filepath.Join(o.Out, f))
		}
		if err := writeJSONAtomic(runPath, cfg); err != nil {
			return nil, err
		}
	}
	metrics, err := openJSONL(filepath.Join(o.Out, MetricsFile))
	if err != nil {
		return nil, err
	}
	defer metrics.close()
	samples, err := openJSONL(filepath.Join(o.Out, SamplesFile))
	if err != nil {
		return nil, err
	}
	defer samples.close()

	res = &Result{Dir: o.Out, Total: lay.steps(), ResumedFrom: ck.Steps, Steps: ck.Steps, Buckets: buckets}
	tokens := ck.Tokens
	scale := 1 / float64(accum)
	rows := make([]data.Sequence, o.MicroBatch)
	saved := ck.Steps
	// diverged stops the run at step s (1-based s+1) whose loss or gradient norm is not a
	// number: the parameters are still those after step s, which are checkpointed (unless the
	// last checkpoint is that step), and the error says what to try.
	diverged := func(s int, what string) error {
		if saved < s {
			if err := metrics.flush(); err != nil {
				return err
			}
			if err := samples.flush(); err != nil {
				return err
			}
			if err := eng.saveCheckpoint(ckPath, checkpoint{Steps: s, Elapsed: ck.Elapsed + time.Since(start), Tokens: tokens}); err != nil {
				return err
			}
		}
		return fmt.Errorf("nls: train: %s at step %d; the last good state (step %d) is checkpointed in %s. "+
			"The run diverged: start a new run with a lower --lr (now %g) or gradient clipping (--max-grad-norm, now %g)",
			what, s+1, s, o.Out, o.LR, o.MaxGradNorm)
	}
	for s := ck.Steps; s < lay.steps(); s++ {
		if o.StopAfter > 0 && s >= o.StopAfter {
			res.Stopped = true
			break
		}
		if ctx.Err() != nil || (o.MaxSteps > 0 && s >= o.MaxSteps) {
			// Cancelled or at --max-steps: keep what was done (a checkpoint unless the last
			// step wrote one), so that a resume continues from here.
			res.Stopped, res.Interrupted = true, ctx.Err() != nil
			if saved < s {
				if err := metrics.flush(); err != nil {
					return res, err
				}
				if err := samples.flush(); err != nil {
					return res, err
				}
				if err := eng.saveCheckpoint(ckPath, checkpoint{Steps: s, Elapsed: ck.Elapsed + time.Since(start), Tokens: tokens}); err != nil {
					return res, err
				}
			}
			break
		}
		t0 := time.Now()
		epoch, m0, m1 := lay.stepMicros(s)
		rec := StepRecord{Step: s + 1, Epoch: epoch + 1, MicroBatches: m1 - m0}
		var drawn [][]int
		for t := m0; t < m1; t++ {
			idx := lay.rows(t)
			for i := range rows {
				rows[i] = data.Sequence{}
				if i < len(idx) {
					rows[i] = seqs[idx[i]]
					rec.Tokens += len(seqs[idx[i]].IDs)
				}
			}
			l, err := bucketFor(buckets, lengths[t])
			if err != nil {
				return res, err
			}
			b, err := data.Pad(rows, tok.Pad(), l)
			if err != nil {
				return res, fmt.Errorf("nls: micro-batch %d: %w", t, err)
			}
			ranks := Sample(space, o.Seed, t)
			loss, err := eng.microBatch(b, ranks, space, o.Seed, t, scale)
			if err != nil {
				return res, fmt.Errorf("nls: step %d, micro-batch %d: %w", s+1, t, err)
			}
			if math.IsNaN(loss) || math.IsInf(loss, 0) {
				return res, diverged(s, fmt.Sprintf("the loss became %v (micro-batch %d)", loss, t))
			}
			rec.Loss += loss
			rec.LossTokens += b.Tokens
			rec.PaddedTokens += b.Rows * b.Len
			drawn = append(drawn, ranks)
			if err := samples.write(SampleRecord{T: t, Step: s + 1, Loss: loss, Len: l, Ranks: ranks}); err != nil {
				return res, err
			}
		}
		rec.Loss /= float64(m1 - m0)
		rec.LR = sched.LR(s, m1-1)
		if rec.GradNorm, rec.Skipped, err = eng.apply(rec.LR, s+1); err != nil {
			if math.IsNaN(rec.GradNorm) || math.IsInf(rec.GradNorm, 0) {
				return res, diverged(s, fmt.Sprintf("the gradient norm became %v", rec.GradNorm))
			}
			return res, err
		}
		if eng.scaling {
			rec.LossScale = eng.scaler.Scale
		}
		dt := time.Since(t0)
		tokens += int64(rec.Tokens)
		res.Tokens += int64(rec.Tokens)
		res.Steps = s + 1
		rec.TokensPerS = float64(rec.Tokens) / dt.Seconds()
		elapsed := ck.Elapsed + time.Since(start)
		rec.ElapsedS = elapsed.Seconds()
		rec.Ranks = summarise(drawn)
		if err := metrics.write(rec); err != nil {
			return res, err
		}
		save := s%lay.S == lay.S-1 || (o.CheckpointEvery > 0 && (s+1)%o.CheckpointEvery == 0)
		if save {
			// The records reach the disk before the checkpoint that covers them.
			if err := metrics.flush(); err != nil {
				return res, err
			}
			if err := samples.flush(); err != nil {
				return res, err
			}
			if err := eng.saveCheckpoint(ckPath, checkpoint{Steps: s + 1, Elapsed: elapsed, Tokens: tokens}); err != nil {
				return res, err
			}
			saved = s + 1
		}
		o.Progress.Report(progress.Event{Stage: "train", Done: s + 1, Total: lay.steps(), Saved: save,
			Detail: fmt.Sprintf("epoch %d · loss %.4f · lr %.2e · %.0f tok/s", epoch+1, rec.Loss, rec.LR, rec.TokensPerS)})
	}
	res.Elapsed = time.Since(start)
	if s := res.Elapsed.Seconds(); s > 0 {
		res.TokensPerS = float64(res.Tokens) / s
	}
	if err := metrics.flush(); err != nil {
		return res, err
	}
	if err := samples.flush(); err != nil {
		return res, err
	}
	recs, err := ReadMetrics(o.Out)
	if err != nil {
		return res, err
	}
	if len(recs) > 0 {
		res.FirstLoss, res.LastLoss = recs[0].Loss, recs[len(recs)-1].Loss
	}
	if res.Stopped {
		return res, nil
	}
	res.Adapter = filepath.Join(o.Out, AdapterFile)
	if err := eng.saveAdapter(res.Adapter, res.Steps); err != nil {
		return res, err
	}
	res.Plot = filepath.Join(o.Out, PlotFile)
	title := fmt.Sprintf("NLS %s: ranks %v, %d epochs, lr %g", filepath.Base(o.Super), space.Ranks, o.Epochs, o.LR)
	if err := PlotLoss(res.Plot, title, recs); err != nil {
		return res, err
	}
	return res, nil
}

// weightBytes is the size of m's initializers.
func weightBytes(m *onnx.Model) int64 {
	var n int64
	for _, t := range m.Graph().GetInitializer() {
		n += onnx.NumElements(t.GetDims()) * int64(onnx.ElemSize(onnx.DataType(t)))
	}
	return n
}

// loadTokenizer loads path, or with no path checks that every record of the training data is
// pre-tokenized ({"ids": [...]} lines of a .jsonl file) and returns a tokenizer that only pads
// (id 0; padded positions are masked from the loss, so the id does not matter).
func loadTokenizer(path, dataPath string) (tokenizer.Tokenizer, error) {
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
