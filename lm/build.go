package lm

import (
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
)

// The with-past interface as a graph builder declares it, for the importers (models/llama,
// models/gpt2) that write it: the names, order and symbolic dims of optimum's export.

// Inputs are a with-past graph's inputs as Declare returns them: the token ids, the attention
// mask, the position ids and each layer's past key and value.
type Inputs struct {
	IDs, Mask, Positions string
	Past                 [][2]string
}

// Declare declares input_ids [batch, sequence], attention_mask [batch, total], position_ids
// [batch, sequence] (int64) and, per layer, past_key_values.{i}.key|value [batch, kvHeads, past,
// headDim] (float32), in that order.
func Declare(b *onnx.Builder, layers int, kvHeads, headDim int64) Inputs {
	in := Inputs{
		IDs:       b.Input(InputIDs, onnxpb.TensorProto_INT64, DimBatch, DimSequence),
		Mask:      b.Input(AttentionMask, onnxpb.TensorProto_INT64, DimBatch, DimTotal),
		Positions: b.Input(PositionIDs, onnxpb.TensorProto_INT64, DimBatch, DimSequence),
		Past:      make([][2]string, layers),
	}
	for i := range in.Past {
		for k, kind := range []Kind{Key, Value} {
			in.Past[i][k] = b.Input(Past(i, kind), onnxpb.TensorProto_FLOAT, DimBatch, kvHeads, DimPast, headDim)
		}
	}
	return in
}

// Head writes the LM head, logits = h·head (node /lm_head/MatMul), and declares the outputs in
// optimum's order: logits [batch, sequence, vocab], then each layer's present key and value
// [batch, kvHeads, total, headDim].
func Head(b *onnx.Builder, h, head string, vocab, kvHeads, headDim int64, presents [][2]string) {
	out := b.OpOut("MatMul", "/lm_head/MatMul", []string{h, head}, []string{Logits})
	if out == nil {
		return // the builder holds the error
	}
	b.Output(out[0], onnxpb.TensorProto_FLOAT, DimBatch, DimSequence, vocab)
	for _, pr := range presents {
		for _, name := range pr {
			b.Output(name, onnxpb.TensorProto_FLOAT, DimBatch, kvHeads, DimTotal, headDim)
		}
	}
}
