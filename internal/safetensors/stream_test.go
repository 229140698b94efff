package safetensors

import (
	"encoding/binary"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// WriteStream writes the same bytes as Encode, and Open/Read find every tensor at the offsets
// the header gives.
func TestWriteStreamMatchesEncode(t *testing.T) {
	ts := []Tensor{
		F32("b", []int64{2}, []float32{1, -2}),
		{Name: "a", DType: "BF16", Shape: []int64{1, 2}, Data: []byte{1, 2, 3, 4}},
	}
	want, err := Encode(ts, map[string]string{"format": "pt"})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "s.safetensors")
	byName := map[string][]byte{}
	var specs []Spec
	for _, x := range ts {
		specs = append(specs, Spec{x.Name, x.DType, x.Shape})
		byName[x.Name] = x.Data
	}
	if err := WriteStream(path, specs, map[string]string{"format": "pt"}, func(s Spec, w io.Writer) error {
		_, err := w.Write(byName[s.Name])
		return err
	}); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	if string(got) != string(want) {
		t.Fatalf("stream %q\nencode %q", got, want)
	}
	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, x := range ts {
		b, err := r.Read(x.Name)
		if err != nil || string(b) != string(x.Data) {
			t.Fatalf("%s: %v % x, want % x", x.Name, err, b, x.Data)
		}
		info, _ := r.Info(x.Name)
		if string(got[info.Begin:info.End]) != string(x.Data) {
			t.Fatalf("%s: offsets [%d,%d) do not hold its bytes", x.Name, info.Begin, info.End)
		}
	}
	if r.Metadata["format"] != "pt" || r.Tensors[0].Name != "a" {
		t.Fatalf("metadata %v, first tensor %q", r.Metadata, r.Tensors[0].Name)
	}
	// A fill that writes the wrong length fails and leaves nothing.
	bad := filepath.Join(t.TempDir(), "bad.safetensors")
	err = WriteStream(bad, specs, nil, func(s Spec, w io.Writer) error { _, err := w.Write([]byte{1}); return err })
	if err == nil || !strings.Contains(err.Error(), `tensor "a": 1 bytes written, want 4`) {
		t.Fatalf("short fill: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Dir(bad)); len(ents) != 0 {
		t.Fatalf("short fill left %d files", len(ents))
	}
}

func writeFile(t *testing.T, path string, ts ...Tensor) {
	t.Helper()
	if err := Write(path, ts, nil); err != nil {
		t.Fatal(err)
	}
}

func writeIndex(t *testing.T, dir string, m map[string]string) {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"metadata": map[string]any{"total_size": 0}, "weight_map": m})
	if err := os.WriteFile(filepath.Join(dir, IndexFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestOpenDirSingleAndSharded(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, SingleFile), F32("x", []int64{1}, []float32{3}))
	s, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, r, ok := s.Info("x"); !ok || len(s.Files) != 1 {
		t.Fatalf("single: %v %v", ok, r)
	}
	s.Close()

	dir = t.TempDir()
	writeFile(t, filepath.Join(dir, "model-00001-of-00002.safetensors"), F32("a", []int64{1}, []float32{1}))
	writeFile(t, filepath.Join(dir, "model-00002-of-00002.safetensors"), F32("b", []int64{2}, []float32{2, 3}))
	writeIndex(t, dir, map[string]string{"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"})
	s, err = OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	info, r, ok := s.Info("b")
	if !ok || !strings.HasSuffix(r.Path, "00002-of-00002.safetensors") || info.Size() != 8 {
		t.Fatalf("b: %v %+v", ok, info)
	}
	if b, err := r.Read("b"); err != nil || len(b) != 8 {
		t.Fatalf("read b: %v", err)
	}
	if got := strings.Join(s.Names(), ","); got != "a,b" || s.Bytes() != 12 {
		t.Fatalf("names %s bytes %d", got, s.Bytes())
	}
}

func TestOpenBadInput(t *testing.T) {
	dir := t.TempDir()
	if _, err := OpenDir(dir); err == nil || !strings.Contains(err.Error(), "neither model.safetensors nor") {
		t.Errorf("empty folder: %v", err)
	}
	// An index naming a missing shard names the index, the tensor and the shard.
	writeFile(t, filepath.Join(dir, "one.safetensors"), F32("a", []int64{1}, []float32{1}))
	writeIndex(t, dir, map[string]string{"a": "one.safetensors", "b": "two.safetensors"})
	if _, err := OpenDir(dir); err == nil || !strings.Contains(err.Error(), `tensor "b": shard `+filepath.Join(dir, "two.safetensors")+" is missing") {
		t.Errorf("missing shard: %v", err)
	}
	writeIndex(t, dir, map[string]string{"a": "one.safetensors", "c": "one.safetensors"})
	if _, err := OpenDir(dir); err == nil || !strings.Contains(err.Error(), `tensor "c" is not in its shard`) {
		t.Errorf("tensor absent from shard: %v", err)
	}
	writeIndex(t, dir, map[string]string{"a": "../one.safetensors"})
	if _, err := OpenDir(dir); err == nil || !strings.Contains(err.Error(), "must be a file name") {
		t.Errorf("shard outside: %v", err)
	}

	// Truncated files: header length cut, header cut, data cut.
	full, _ := Encode([]Tensor{F32("w", []int64{4}, []float32{1, 2, 3, 4})}, nil)
	n := int(binary.LittleEndian.Uint64(full))
	for _, c := range []struct {
		name string
		b    []byte
		want string
	}{
		{"length", full[:5], "truncated header length"},
		{"header", full[:8+n/2], "truncated header"},
		{"data", full[:len(full)-4], `tensor "w": data_offsets [0, 16) run past the end of the file`},
	} {
		p := filepath.Join(t.TempDir(), c.name+".safetensors")
		os.WriteFile(p, c.b, 0o644)
		_, err := Open(p)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: %v, want one naming %s and containing %q", c.name, err, p, c.want)
		}
	}
}
