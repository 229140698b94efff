package pipeline

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/shears-ml/shears/runtime"
)

// Prune reports calibration in the one Event shape: every window of every block, labelled by
// the block, counting up to Done == Total = blocks × windows; one-shot is one labelled pass.
func TestPruneProgressEvents(t *testing.T) {
	r := fixture(t)
	for _, oneShot := range []bool{false, true} {
		var events []Event
		o := PruneOptions{Model: r.Model, Out: filepath.Join(t.TempDir(), "p.onnx"), Method: MethodWanda, Sparsity: 0.5,
			Calib: r.Prune.Calib, Tokenizer: r.Tokenizer, Samples: 2, SeqLen: 16, OneShot: oneShot,
			Runtime: runtime.Options{Threads: 1}, Progress: func(e Event) { events = append(events, e) }}
		if _, err := Prune(o); err != nil {
			t.Fatal(err)
		}
		blocks := 5 // stories260K's layers
		if oneShot {
			blocks = 1
		}
		if len(events) != 2*blocks {
			t.Fatalf("one-shot %v: %d events, want %d: %+v", oneShot, len(events), 2*blocks, events)
		}
		for i, e := range events {
			want := fmt.Sprintf("block %d/%d", i/2+1, blocks)
			if oneShot {
				want = "one-shot"
			}
			if e.Stage != want || e.Done != i+1 || e.Total != 2*blocks {
				t.Fatalf("one-shot %v: event %d is %+v, want stage %q, %d of %d", oneShot, i, e, want, i+1, 2*blocks)
			}
		}
	}
}
