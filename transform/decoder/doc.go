// Package decoder derives the forms of a causal-LM decoder that stages other than serving
// need, from the with-past model every import and export carries (package lm).
//
// The train form (TrainForm) is what calibration and training run: the model as if every
// batch were fresh, unpadded rows. The KV cache is folded away — a Concat(past, new) along the
// sequence is new alone when the past is empty, and onnxruntime's fused attention
// (GroupQueryAttention, MultiHeadAttention) loses its optional past inputs — and the present
// outputs are dropped; the
// attention_mask becomes all ones over input_ids' shape and position_ids 0…T−1 for every row,
// both computed inside the graph; nodes left without readers are removed. What remains takes
// input_ids (and whatever inputs are not the LM's, e.g. rank masks) and gives logits, with every
// symbolic dimension still symbolic. Right-padded training batches lose nothing by this: a
// causal model's real tokens never attend to later padding, and their positions are 0…len−1
// either way.
//
// The input model is never modified; a model without a cache, mask or position input is
// returned as it is.
package decoder
