package eval

import (
	"fmt"

	"github.com/shears-ml/shears/lm"
	"github.com/shears-ml/shears/runtime"
)

// Feeds builds a causal LM's inputs (lm.Interface.Feeds) for a batch of token sequences with an
// empty past, as runtime tensors: input_ids, and when the graph asks for them attention_mask,
// position_ids, the empty KV cache and use_cache_branch (false) for a merged decoder. Rows
// shorter than the longest are right-padded and masked.
// Inputs found in extra (rank masks, tensors carried between calibration stages) are fed from
// there; any other input is an error.
func Feeds(inputs []runtime.IOInfo, batch [][]int, extra map[string]*runtime.Tensor) (map[string]*runtime.Tensor, error) {
	var own []runtime.IOInfo
	for _, in := range inputs {
		if _, ok := extra[in.Name]; !ok {
			own = append(own, in)
		}
	}
	ios := runtime.LMIO(own)
	it, err := lm.FromIO(ios, nil)
	if err != nil {
		return nil, fmt.Errorf("feeds: %w", err)
	}
	if len(it.Other) > 0 {
		return nil, fmt.Errorf("feeds: the model input %q is not supported (expected input_ids, attention_mask, position_ids, past_key_values.*, use_cache_branch)", it.Other[0])
	}
	lf, err := it.Feeds(lm.Batch{IDs: batch})
	if err != nil {
		return nil, fmt.Errorf("feeds: %w", err)
	}
	feeds := make(map[string]*runtime.Tensor, len(inputs))
	for _, in := range inputs {
		if t, ok := extra[in.Name]; ok {
			feeds[in.Name] = t
			continue
		}
		t, ok := lf[in.Name]
		if !ok {
			return nil, fmt.Errorf("feeds: no feed for the model input %q", in.Name)
		}
		if feeds[in.Name], err = runtime.LMTensor(t); err != nil {
			return nil, fmt.Errorf("feeds: input %q: %w", in.Name, err)
		}
	}
	return feeds, nil
}
