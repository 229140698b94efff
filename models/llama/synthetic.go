package llama

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strconv"

	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/transform/convert"
	"google.golang.org/protobuf/proto"
)

// WriteSynthetic writes a LLaMA model of shape cfg with random weights to path, its tensors
// in one external-data file next to it (<base>.data, referenced by file name), each at an
// offset aligned to onnx.ExternalAlign so onnxruntime can mmap it.
//
// Weights stream to disk one tensor at a time and never all sit in memory (a 1B fp32 model is
// 4 GB): learned matrices are N(0, 1/in) (so activations keep their scale), embeddings N(0, 1),
// norm weights 1, each tensor drawn from its own generator seeded by (seed, name), so a
// model is reproducible and independent of tensor order. With TiedEmbeddings the head is
// the transposed embedding, which is then held in memory once.
//
// dtype FLOAT16 or BFLOAT16 stores the weights in that type, read through Casts so the graph
// computes in float32 (WriteSyntheticAs with compute fp32); the values are the float32 model's,
// rounded. Both files are written under temporary names and renamed at the end, so a failure
// leaves no half-written model.
func WriteSynthetic(path string, cfg Config, seed int64, dtype onnxpb.TensorProto_DataType) error {
	if dtype == onnxpb.TensorProto_FLOAT {
		return WriteSyntheticAs(path, cfg, seed, convert.Options{DType: dtype})
	}
	return WriteSyntheticAs(path, cfg, seed, convert.Options{DType: dtype, Compute: convert.ComputeFP32})
}

// WriteSyntheticAs is WriteSynthetic with the storage type and compute mode of
// transform/convert: o.DType FLOAT writes the float32 model; FLOAT16/BFLOAT16 with
// o.Compute fp32 (weight-only) or native (the whole graph in that type, the logits cast back to
// float32). The graph rewrite is convert's own; only the bytes are written here, directly in the
// target type.
func WriteSyntheticAs(path string, cfg Config, seed int64, o convert.Options) (err error) {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("llama synthetic %s: %w", path, err)
	}
	dataName := filepath.Base(path) + ".data"
	dataPath := filepath.Join(filepath.Dir(path), dataName)

	// Build the graph first with empty placeholders, so the conversion plan (which needs the
	// graph's structure) decides each tensor's type before any byte is written.
	gens := map[string]func(emit func(float32) error) error{}
	var embed []float32 // kept only when the head is tied to it
	src := func(name string, dims []int64, computed []float32) (*onnxpb.TensorProto, error) {
		n := int64(1)
		for _, d := range dims {
			n *= d
		}
		switch {
		case computed != nil:
			gens[name] = func(emit func(float32) error) error {
				for _, x := range computed {
					if err := emit(x); err != nil {
						return err
					}
				}
				return nil
			}
		case len(dims) == 1: // norm weights
			gens[name] = constant(n, 1)
		case name == "lm_head.weight" && cfg.TiedEmbeddings:
			rows, cols := dims[0], dims[1] // [dim, vocab] from embed [vocab, dim]
			gens[name] = func(emit func(float32) error) error {
				for r := int64(0); r < rows; r++ {
					for c := int64(0); c < cols; c++ {
						if err := emit(embed[c*rows+r]); err != nil {
							return err
						}
					}
				}
				return nil
			}
		default:
			std := 1 / math.Sqrt(float64(dims[0]))
			if name == "model.embed_tokens.weight" {
				std = 1
			}
			keep := name == "model.embed_tokens.weight" && cfg.TiedEmbeddings
			gens[name] = func(emit func(float32) error) error {
				rng := rand.New(rand.NewPCG(uint64(seed), nameHash(name)))
				for i := int64(0); i < n; i++ {
					x := float32(rng.NormFloat64() * std)
					if keep {
						embed = append(embed, x)
					}
					if err := emit(x); err != nil {
						return err
					}
				}
				return nil
			}
		}
		return onnx.NewTensor(name, onnxpb.TensorProto_FLOAT, dims, nil), nil
	}
	m, err := Build(cfg, src)
	if err != nil {
		return fmt.Errorf("llama synthetic %s: %w", path, err)
	}
	var plan *convert.Plan
	if o.DType != onnxpb.TensorProto_FLOAT {
		if plan, err = convert.NewPlan(m, o); err != nil {
			return fmt.Errorf("llama synthetic %s: %w", path, err)
		}
		if err := plan.Rewrite(m); err != nil {
			return fmt.Errorf("llama synthetic %s: %w", path, err)
		}
	}

	f, err := onnx.CreatePending(dataPath)
	if err != nil {
		return fmt.Errorf("llama synthetic: %w", err)
	}
	defer f.Abort()
	w := &extWriter{w: bufio.NewWriterSize(f, 1<<20), location: dataName}
	for _, t := range m.Graph().GetInitializer() {
		gen, ok := gens[t.GetName()]
		if !ok { // the builder's small inline constants (native mode converts them too)
			if plan != nil && plan.Converts(t.GetName()) {
				raw, err := m.RawData(t)
				if err == nil {
					raw, err = plan.Transform(t.GetName(), t, raw)
				}
				if err != nil {
					return fmt.Errorf("llama synthetic %s: %w", path, err)
				}
				t.RawData, t.FloatData, t.DataType = raw, nil, proto.Int32(int32(o.DType))
			}
			continue
		}
		dt := onnxpb.TensorProto_FLOAT
		if plan != nil && plan.Converts(t.GetName()) {
			dt = o.DType
		}
		if err := w.write(t, dt, gen); err != nil {
			return fmt.Errorf("llama synthetic %s: tensor %s: %w", dataPath, t.GetName(), err)
		}
	}
	if err := w.w.Flush(); err != nil {
		return fmt.Errorf("llama synthetic %s: %w", dataPath, err)
	}
	raw, err := proto.Marshal(m.Proto)
	if err != nil {
		return fmt.Errorf("llama synthetic %s: %w", path, err)
	}
	if err := f.Commit(); err != nil {
		return fmt.Errorf("llama synthetic %s: %w", dataPath, err)
	}
	if err := onnx.WriteFileAtomic(path, raw); err != nil {
		return fmt.Errorf("llama synthetic: %w", err)
	}
	return nil
}

