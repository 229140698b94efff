package pipeline

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/onnx"
)

// writeIDs writes records as {"ids": [...]} lines.
func writeIDs(t *testing.T, path string, records [][]int) {
	t.Helper()
	var b strings.Builder
	for _, r := range records {
		fmt.Fprintf(&b, `{"ids": %s}`+"\n", strings.Join(strings.Fields(fmt.Sprint(r)), ", "))
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Wanda calibrated on pre-tokenized {"ids"} records needs no tokenizer, and gives exactly the
// model a run with a tokenizer gives (ids records are used as given either way); text records
// or ids outside the vocabulary are refused by name before any work.
func TestPrunePreTokenizedWithoutTokenizer(t *testing.T) {
	testkit.ORT(t)
	model := testkit.Synthetic(t, "tiny")
	dir := t.TempDir()
	var recs [][]int
	for r := 0; r < 4; r++ {
		var ids []int
		for i := 0; i < 16; i++ {
			ids = append(ids, (r*131+i*37+1)%512)
		}
		recs = append(recs, ids)
	}
	calib := filepath.Join(dir, "calib.jsonl")
	writeIDs(t, calib, recs)
	base := PruneOptions{Model: model, Sparsity: 0.5, Calib: calib, Samples: 4, SeqLen: 16}

	o := base
	o.Out = filepath.Join(dir, "no-tok.onnx")
	rep, err := Prune(o)
	if err != nil {
		t.Fatal(err)
	}
	if !(rep.Sparsity > 0.45) || !(rep.Sparsity < 0.55) {
		t.Errorf("sparsity %.3f, want about 0.5", rep.Sparsity)
	}
	o.Out, o.Tokenizer = filepath.Join(dir, "tok.onnx"), testkit.Tokenizer(t, 300)
	if _, err := Prune(o); err != nil {
		t.Fatal(err)
	}
	a, err := onnx.Load(filepath.Join(dir, "no-tok.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := onnx.Load(o.Out)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for _, w := range a.Graph().GetInitializer() {
		ra, err1 := a.RawData(w)
		rb, err2 := b.RawData(b.Initializer(w.GetName()))
		if err1 != nil || err2 != nil || !bytes.Equal(ra, rb) {
			t.Fatalf("%s differs between the runs without and with a tokenizer (%v, %v)", w.GetName(), err1, err2)
		}
	}

	for _, c := range []struct{ body, want string }{
		{`{"ids": [1, 2, 3]}` + "\n" + `{"text": "hello"}` + "\n", "record 2 of"},
		{`{"ids": [1, 2, 9999, 4]}` + "\n", "id 9999, outside the model's vocabulary [0, 512)"},
	} {
		bad := filepath.Join(dir, "bad.jsonl")
		if err := os.WriteFile(bad, []byte(c.body), 0o644); err != nil {
			t.Fatal(err)
		}
		o := base
		o.Calib, o.Out = bad, filepath.Join(dir, "bad.onnx")
		_, err := Prune(o)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("calib %q: error %v, want it to contain %q", c.body, err, c.want)
		}
		if _, err := os.Stat(o.Out); !os.IsNotExist(err) {
			t.Errorf("calib %q: an output was written", c.body)
		}
	}
}
