package models

import "github.com/shears-ml/shears/onnx"

// VocabSize is the static last dimension of the model's "logits" output, or 0 when the model
// has no such output or the dimension is symbolic. Stages use it to refuse token ids the model
// cannot embed before any work.
func VocabSize(m *onnx.Model) int64 {
	for _, o := range m.Graph().GetOutput() {
		if o.GetName() != "logits" {
			continue
		}
		d := o.GetType().GetTensorType().GetShape().GetDim()
		if len(d) > 0 {
			return d[len(d)-1].GetDimValue()
		}
	}
	return 0
}
