package report

import "github.com/shears-ml/shears/models/llama"

// FLOPs per token of the LLaMA graphs models/llama builds, counting multiply-adds as two. The
// embedding is a lookup; the head is a matmul. Attention is the two T×T products per layer:
// 4·T·dim per token for a sequence of T tokens (causal masking is not subtracted: the graph
// computes the full square).

// linearParams are the weights that multiply activations on every token.
func linearParams(c llama.Config) float64 {
	d, h, kv, v, l := float64(c.Dim), float64(c.HiddenDim), float64(c.KVDim()), float64(c.Vocab), float64(c.Layers)
	return l*(2*d*d+2*d*kv+3*d*h) + d*v
}

// ForwardFLOPs is one forward pass, per token, at sequence length seq.
func ForwardFLOPs(c llama.Config, seq int) float64 {
	return 2*linearParams(c) + 4*float64(seq)*float64(c.Dim)*float64(c.Layers)
}

// TrainFLOPs is one NLS train step per token with a frozen base and loraParams adapter
// parameters (r_max·(in+out) summed over the adapted layers): the base's matmuls run forward and
// backward to their inputs only (no weight gradients: 4·params), attention three times its
// forward (forward, and the two products' input gradients), the adapters forward, input and
// weight gradients (6·params). This is the count bench/peer/peer.py reports too.
func TrainFLOPs(c llama.Config, seq int, loraParams int64) float64 {
	return 4*linearParams(c) + 3*4*float64(seq)*float64(c.Dim)*float64(c.Layers) + 6*float64(loraParams)
}
