package safetensors

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The exact bytes of a two-tensor file: header JSON sorted by name, padded with spaces to a
// multiple of 8, data in name order.
func TestEncodeGolden(t *testing.T) {
	b, err := Encode([]Tensor{
		F32("b", []int64{2}, []float32{1, -2}),
		{Name: "a", DType: "I64", Shape: []int64{1}, Data: []byte{7, 0, 0, 0, 0, 0, 0, 0}},
	}, map[string]string{"format": "pt"})
	if err != nil {
		t.Fatal(err)
	}
	header := `{"__metadata__":{"format":"pt"},"a":{"dtype":"I64","shape":[1],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}`
	for len(header)%8 != 0 {
		header += " "
	}
	n := binary.LittleEndian.Uint64(b)
	if int(n) != len(header) || string(b[8:8+n]) != header {
		t.Fatalf("header %d %q\nwant %d %q", n, b[8:8+n], len(header), header)
	}
	// 1.0 = 0x3f800000, -2.0 = 0xc0000000, little-endian.
	wantData := []byte{7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0}
	if got := b[8+n:]; string(got) != string(wantData) {
		t.Fatalf("data % x, want % x", got, wantData)
	}
}

func TestRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.safetensors")
	vals := []float32{0.5, -1e-30, 3.25, 1e30, 0, -0}
	if err := Write(path, []Tensor{F32("w.A", []int64{2, 3}, vals), F32("scalar", nil, []float32{4})}, map[string]string{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	f, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	got, err := f.Float32s("w.A")
	if err != nil {
		t.Fatal(err)
	}
	for i := range vals {
		if got[i] != vals[i] {
			t.Fatalf("value %d: %v, want %v", i, got[i], vals[i])
		}
	}
	w, _ := f.Get("w.A")
	if len(w.Shape) != 2 || w.Shape[0] != 2 || w.Shape[1] != 3 || f.Metadata["k"] != "v" {
		t.Fatalf("shape %v metadata %v", w.Shape, f.Metadata)
	}
	if s, _ := f.Float32s("scalar"); len(s) != 1 || s[0] != 4 {
		t.Fatalf("scalar %v", s)
	}
	if _, err := f.Float32s("missing"); err == nil || !strings.Contains(err.Error(), `"missing"`) {
		t.Fatalf("missing tensor: %v", err)
	}
	// No temporary file is left behind.
	ents, _ := os.ReadDir(filepath.Dir(path))
	if len(ents) != 1 {
		t.Fatalf("folder holds %d entries", len(ents))
	}
}

func TestBadInput(t *testing.T) {
	mk := func(h string, data int) []byte {
		b := make([]byte, 8, 8+len(h)+data)
		binary.LittleEndian.PutUint64(b, uint64(len(h)))
		return append(append(b, h...), make([]byte, data)...)
	}
	cases := map[string]struct {
		b    []byte
		want string
	}{
		"short":     {[]byte{1, 2}, "too short"},
		"huge":      {mk("{}", 0)[:8], "does not fit"},
		"notjson":   {mk("[1]", 0), "not a JSON object"},
		"outside":   {mk(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, 4), "run past the end"},
		"size":      {mk(`{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, 8), "want 12"},
		"dtype":     {mk(`{"a":{"dtype":"X9","shape":[1],"data_offsets":[0,1]}}`, 1), "unknown dtype"},
		"overlap":   {mk(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, 8), "gap or overlap"},
		"uncovered": {mk(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, 8), "cover 4 of 8"},
		"badmeta":   {mk(`{"__metadata__":{"a":1}}`, 0), "__metadata__"},
		"negshape":  {mk(`{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}}`, 0), "bad shape"},
		"badentry":  {mk(`{"a":3}`, 0), "bad header entry"},
	}
	for name, c := range cases {
		_, err := Decode(c.b)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", name, err, c.want)
		}
	}
	if _, err := Encode([]Tensor{F32("a", []int64{3}, []float32{1})}, nil); err == nil || !strings.Contains(err.Error(), `"a"`) {
		t.Errorf("encode with a wrong shape: %v", err)
	}
	if _, err := Encode([]Tensor{F32("a", nil, []float32{1}), F32("a", nil, []float32{1})}, nil); err == nil {
		t.Error("encode with a duplicate name: no error")
	}
	if err := Write(filepath.Join(t.TempDir(), "no", "such", "dir", "x"), nil, nil); err == nil {
		t.Error("write into a missing folder: no error")
	}
}
