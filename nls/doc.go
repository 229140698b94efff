// Package nls is the Neural Low-rank adapter Search of Shears (METHOD.md §3): the per-micro-batch
// sampling of sub-adapters from a super-network's rank space (lora.Space), the training loop
// (gradient accumulation, global-norm clipping, AdamW, the cosine schedule), exact resume from a
// State, and the search strategies over trained sub-adapters (heuristic, hill-climbing, NSGA-II,
// Pareto fronts).
//
// What it asks of others. It knows nothing of files, flags or tokenizers: the caller
// (pipeline.Train, pipeline.Search) loads the super-network, the sequences and the tokenizer,
// owns the run directory, and hands nls already-loaded inputs. The super-network comes from
// transform/lora (its Meta says the groups, modules, A/B names, rank space and dropout);
// train-step graphs come from transform/trainstep; sessions and the accumulate step from package
// train. nls never builds graph nodes itself.
//
// Training is split in three. Prepare: TrainGraph readies the graph (train form, dropout
// inputs) and NewTrainer lays the run out (data order, micro-batches, buckets, schedule,
// deviations: Trainer.Layout). Loop: Trainer.Run takes the optimizer steps, handing every record
// and checkpoint State to a Store (the run directory) and every step to a progress.Func. Finish:
// the caller saves Trainer.Adapter.
//
// Determinism and resume. Everything random is a pure function of the seed and a position, not
// a stream that advances: the data order of epoch e is a permutation drawn from PCG(seed, e);
// the ranks of global micro-batch t from PCG(seed, t); the dropout keep-masks of micro-batch t
// and module i from PCG(seed, t, i). A State therefore needs only the parameters, the AdamW
// moments and the step counter, and a resumed run replays exactly the micro-batches, ranks and
// masks an uninterrupted run would have used: the final adapter is equal bit for bit (tested).
//
// Step graphs have static shapes. Each micro-batch is padded (data.Pad, right padding, labels
// −100) to a length bucket; one step graph per bucket is built lazily and kept open. Since every
// micro-batch of the whole run is known in advance, the buckets are chosen up front: the
// distinct padded lengths (multiples of Bucket, 8 as in the reference collator) when there are
// at most MaxGraphs of them, else the MaxGraphs lengths that minimise the padded tokens computed
// (an exact 1-D partition by dynamic programming). Each graph's session holds its own copy of
// the frozen weights (onnxruntime shares no initializers between sessions), which is why their
// number is capped, and why above LargeModelBytes of weights the automatic cap is one graph
// (every micro-batch padded to the run's longest bucket: more padded work, the weights once).
// Trainable state (A, B, AdamW m and v, gradient accumulators) lives once, in this package, and
// is copied into the bucket's runner before each micro-batch (a few hundred KB for adapters;
// measured negligible).
//
// Mixed precision: on a base whose backward runs in float16 the step graphs scale the loss
// (trainstep); the engine owns one train.LossScaler for all buckets, skips an optimizer step
// when any of its micro-batches overflowed (AdamW's step count advances only on steps taken),
// and keeps the scaler's state in the State, so resume stays exact.
//
// Search (METHOD §5; evaluate.go, search.go, pareto.go). An Evaluator scores a configuration
// (one rank per group) and caches it by ConfigKey: the loss evaluator runs one session of the
// super-network, opened once, with the causal-LM loss appended and the rank masks fed, so a
// configuration is a feed, never a rebuilt graph. The accuracy evaluator goes through package
// eval on one super-network session too, the rank masks held fixed per configuration
// (eval.WithInputs); only a train graph (dropout inputs) is exported per configuration instead.
// Search runs the heuristic (middle rank), first-improvement hill-climbing from it, or NSGA-II
// over (metric, adapter parameters); pipeline.Search wraps data loading, the evaluator and the
// outputs (CONFIG.json in merge.Selection's format, search.jsonl, a plot).
package nls
