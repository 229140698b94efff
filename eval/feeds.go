package eval

import (
	"fmt"

	"github.com/shears-ml/shears/runtime"
)

// Feeds builds a causal LM's inputs for a batch of equal-length token sequences: input_ids,
// and, when the graph asks for them, attention_mask (all ones) and position_ids (0…L−1).
// Names found in extra (e.g. tensors carried between calibration stages) are fed from there.
func Feeds(names []string, batch [][]int, extra map[string]*runtime.Tensor) (map[string]*runtime.Tensor, error) {
	b := len(batch)
	if b == 0 {
		return nil, fmt.Errorf("feeds: empty batch")
	}
	l := len(batch[0])
	shape := []int64{int64(b), int64(l)}
	feeds := map[string]*runtime.Tensor{}
	for _, n := range names {
		if t, ok := extra[n]; ok {
			feeds[n] = t
			continue
		}
		v := make([]int64, 0, b*l)
		switch n {
		case "input_ids":
			for _, seq := range batch {
				if len(seq) != l {
					return nil, fmt.Errorf("feeds: sequences of different lengths (%d and %d)", l, len(seq))
				}
				for _, id := range seq {
					v = append(v, int64(id))
				}
			}
		case "attention_mask":
			for i := 0; i < b*l; i++ {
				v = append(v, 1)
			}
		case "position_ids":
			for i := 0; i < b; i++ {
				for t := 0; t < l; t++ {
					v = append(v, int64(t))
				}
			}
		default:
			return nil, fmt.Errorf("feeds: the model input %q is not supported (expected input_ids, attention_mask, position_ids)", n)
		}
		feeds[n] = runtime.I64(shape, v)
	}
	return feeds, nil
}
