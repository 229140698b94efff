package hf

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"

	"github.com/shears-ml/shears/internal/safetensors"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
)

// RandomOptions configure WriteRandom.
type RandomOptions struct {
	Seed   uint64
	DType  string // "F32" (default), "F16" or "BF16"
	Shards int    // 1 (default): model.safetensors; more: model-0000k-of-0000n.safetensors + index
}

// WriteRandom writes a seeded random checkpoint into dir (created if needed): config.json
// (configJSON verbatim) and exactly the tensors its family's graph reads, under their Hugging
// Face names and layouts ([out, in] linears). Values: linears N(0, 1/in) (activations keep their
// scale), embeddings N(0, 1) (GPT-2's positions N(0, 0.1²)), biases N(0, 0.1²), other vectors
// (norm scales) 1 + N(0, 0.1²), each tensor from its own generator seeded by (seed, name). Tensors
// stream to disk (a 1B checkpoint is never in memory) and shards split them evenly by bytes in
// graph order. It is how tests and benchmarks make checkpoints without Python; only shears'
// own safetensors writer is involved.
func WriteRandom(dir string, configJSON []byte, o RandomOptions) error {
	if o.DType == "" {
		o.DType = "F32"
	}
	if o.Shards <= 0 {
		o.Shards = 1
	}
	dt, ok := dtypes[o.DType]
	if !ok {
		return fmt.Errorf("hf random: dtype %q: want F32, F16 or BF16", o.DType)
	}
	c, err := ParseConfig(filepath.Join(dir, ConfigFile), configJSON)
	if err != nil {
		return err
	}
	f, err := family(c)
	if err != nil {
		return err
	}
	// The family's graph says which tensors exist: build it with a recording source.
	var specs []safetensors.Spec
	var fanIn = map[string]int64{}
	rec := func(name string, dims []int64, computed []float32) (*onnxpb.TensorProto, error) {
		if computed != nil {
			return onnx.Float32Tensor(name, dims, computed), nil
		}
		shape := dims
		if len(dims) == 2 && f.Linear(name) {
			shape = []int64{dims[1], dims[0]}
		}
		if len(dims) == 2 {
			fanIn[name] = dims[0]
		}
		specs = append(specs, safetensors.Spec{Name: name, DType: o.DType, Shape: shape})
		return &onnxpb.TensorProto{Dims: dims, DataType: int32Ptr(int32(onnxpb.TensorProto_FLOAT))}, nil
	}
	if _, err := f.Build(c, rec); err != nil {
		return err
	}
	fill := func(s safetensors.Spec, w io.Writer) error {
		return randomTensor(w, s, dt, o.Seed, fanIn[s.Name])
	}
	return writeCheckpoint(dir, configJSON, specs, o.Shards, fill)
}

// Tensor is a checkpoint tensor held in memory, for WriteCheckpoint.
type Tensor struct {
	Name   string
	Shape  []int64
	Values []float32
}

// WriteCheckpoint writes config.json (configJSON verbatim) and tensors into dir in dtype ("F32",
// "F16" or "BF16"; rounded to nearest even), in shards files as WriteRandom does. Tests use it
// to write real weights (stories260K) in the Hugging Face layout.
func WriteCheckpoint(dir string, configJSON []byte, tensors []Tensor, dtype string, shards int) error {
	dt, ok := dtypes[dtype]
	if !ok {
		return fmt.Errorf("hf checkpoint: dtype %q: want F32, F16 or BF16", dtype)
	}
	var specs []safetensors.Spec
	vals := map[string][]float32{}
	for _, t := range tensors {
		if onnx.NumElements(t.Shape) != int64(len(t.Values)) {
			return fmt.Errorf("hf checkpoint: tensor %q: %d values for shape %v", t.Name, len(t.Values), t.Shape)
		}
		specs = append(specs, safetensors.Spec{Name: t.Name, DType: dtype, Shape: t.Shape})
		vals[t.Name] = t.Values
	}
	return writeCheckpoint(dir, configJSON, specs, shards, func(s safetensors.Spec, w io.Writer) error {
		var b []byte
		for _, x := range vals[s.Name] {
			b = appendElem(b, dt, x)
		}
		_, err := w.Write(b)
		return err
	})
}

