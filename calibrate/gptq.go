package calibrate

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/transform/layers"
	"github.com/shears-ml/shears/transform/prune"
	"github.com/shears-ml/shears/transform/quant"
)

// GPTQ quantizes the targets with GPTQ, sequentially like Wanda: stage s collects XᵀX for each
// of block s's linear inputs on the outputs of the blocks already quantized, turns it into the
// Hessian H = 2/T·XᵀX (T calibration tokens), quantizes the block's linears
// (quant.GPTQ), and runs the next stage with the block's dequantized weights. Only one
// stage's Hessians are held at a time. It returns the quantized layers by node name.
func GPTQ(m *onnx.Model, targets []layers.Linear, c quant.Config, windows [][]int, g quant.GPTQOptions, o Options) (map[string]*quant.Layer, Timing, error) {
	var tm Timing
	if err := c.Check(); err != nil {
		return nil, tm, err
	}
	m, plan, err := stagePlan(m, targets, windows, o.OneShot, &tm)
	if err != nil {
		return nil, tm, err
	}
	plan.Tap = prune.TapGram
	tokens := 0
	for _, w := range windows {
		tokens += len(w)
	}
	grams := map[string][]float64{}
	collect := accumulate(grams, 1)
	out := map[string]*quant.Layer{}
	done := func(s int) (map[string]*onnxpb.TensorProto, error) {
		t0 := time.Now()
		defer func() { tm.Mask += time.Since(t0) }()
		repl := map[string]*onnxpb.TensorProto{}
		for _, l := range plan.Stages[s] {
			gram := grams[l.Input]
			if gram == nil {
				return nil, fmt.Errorf("gptq %s: no calibration statistics for its input %s", l.Node, l.Input)
			}
			h := make([]float64, len(gram))
			for i, v := range gram {
				h[i] = 2 * v / float64(tokens)
			}
			w, err := quant.Weight(m, l)
			if err != nil {
				return nil, err
			}
			q, err := quant.GPTQ(w, int(l.In), int(l.Out), h, c, g)
			if err != nil {
				return nil, fmt.Errorf("gptq %s: %w", l.Node, err)
			}
			out[l.Node] = q
			t := m.Initializer(l.Weight)
			raw, err := encodeWeight(q.Dequant(), l, onnx.DataType(t))
			if err != nil {
				return nil, fmt.Errorf("gptq %s: %w", l.Node, err)
			}
			repl[l.Weight] = onnx.NewTensor(l.Weight, onnx.DataType(t), onnx.Dims(t), raw)
		}
		for _, l := range plan.Stages[s] {
			delete(grams, l.Input)
		}
		return repl, nil
	}
	if err := runStages(m, plan, windows, o, &tm, collect, done); err != nil {
		return nil, tm, err
	}
	return out, tm, nil
}

// encodeWeight writes W[K, N] (ONNX layout) back in the linear's stored layout and type.
func encodeWeight(w []float32, l layers.Linear, dt onnxpb.TensorProto_DataType) ([]byte, error) {
	k, n := int(l.In), int(l.Out)
	es := onnx.ElemSize(dt)
	if dt != onnxpb.TensorProto_FLOAT && dt != onnxpb.TensorProto_FLOAT16 {
		return nil, fmt.Errorf("weight type %s: want float or float16", dt)
	}
	raw := make([]byte, len(w)*es)
	for i := 0; i < k; i++ {
		for j := 0; j < n; j++ {
			at := i*n + j
			if l.Transposed {
				at = j*k + i
			}
			if dt == onnxpb.TensorProto_FLOAT16 {
				binary.LittleEndian.PutUint16(raw[2*at:], onnx.Float32ToFloat16(w[i*n+j]))
			} else {
				binary.LittleEndian.PutUint32(raw[4*at:], math.Float32bits(w[i*n+j]))
			}
		}
	}
	return raw, nil
}
