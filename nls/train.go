package nls

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/shears-ml/shears/data"
	"github.com/shears-ml/shears/internal/progress"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/train"
	"github.com/shears-ml/shears/transform/decoder"
	"github.com/shears-ml/shears/transform/lora"
	"github.com/shears-ml/shears/transform/trainstep"
)

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

// TrainGraph readies a super-network for training: its lora metadata (a super-network, not
// an extracted sub-adapter), the no-cache branch of a merged decoder, and the dropout
// keep-mask inputs (the file on disk stays the inference graph). The graph returned may share
// m's tensors: keep m open while it is used.
func TrainGraph(m *onnx.Model) (*onnx.Model, *lora.Meta, error) {
	meta, err := lora.ReadConfig(m)
	if err != nil {
		return nil, nil, fmt.Errorf("nls: train: %w", err)
	}
	if len(meta.Fixed) > 0 {
		return nil, nil, fmt.Errorf("nls: train: %s is an extracted sub-adapter, not a super-network", m.Path)
	}
	if decoder.IsMerged(m) {
		// A merged decoder trains its no-cache branch (the adapters of both read the same A, B).
		if m, err = decoder.TrainForm(m); err != nil {
			return nil, nil, fmt.Errorf("nls: train: %w", err)
		}
	}
	if meta.Dropout > 0 && !meta.Train {
		if err := lora.AddDropout(m); err != nil {
			return nil, nil, fmt.Errorf("nls: train: %w", err)
		}
		if meta, err = lora.ReadConfig(m); err != nil {
			return nil, nil, fmt.Errorf("nls: train: %w", err)
		}
	}
	return m, meta, nil
}

// TrainInputs are a run's loaded inputs.
type TrainInputs struct {
	Graph *onnx.Model // from TrainGraph
	Meta  *lora.Meta
	Space *lora.Space     // the ranks sampled: Meta.Space(TrainOptions.Ranks)
	Seqs  []data.Sequence // the training sequences, tokenized and cut
	Pad   int             // the pad id (padded positions are masked from the loss)
}

// Layout is how a run places its work: what run.json records besides the options.
type Layout struct {
	Sequences     int
	Accumulation  int // micro-batches per optimizer step
	MicroPerEpoch int
	StepsPerEpoch int
	TotalMicro    int
	TotalSteps    int
	Buckets       []int // padded lengths of the step graphs
	MaxGraphs     int   // resolved (auto replaced)
	PaddedTokens  int64 // rows × length over the run's micro-batches
	RealTokens    int64 // non-pad tokens over the run
	Params        int64 // trainable values (A and B at r_max)
	AdamW         trainstep.AdamW
	Schedule      string
	Deviations    []string // labelled departures from the reference
}

// Trainer is one NLS training run: NewTrainer prepares it (layout, buckets, schedule, the step
// engine), Run loops over its optimizer steps (resuming from Restore's state), and the caller
// finishes by saving Adapter — prepare / loop / finish. Close releases its sessions.
type Trainer struct {
	Layout Layout
	o      TrainOptions
	in     TrainInputs
	lay    layout
	lens   []int // padded length of every micro-batch of the run
	sched  Schedule
	eng    *engine
	from   State // counters of the restored state (zero for a new run)
}

