package deploy

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
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

// writeSafetensors streams one safetensors file: an 8-byte header length, the JSON header
// (tensor entries with data offsets, __metadata__), padded with spaces to 8 bytes as the
// reference writer does, then every tensor's bytes in order.
func writeSafetensors(path string, ts []stTensor, meta map[string]string) error {
	header := map[string]any{}
	if len(meta) > 0 {
		header["__metadata__"] = meta
	}
	var off int64
	for _, t := range ts {
		header[t.name] = map[string]any{"dtype": t.dtype, "shape": t.shape, "data_offsets": [2]int64{off, off + t.size}}
		off += t.size
	}
	h, err := json.Marshal(header)
	if err != nil {
		return err
	}
	for len(h)%8 != 0 {
		h = append(h, ' ')
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	fail := func(e error) error {
		f.Close()
		return fmt.Errorf("write %s: %w", filepath.Base(path), e)
	}
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(h)))
	if _, err := w.Write(n[:]); err != nil {
		return fail(err)
	}
	if _, err := w.Write(h); err != nil {
		return fail(err)
	}
	for _, t := range ts {
		cw := &countWriter{w: w}
		if err := t.write(cw); err != nil {
			return fail(fmt.Errorf("tensor %s: %w", t.name, err))
		}
		if cw.n != t.size {
			return fail(fmt.Errorf("tensor %s: wrote %d bytes, header says %d", t.name, cw.n, t.size))
		}
	}
	if err := w.Flush(); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	return f.Close()
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
	if err := os.WriteFile(filepath.Join(dir, "model.safetensors.index.json"), idx, 0o644); err != nil {
		return nil, err
	}
	sort.Strings(files)
	return append(files, "model.safetensors.index.json"), nil
}
