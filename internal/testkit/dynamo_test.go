package testkit

import (
	"testing"

	"github.com/shears-ml/shears/onnx"
)

// The dynamo-style copy computes what the original does (opset 18 forms included).
func TestDynamoSameLogits(t *testing.T) {
	m, err := onnx.Load(Synthetic(t, "tiny"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ORT(t)
	ids := []int64{1, 5, 9, 300, 2, 7, 7, 100}
	_, want := RunLogits(t, m, 2, ids, nil)
	for _, keep := range []bool{true, false} {
		d, err := Dynamo(m, keep)
		if err != nil {
			t.Fatal(err)
		}
		_, got := RunLogits(t, d, 2, ids, nil)
		if diff := MaxDiff(got, want); !(diff <= 1e-5) {
			t.Errorf("keep weight names %v: max |logits - original| = %.3g", keep, diff)
		}
	}
}
