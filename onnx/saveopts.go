package onnx

import "github.com/shears-ml/shears/onnx/onnxpb"

// Then returns o with one more streaming weight transform: f, applied after o's own Transform
// (if any) to the tensors touches names. Passes stack their transforms this way (an export's
// merge, then its fp16 conversion), each seeing the bytes the previous one wrote.
func (o SaveOptions) Then(touches func(name string) bool, f func(name string, t *onnxpb.TensorProto, raw []byte) ([]byte, error)) SaveOptions {
	prev, prevTouches := o.Transform, o.Touches
	o.Touches = func(name string) bool {
		return touches(name) || prev != nil && (prevTouches == nil || prevTouches(name))
	}
	o.Transform = func(name string, t *onnxpb.TensorProto, raw []byte) ([]byte, error) {
		if prev != nil {
			var err error
			if raw, err = prev(name, t, raw); err != nil {
				return nil, err
			}
		}
		if !touches(name) {
			return raw, nil
		}
		return f(name, t, raw)
	}
	return o
}