// writeCheckpoint writes config.json and the tensors: one model.safetensors, or shards split
// evenly by bytes (in the order given) with model.safetensors.index.json.
func writeCheckpoint(dir string, configJSON []byte, specs []safetensors.Spec, shards int, fill func(safetensors.Spec, io.Writer) error) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("hf checkpoint: %w", err)
	}
	if err := onnx.WriteFileAtomic(filepath.Join(dir, ConfigFile), configJSON); err != nil {
		return err
	}
	sizes := make([]int64, len(specs))
	var total int64
	for i, s := range specs {
		sizes[i] = onnx.NumElements(s.Shape) * int64(onnx.ElemSize(dtypes[s.DType]))
		total += sizes[i]
	}
	n := max(1, min(shards, len(specs)))
	groups := make([][]safetensors.Spec, n)
	var at int64
	for i, s := range specs {
		k := min(int(at*int64(n)/max(total, 1)), n-1)
		groups[k] = append(groups[k], s)
		at += sizes[i]
	}
	meta := map[string]string{"format": "pt"}
	if n == 1 {
		return safetensors.WriteStream(filepath.Join(dir, safetensors.SingleFile), groups[0], meta, fill)
	}
	weightMap := map[string]string{}
	for k, g := range groups {
		file := fmt.Sprintf("model-%05d-of-%05d.safetensors", k+1, n)
		if err := safetensors.WriteStream(filepath.Join(dir, file), g, meta, fill); err != nil {
			return err
		}
		for _, s := range g {
			weightMap[s.Name] = file
		}
	}
	idx, err := json.MarshalIndent(map[string]any{"metadata": map[string]any{"total_size": total}, "weight_map": weightMap}, "", "  ")
	if err != nil {
		return err
	}
	return onnx.WriteFileAtomic(filepath.Join(dir, safetensors.IndexFile), append(idx, '\n'))
}

func int32Ptr(v int32) *int32 { return &v }

// randomTensor streams one tensor's values (see WriteRandom) in dtype.
func randomTensor(w io.Writer, s safetensors.Spec, dt onnxpb.TensorProto_DataType, seed uint64, fanIn int64) error {
	h := fnv.New64a()
	h.Write([]byte(s.Name))
	r := rand.New(rand.NewPCG(seed, h.Sum64()))
	mean, std := 1.0, 0.1
	switch {
	case len(s.Shape) == 2 && (strings.Contains(s.Name, "embed") || strings.HasSuffix(s.Name, "wte.weight")):
		mean, std = 0, 1
	case len(s.Shape) == 2 && strings.HasSuffix(s.Name, "wpe.weight"):
		mean, std = 0, 0.1
	case len(s.Shape) == 2:
		mean, std = 0, 1/math.Sqrt(float64(fanIn))
	case strings.HasSuffix(s.Name, ".bias"):
		mean = 0
	}
	n := onnx.NumElements(s.Shape)
	es := int64(onnx.ElemSize(dt))
	buf := make([]byte, 0, 1<<16)
	for i := int64(0); i < n; i++ {
		buf = appendElem(buf, dt, float32(mean+std*r.NormFloat64()))
		if int64(len(buf))+es > int64(cap(buf)) || i == n-1 {
			if _, err := w.Write(buf); err != nil {
				return err
			}
			buf = buf[:0]
		}
	}
	return nil
}

// appendElem appends x in dt's little-endian bytes.
func appendElem(b []byte, dt onnxpb.TensorProto_DataType, x float32) []byte {
	switch dt {
	case onnxpb.TensorProto_FLOAT:
		return binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	case onnxpb.TensorProto_BFLOAT16:
		return binary.LittleEndian.AppendUint16(b, onnx.Float32ToBFloat16(x))
	}
	return binary.LittleEndian.AppendUint16(b, onnx.Float32ToFloat16(x))
}