func nameHash(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}

func constant(n int64, v float32) func(emit func(float32) error) error {
	return func(emit func(float32) error) error {
		for i := int64(0); i < n; i++ {
			if err := emit(v); err != nil {
				return err
			}
		}
		return nil
	}
}

// extWriter appends tensors to an external-data file at aligned offsets.
type extWriter struct {
	w        *bufio.Writer
	off      int64
	location string
	chunk    []byte
}

var errShortTensor = errors.New("generator wrote the wrong number of values")

// write streams gen's float32 values into the file as dt (FLOAT, or FLOAT16/BFLOAT16 rounded by
// convert.Narrow) and turns t into an external tensor of that type.
func (e *extWriter) write(t *onnxpb.TensorProto, dt onnxpb.TensorProto_DataType, gen func(emit func(float32) error) error) error {
	if pad := (onnx.ExternalAlign - e.off%onnx.ExternalAlign) % onnx.ExternalAlign; pad > 0 {
		if _, err := e.w.Write(make([]byte, pad)); err != nil {
			return err
		}
		e.off += pad
	}
	n := onnx.NumElements(t.GetDims())
	es := int64(onnx.ElemSize(dt))
	start := e.off
	if e.chunk == nil {
		e.chunk = make([]byte, 0, 1<<16)
	}
	chunk := e.chunk[:0]
	count := int64(0)
	err := gen(func(x float32) error {
		if dt == onnxpb.TensorProto_FLOAT {
			chunk = binary.LittleEndian.AppendUint32(chunk, math.Float32bits(x))
		} else {
			chunk = binary.LittleEndian.AppendUint16(chunk, convert.Narrow(dt, x))
		}
		count++
		if len(chunk) == cap(chunk) {
			_, err := e.w.Write(chunk)
			chunk = chunk[:0]
			return err
		}
		return nil
	})
	if err == nil {
		_, err = e.w.Write(chunk)
	}
	if err != nil {
		return err
	}
	if count != n {
		return fmt.Errorf("%w: %d, want %d", errShortTensor, count, n)
	}
	e.off += es * n
	t.DataType = proto.Int32(int32(dt))
	t.RawData = nil
	t.DataLocation = onnxpb.TensorProto_EXTERNAL.Enum()
	t.ExternalData = []*onnxpb.StringStringEntryProto{
		{Key: proto.String("location"), Value: proto.String(e.location)},
		{Key: proto.String("offset"), Value: proto.String(strconv.FormatInt(start, 10))},
		{Key: proto.String("length"), Value: proto.String(strconv.FormatInt(es*n, 10))},
	}
	return nil
}