// NewTrainer lays a run out over in.Seqs: every micro-batch of every epoch (the data order is
// PCG(seed, epoch)), their padded lengths and the step graphs' buckets, the schedule and the
// deviations from the reference; it builds no step graph yet.
func NewTrainer(in TrainInputs, o TrainOptions) (*Trainer, error) {
	if err := o.Check(); err != nil {
		return nil, err
	}
	if in.Graph == nil || in.Meta == nil || in.Space == nil {
		return nil, fmt.Errorf("nls: train: no super-network given")
	}
	if len(in.Seqs) == 0 {
		return nil, fmt.Errorf("nls: train: no training sequences")
	}
	if o.MaxGraphs == 0 {
		o.MaxGraphs = AutoMaxGraphs(weightBytes(in.Graph))
	}
	accum := o.Batch / o.MicroBatch
	lay := newLayout(len(in.Seqs), o.MicroBatch, accum, o.Epochs, o.Seed)
	lengths := make([]int, lay.micros())
	var realTokens int64
	for t := range lengths {
		longest := 2
		for _, i := range lay.rows(t) {
			longest = max(longest, len(in.Seqs[i].IDs))
			realTokens += int64(len(in.Seqs[i].IDs))
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
	l := Layout{Sequences: len(in.Seqs), Accumulation: accum, MicroPerEpoch: lay.M, StepsPerEpoch: lay.S, TotalMicro: lay.micros(),
		TotalSteps: lay.steps(), Buckets: buckets, MaxGraphs: o.MaxGraphs, PaddedTokens: padded, RealTokens: realTokens, AdamW: hp,
		Schedule: "cosine per micro-batch: lr(t) = 0.5·lr0·(1+cos(π·t/T)), t = the step's last micro-batch (0-based), T = total micro-batches"}
	if o.Warmup > 0 {
		l.Schedule = fmt.Sprintf("Hugging Face cosine with %d warmup steps, per optimizer step", o.Warmup)
		l.Deviations = append(l.Deviations, "warmup + per-optimizer-step cosine (SQFT-style) instead of the reference's per-micro-batch cosine without warmup")
	}
	if len(in.Space.Ranks) == 1 {
		l.Deviations = append(l.Deviations, fmt.Sprintf("single rank %d: plain LoRA baseline, no rank sampling", in.Space.Ranks[0]))
	}
	if len(buckets) < len(ChooseBuckets(lengths, math.MaxInt32)) {
		l.Deviations = append(l.Deviations, fmt.Sprintf("micro-batches padded to %d length buckets (max-graphs %d) instead of each to its own multiple of %d; pads are masked from the loss, so only the work changes", len(buckets), o.MaxGraphs, o.Bucket))
	}
	eng, err := newEngine(in.Graph, in.Meta, o.MicroBatch, train.Options{Runtime: o.Runtime, AdamW: hp, MaxGradNorm: o.MaxGradNorm})
	if err != nil {
		return nil, err
	}
	for _, p := range eng.params {
		l.Params += int64(len(p.value))
	}
	return &Trainer{Layout: l, o: o, in: in, lay: lay, lens: lengths, sched: sched, eng: eng}, nil
}

// Close releases the step graphs' sessions.
func (tr *Trainer) Close() { tr.eng.close() }

// Restore sets the trainer to a checkpointed state (from State of an earlier run with the same
// inputs and options); Run then continues after s.Steps.
func (tr *Trainer) Restore(s State) error {
	if err := tr.eng.restore(s); err != nil {
		return err
	}
	tr.from = State{Steps: s.Steps, Elapsed: s.Elapsed, Tokens: s.Tokens}
	return nil
}

// Adapter is the trained A and B of every module (full r_max, ONNX layout, initializer names),
// the trainer's own slices.
func (tr *Trainer) Adapter() []Param { return tr.eng.state(0, 0, 0).Params }

// Store receives what the loop produces; the run directory (pipeline) implements it.
type Store interface {
	// Sample records one micro-batch and Step one optimizer step, in order.
	Sample(SampleRecord) error
	Step(StepRecord) error
	// Checkpoint saves s, after making every record written before it durable.
	Checkpoint(s State) error
}

// Run trains from the restored state (or the start) to the end of the run, a stop (MaxSteps,
// StopAfter, a cancelled Context: Stopped set, no error) or an error. A step whose loss or
// gradient norm is not a number ends the run with an error after checkpointing the last good
// state.
func (tr *Trainer) Run(st Store) (*Result, error) {
	o, lay, in := tr.o, tr.lay, tr.in
	ctx := o.Context
	if ctx == nil {
		ctx = context.Background()
	}
	start := o.Started
	if start.IsZero() {
		start = time.Now()
	}
	ck := tr.from
	res := &Result{Total: lay.steps(), ResumedFrom: ck.Steps, Steps: ck.Steps, Buckets: tr.Layout.Buckets}
	tokens := ck.Tokens
	scale := 1 / float64(lay.accum)
	rows := make([]data.Sequence, o.MicroBatch)
	saved := ck.Steps
	checkpoint := func(steps int, elapsed time.Duration) error {
		return st.Checkpoint(tr.eng.state(steps, elapsed, tokens))
	}
	// diverged stops the run at step s (1-based s+1) whose loss or gradient norm is not a
	// number: the parameters are still those after step s, which are checkpointed (unless the
	// last checkpoint is that step), and the error says what to try.
	diverged := func(s int, what string) error {
		if saved < s {
			if err := checkpoint(s, ck.Elapsed+time.Since(start)); err != nil {
				return err
			}
		}
		return fmt.Errorf("nls: train: %s at step %d; the last good state (step %d) is checkpointed. "+
			"The run diverged: start a new run with a lower --lr (now %g) or gradient clipping (--max-grad-norm, now %g)",
			what, s+1, s, o.LR, o.MaxGradNorm)
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
				if err := checkpoint(s, ck.Elapsed+time.Since(start)); err != nil {
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
					rows[i] = in.Seqs[idx[i]]
					rec.Tokens += len(in.Seqs[idx[i]].IDs)
				}
			}
			l, err := bucketFor(tr.Layout.Buckets, tr.lens[t])
			if err != nil {
				return res, err
			}
			b, err := data.Pad(rows, in.Pad, l)
			if err != nil {
				return res, fmt.Errorf("nls: micro-batch %d: %w", t, err)
			}
			ranks := Sample(in.Space, o.Seed, t)
			loss, err := tr.eng.microBatch(b, ranks, in.Space, o.Seed, t, scale)
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
			if err := st.Sample(SampleRecord{T: t, Step: s + 1, Loss: loss, Len: l, Ranks: ranks}); err != nil {
				return res, err
			}
		}
		rec.Loss /= float64(m1 - m0)
		rec.LR = tr.sched.LR(s, m1-1)
		var err error
		if rec.GradNorm, rec.Skipped, err = tr.eng.apply(rec.LR, s+1); err != nil {
			if math.IsNaN(rec.GradNorm) || math.IsInf(rec.GradNorm, 0) {
				return res, diverged(s, fmt.Sprintf("the gradient norm became %v", rec.GradNorm))
			}
			return res, err
		}
		if tr.eng.scaling {
			rec.LossScale = tr.eng.scaler.Scale
		}
		dt := time.Since(t0)
		tokens += int64(rec.Tokens)
		res.Tokens += int64(rec.Tokens)
		res.Steps = s + 1
		rec.TokensPerS = float64(rec.Tokens) / dt.Seconds()
		elapsed := ck.Elapsed + time.Since(start)
		rec.ElapsedS = elapsed.Seconds()
		rec.Ranks = summarise(drawn)
		if err := st.Step(rec); err != nil {
			return res, err
		}
		save := s%lay.S == lay.S-1 || (o.CheckpointEvery > 0 && (s+1)%o.CheckpointEvery == 0)
		if save {
			if err := checkpoint(s+1, elapsed); err != nil {
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
