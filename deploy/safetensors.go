package deploy

import (
	"fmt"
	"io"
	"path/filepath"
	"sort"

	"github.com/shears-ml/shears/internal/safetensors"
	"github.com/shears-ml/shears/onnx"
)

// stTensor is one tensor to write: its header entry and a function that streams its bytes.
type stTensor struct {
	name  string
	dtype string // safetensors dtype: F32, F16, BF16, ...
	shape []int64
	size  int64
	write func(w io.Writer) error
}

// shardName is Hugging Face's name for shard i of n (1-based): model-00001-of-00003.safetensors.
func shardName(i, n int) string { return fmt.Sprintf("model-%05d-of-%05d.safetensors", i, n) }

// planShards groups tensors (in order) into shards of at most maxBytes each (a tensor larger
// than maxBytes gets a shard of its own), as transformers' save_pretrained does.
func planShards(ts []stTensor, maxBytes int64) [][]stTensor {
	var shards [][]stTensor
	var cur []stTensor
	var size int64
	for _, t := range ts {
		if len(cur) > 0 && size+t.size > maxBytes {
			shards = append(shards, cur)
			cur, size = nil, 0
		}
		cur = append(cur, t)
		size += t.size
	}
	if len(cur) > 0 {
		shards = append(shards, cur)
	}
	return shards
}

// writeSafetensors streams one safetensors file of ts (internal/safetensors.WriteStream: the
// header first, then each tensor's bytes from its writer, atomically).
func writeSafetensors(path string, ts []stTensor, meta map[string]string) error {
	specs := make([]safetensors.Spec, len(ts))
	byName := make(map[string]stTensor, len(ts))
	for i, t := range ts {
		specs[i] = safetensors.Spec{Name: t.name, DType: t.dtype, Shape: t.shape}
		byName[t.name] = t
	}
	return safetensors.WriteStream(path, specs, meta, func(s safetensors.Spec, w io.Writer) error {
		t := byName[s.Name]
		cw := &countWriter{w: w}
		if err := t.write(cw); err != nil {
			return fmt.Errorf("tensor %s: %w", t.name, err)
		}
		if cw.n != t.size {
			return fmt.Errorf("tensor %s: wrote %d bytes, its shape needs %d", t.name, cw.n, t.size)
		}
		return nil
	})
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

// writeCheckpoint writes the tensors into dir as model.safetensors, or as shards with
// model.safetensors.index.json when they exceed maxBytes; it returns the files written.
func writeCheckpoint(dir string, ts []stTensor, maxBytes int64) ([]string, error) {
	meta := map[string]string{"format": "pt"}
	shards := planShards(ts, maxBytes)
	if len(shards) <= 1 {
		if err := writeSafetensors(filepath.Join(dir, "model.safetensors"), ts, meta); err != nil {
			return nil, err
		}
		return []string{"model.safetensors"}, nil
	}
	var files []string
	weightMap := map[string]string{}
	var total int64
	for i, s := range shards {
		name := shardName(i+1, len(shards))
		if err := writeSafetensors(filepath.Join(dir, name), s, meta); err != nil {
			return nil, err
		}
		for _, t := range s {
			weightMap[t.name] = name
			total += t.size
		}
		files = append(files, name)
	}
	idx, err := marshalJSON(map[string]any{"metadata": map[string]any{"total_size": total}, "weight_map": weightMap})
	if err != nil {
		return nil, err
	}
	if err := onnx.WriteFileAtomic(filepath.Join(dir, "model.safetensors.index.json"), idx); err != nil {
		return nil, err
	}
	sort.Strings(files)
	return append(files, "model.safetensors.index.json"), nil
}
