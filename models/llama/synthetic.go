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
// dtype must be FLOAT: storing the weights in float16 or bfloat16 is a graph rewrite, which
// is transform/convert's, and models does not import transform; write those with
// WriteSyntheticAs(path, cfg, seed, convert.Storage(o)).
func WriteSynthetic(path string, cfg Config, seed int64, dtype onnxpb.TensorProto_DataType) error {
	if dtype != onnxpb.TensorProto_FLOAT {
		return fmt.Errorf("llama synthetic %s: dtype %s: WriteSynthetic writes float32; use WriteSyntheticAs with convert.Storage for %s weights", path, dtype, dtype)
	}
	return WriteSyntheticAs(path, cfg, seed, nil)
}

// StorageFunc rewrites a built float32 graph for another storage (Casts after float16 weights,
// say) and returns the save options whose Retype and Transform give each initializer's stored
// type and bytes; the writer applies them to the weights as it streams them, so a large model
// is never held converted in memory. transform/convert.Storage makes one.
type StorageFunc func(m *onnx.Model) (onnx.SaveOptions, error)

// WriteSyntheticAs is WriteSynthetic with the storage rewritten by storage (nil: float32). Both
// files are written under temporary names and renamed at the end, so a failure leaves no
// half-written model.
func WriteSyntheticAs(path string, cfg Config, seed int64, storage StorageFunc) (err error) {
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
	var so onnx.SaveOptions
	if storage != nil {
		if so, err = storage(m); err != nil {
			return fmt.Errorf("llama synthetic %s: %w", path, err)
		}
	}
	stored := func(t *onnxpb.TensorProto) (onnxpb.TensorProto_DataType, bool) {
		if so.Retype == nil {
			return 0, false
		}
		return so.Retype(t.GetName(), t)
	}

	f, err := onnx.CreatePending(dataPath)
	if err != nil {
		return fmt.Errorf("llama synthetic: %w", err)
	}
	defer f.Abort()
	w := &extWriter{w: bufio.NewWriterSize(f, 1<<20), location: dataName}
	for _, t := range m.Graph().GetInitializer() {
		gen, ok := gens[t.GetName()]
		dt, retyped := stored(t)
		if !ok { // the builder's small inline constants (native mode converts them too)
			if retyped {
				raw, err := m.RawData(t)
				if err == nil {
					raw, err = so.Transform(t.GetName(), t, raw)
				}
				if err != nil {
					return fmt.Errorf("llama synthetic %s: %w", path, err)
				}
				t.RawData, t.FloatData, t.DataType = raw, nil, proto.Int32(int32(dt))
			}
			continue
		}
		var transform func([]byte) ([]byte, error)
		if !retyped {
			dt = onnxpb.TensorProto_FLOAT
		} else {
			transform = func(raw []byte) ([]byte, error) { return so.Transform(t.GetName(), t, raw) }
		}
		if err := w.write(t, dt, transform, gen); err != nil {
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

// write streams gen's float32 values into the file, through transform when set (which maps
// float32 bytes to dt's, chunk by chunk of whole elements), and turns t into an external
// tensor of type dt.
func (e *extWriter) write(t *onnxpb.TensorProto, dt onnxpb.TensorProto_DataType, transform func([]byte) ([]byte, error), gen func(emit func(float32) error) error) error {
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
	flush := func() error {
		out := chunk
		if transform != nil {
			var err error
			if out, err = transform(chunk); err != nil {
				return err
			}
		}
		_, err := e.w.Write(out)
		chunk = chunk[:0]
		return err
	}
	err := gen(func(x float32) error {
		chunk = binary.LittleEndian.AppendUint32(chunk, math.Float32bits(x))
		count++
		if len(chunk) == cap(chunk) {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
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
