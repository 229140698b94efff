// Package eval measures language models through onnxruntime sessions. Models are causal LMs
// with an int64 input_ids [batch, sequence] input and a float logits [batch, sequence, vocab]
// output, usually with optimum's KV-cache interface besides (package lm; a merged decoder's
// use_cache_branch too). Generation with a cache runs the prompt once and then one token per
// step, the presents fed back as the past and gathered along the batch when beams are chosen
// (decode.go); without one, or with NoCache, it reruns the whole prefix for every new token
// (O(n²) in the length: the reference the cached path is tested against).
//
// What it owns:
//   - perplexity on held-out text (Perplexity, WindowNLL; ppl.go);
//   - free generation: greedy / sampled (Generate) and Hugging Face-style beam search
//     (BeamSearch, the reference's num_beams = 4);
//   - the reference's task evaluation (METHOD.md §4): task detection from dataset file names,
//     response extraction ("### Response:"), the per-task answer rules and scoring (answer.go),
//     one item at a time by generation (GenItem) or by label log-likelihood (ChoiceItem,
//     ScoreContinuations), and the running Summary that the CLI prints.
//
// The answer rules reproduce the reference's quirks on purpose (AQuA's first capital A–E
// anywhere, the last number for math), because accuracy is only comparable when parsing is.
package eval
