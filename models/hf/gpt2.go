package hf

import (
	"github.com/shears-ml/shears/models/gpt2"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
)

// GPT-2: LayerNorm, learned positions, Conv1D weights (already [in, out]: nothing is
// transposed), q/k/v fused in c_attn, tanh-GELU ("gelu_new"), scores scaled by 1/√head_dim and
// a head tied to wte; configs that change those are refused.
func init() {
	register(&Family{Arch: "GPT2LMHeadModel", Linear: func(string) bool { return false },
		Build: func(c *Config, src Source) (*onnx.Model, error) {
			if err := c.positive("n_embd", c.NEmbd, "n_layer", c.NLayer, "n_head", c.NHead, "n_positions", c.NPositions, "vocab_size", c.VocabSize); err != nil {
				return nil, err
			}
			if err := activation(c, "activation_function", c.ActivationFunc, "gelu_new", "gelu_pytorch_tanh"); err != nil {
				return nil, err
			}
			switch {
			case c.ScaleAttnWeights != nil && !*c.ScaleAttnWeights:
				return nil, c.errorf("scale_attn_weights false is not supported (the graph scales attention scores by 1/√head_dim)")
			case c.ScaleAttnByLayer:
				return nil, c.errorf("scale_attn_by_inverse_layer_idx true is not supported (the graph scales attention scores by 1/√head_dim only)")
			case !c.Tied(true):
				return nil, c.errorf("tie_word_embeddings false is not supported for GPT2LMHeadModel (its head is transformer.wte)")
			}
			g := gpt2.Config{Vocab: c.VocabSize, Dim: c.NEmbd, Heads: c.NHead, Layers: c.NLayer, MaxSeq: c.NPositions, Eps: float32(c.LayerNormEpsilon)}
			if c.NInner != nil {
				g.Inner = *c.NInner
			}
			if g.Eps == 0 {
				g.Eps = 1e-5
			}
			return gpt2.BuildFrom(g, func(name string, dims []int64) (*onnxpb.TensorProto, error) { return src(name, dims, nil) })
		}})
}
