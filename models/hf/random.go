package hf

import (
	"bufio"
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
	var sizes []int64
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
		sizes = append(sizes, onnx.NumElements(dims)*int64(onnx.ElemSize(dt)))
		return &onnxpb.TensorProto{Dims: dims, DataType: int32Ptr(int32(onnxpb.TensorProto_FLOAT))}, nil
	}
	if _, err := f.Build(c, rec); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("hf random: %w", err)
	}
	if err := safetensors.WriteFileAtomic(filepath.Join(dir, ConfigFile), configJSON); err != nil {
		return err
	}
	var total int64
	for _, s := range sizes {
		total += s
	}
	n := min(o.Shards, len(specs))
	groups := make([][]safetensors.Spec, n)
	var at int64
	for i, s := range specs {
		k := min(int(at*int64(n)/max(total, 1)), n-1)
		groups[k] = append(groups[k], s)
		at += sizes[i]
	}
	fill := func(s safetensors.Spec, w io.Writer) error {
		return randomTensor(w, s, dt, o.Seed, fanIn[s.Name])
	}
	if n == 1 {
		return safetensors.WriteStream(filepath.Join(dir, safetensors.SingleFile), groups[0], map[string]string{"format": "pt"}, fill)
	}
	weightMap := map[string]string{}
	for k, g := range groups {
		file := fmt.Sprintf("model-%05d-of-%05d.safetensors", k+1, n)
		if err := safetensors.WriteStream(filepath.Join(dir, file), g, map[string]string{"format": "pt"}, fill); err != nil {
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
	return safetensors.WriteFileAtomic(filepath.Join(dir, safetensors.IndexFile), append(idx, '\n'))
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
	bw := bufio.NewWriterSize(w, 1<<16)
	var buf [4]byte
	for i := int64(0); i < n; i++ {
		x := float32(mean + std*r.NormFloat64())
		switch dt {
		case onnxpb.TensorProto_FLOAT:
			binary.LittleEndian.PutUint32(buf[:], math.Float32bits(x))
			bw.Write(buf[:4])
		case onnxpb.TensorProto_BFLOAT16:
			binary.LittleEndian.PutUint16(buf[:], onnx.Float32ToBFloat16(x))
			bw.Write(buf[:2])
		default:
			binary.LittleEndian.PutUint16(buf[:], onnx.Float32ToFloat16(x))
			bw.Write(buf[:2])
		}
	}
	return bw.Flush()
}
