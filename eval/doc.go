// Package eval measures language models through onnxruntime sessions: perplexity on held-out
// text, multiple-choice log-likelihood accuracy, and greedy / sampled generation with the
// reference answer parsing. Models are causal LMs with an int64 input_ids [batch, sequence]
// input and a float logits [batch, sequence, vocab] output.
package eval
