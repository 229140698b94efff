// Package decoder derives the forms of a causal-LM decoder that stages other than serving
// need, from the with-past model every import and export carries (package lm), and handles
// optimum's merged decoder.
//
// The train form (TrainForm) is what calibration and training run: the model as if every
// batch were fresh, unpadded rows. The KV cache is folded away — a Concat(past, new) along the
// sequence is new alone when the past is empty (also through a precision Cast, and a fused
// attention's optional past input becomes absent); a past read otherwise (its length through
// Shape, as torch exports do) becomes an empty [batch, kv_heads, 0, head_dim] tensor made in
// the graph. The present outputs are dropped; attention_mask becomes all ones over input_ids'
// shape and position_ids 0…T−1 for every row, both computed inside the graph; nodes left
// without readers are removed. What remains takes input_ids (and whatever inputs are not the
// LM's, e.g. rank masks) and gives logits, every symbolic dimension still symbolic.
// Right-padded training batches lose nothing by this: a causal model's real tokens never attend
// to later padding, and their positions are 0…len−1 either way.
//
// NoCache is the same fold keeping the mask, positions and presents: optimum's
// decoder_model.onnx beside model.onnx. Merge builds optimum's decoder_model_merged.onnx from
// the two (an If on use_cache_branch, both branches reading the main graph's weights);
// Specialise inlines one branch; EachBranch runs a pass written for plain graphs on both
// branches and merges the results again, so exports keep both branches and one copy of the
// weights. The train form of a merged decoder is its no-cache branch's.
//
// Input models are never modified; a model without a cache, mask or position input is
// returned as it is.
package decoder
