package decoder_test

import (
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/lm"
	"github.com/shears-ml/shears/transform/decoder"
)

// onnxruntime's fused attention (GroupQueryAttention, MultiHeadAttention) reads its past
// directly: the train form drops those optional inputs and computes the fused model's logits.
func TestTrainFormFusedAttention(t *testing.T) {
	testkit.ORT(t)
	for _, attn := range testkit.FusedAttentions {
		m, _, _ := testkit.FusedTiny(t, attn, 4)
		tf, err := decoder.TrainForm(m)
		if err != nil {
			t.Fatalf("%s: %v", attn, err)
		}
		it, err := lm.Read(tf)
		if err != nil {
			t.Fatal(err)
		}
		if it.HasPast() || it.Presents != 0 || len(it.Inputs) != 1 {
			t.Errorf("%s: train form interface %v → %v", attn, it.Inputs, it.Outputs)
		}
		ids := []int64{1, 5, 9, 300, 0, 12, 20, 20, 21, 2, 38, 7}
		_, got := testkit.RunLogits(t, tf, 2, ids, nil)
		_, want := testkit.RunLogits(t, m, 2, ids, nil)
		if d := testkit.MaxDiff(want, got); !(d <= 1e-6) {
			t.Errorf("%s: train-form logits differ from the fused model's by %g", attn, d)
		}
	}
}
