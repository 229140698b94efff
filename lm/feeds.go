package lm

import (
	"github.com/shears-ml/shears/onnx/onnxpb"
)

// Tensor is one feed as plain data. Int64 inputs carry I64 and float32 ones F32; an empty past
// of another element type (float16, say) has no data at all: its shape holds a zero.
type Tensor struct {
	DType onnxpb.TensorProto_DataType
	Shape []int64
	I64   []int64
	F32   []float32
	Bool  []bool // use_cache_branch
}

// Batch is what one run feeds.
type Batch struct {
	// IDs are each row's new tokens; rows shorter than the longest are right-padded with Pad
	// (masked out, so they change no real token's logits).
	IDs [][]int
	Pad int
	// PastMask is the attention mask of the tokens already in the cache: one row per batch row,
	// all of one length, the past length. nil means an empty past (length 0).
	PastMask [][]int64
}

// PadPosition is the position id of a padded token (Hugging Face's convention): any valid
// position would do, its logits are never read and no real token attends to it.
const PadPosition = 1

// Feeds returns the interface's inputs for b: input_ids [B, T], attention_mask [B, past + T]
// (the past rows, then 1 for each real new token and 0 for padding), position_ids [B, T]
// (counting only real tokens, past included) and, for an empty past, the past inputs
// [B, kv_heads, 0, head_dim] of the cache's type. With a past the caller feeds the cache (the
// previous run's presents) itself, and the inputs outside the interface (Other) always.
func (it *Interface) Feeds(b Batch) (map[string]Tensor, error) {
	rows := len(b.IDs)
	if rows == 0 {
		return nil, errorf("feeds: empty batch")
	}
	t := 0
	for i, r := range b.IDs {
		if len(r) == 0 {
			return nil, errorf("feeds: row %d has no tokens", i)
		}
		t = max(t, len(r))
	}
	past := 0
	if b.PastMask != nil {
		if len(b.PastMask) != rows {
			return nil, errorf("feeds: %d past-mask rows for %d batch rows", len(b.PastMask), rows)
		}
		past = len(b.PastMask[0])
		for i, r := range b.PastMask {
			if len(r) != past {
				return nil, errorf("feeds: past-mask row %d has %d entries, row 0 has %d", i, len(r), past)
			}
		}
		if past > 0 && !it.HasPast() {
			return nil, errorf("feeds: a past of %d tokens for a model without a KV cache", past)
		}
	}
	bt := []int64{int64(rows), int64(t)}
	ids := make([]int64, 0, rows*t)
	mask := make([]int64, 0, rows*(past+t))
	pos := make([]int64, 0, rows*t)
	for i, r := range b.IDs {
		seen := int64(0)
		if b.PastMask != nil {
			for _, x := range b.PastMask[i] {
				mask = append(mask, x)
				if x != 0 {
					seen++
				}
			}
		}
		for k := 0; k < t; k++ {
			if k < len(r) {
				ids, mask, pos = append(ids, int64(r[k])), append(mask, 1), append(pos, seen)
				seen++
				continue
			}
			ids, mask, pos = append(ids, int64(b.Pad)), append(mask, 0), append(pos, PadPosition)
		}
	}
	out := map[string]Tensor{}
	if it.InputIDs { // a calibration stage graph past the embedding has none
		out[InputIDs] = Tensor{DType: onnxpb.TensorProto_INT64, Shape: bt, I64: ids}
	}
	if it.AttentionMask {
		out[AttentionMask] = Tensor{DType: onnxpb.TensorProto_INT64, Shape: []int64{int64(rows), int64(past + t)}, I64: mask}
	}
	if it.PositionIDs {
		out[PositionIDs] = Tensor{DType: onnxpb.TensorProto_INT64, Shape: bt, I64: pos}
	}
	if it.UseCacheBranch { // the with-past branch takes any past; the no-cache one only none
		out[UseCacheBranch] = Tensor{DType: onnxpb.TensorProto_BOOL, Shape: []int64{1}, Bool: []bool{past > 0}}
	}
	if it.HasPast() && past == 0 {
		if it.KVHeads < 0 || it.HeadDim < 0 {
			return nil, errorf("feeds: the past inputs leave kv_heads or head_dim symbolic (%q is [batch, %d, past, %d]); cannot make an empty past", Past(0, Key), it.KVHeads, it.HeadDim)
		}
		for i := 0; i < it.Layers; i++ {
			for _, k := range []Kind{Key, Value} {
				e := Tensor{DType: it.PastType, Shape: []int64{int64(rows), it.KVHeads, 0, it.HeadDim}}
				if it.PastType == onnxpb.TensorProto_FLOAT {
					e.F32 = []float32{}
				}
				out[Past(i, k)] = e
			}
		}
	}
	return out, nil
}
