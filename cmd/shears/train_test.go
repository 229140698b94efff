package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/pipeline"
)

// trainSetup prunes stories260K by magnitude, adapts it with ranks 8,6,4 (the reference's
// 32,24,16 scaled to the 64-wide model, alpha 16 keeping scale 2) and writes 12 ARC-Easy
// training examples; it returns the super-network, the data and the tokenizer.
func trainSetup(t *testing.T) (super, dataPath, tok string) {
	t.Helper()
	testkit.ORT(t)
	dir := t.TempDir()
	tok = testkit.Tok512Shaped(t)
	super = sparseSuper(t, importStories(t, dir), dir)
	return super, arcSlice(t, dir, "arc12.json", 0, 12), tok
}

func TestTrainCLI(t *testing.T) {
	super, d, tok := trainSetup(t)
	run := filepath.Join(t.TempDir(), "run")
	common := []string{"--data", d, "--tokenizer", tok, "--out", run, "--epochs", "2", "--batch", "8", "--micro-batch", "4",
		"--cutoff", "48", "--ranks", "8", "--threads", "2", "--no-progress"}
	// Stop after 2 of 4 steps (the epoch end, 2 steps of 12 sequences, wrote a checkpoint)...
	out, e, code := shears(t, append([]string{"train", super, "--max-steps", "2"}, common...)...)
	if code != 0 {
		t.Fatalf("train: %s", e)
	}
	for _, want := range []string{"steps        2 of 4 (2 epochs × 2 steps of 2 × 4 sequences; 12 sequences)", "stopped", "shears train --resume --out " + run,
		"single rank 8: plain LoRA baseline"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	// ...then resume from run.json alone.
	out, e, code = shears(t, "train", "--resume", "--out", run, "--threads", "2", "--json", "--no-progress")
	if code != 0 {
		t.Fatalf("train --resume: %s", e)
	}
	var rep pipeline.TrainReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if rep.Steps != 4 || rep.ResumedFrom != 2 || rep.Stopped || rep.Adapter == "" || rep.Epochs != 2 || rep.Sequences != 12 {
		t.Fatalf("resume report %s", out)
	}
	samples, err := pipeline.ReadSamples(run)
	if err != nil {
		t.Fatal(err)
	}
	if len(samples) != 6 { // 3 micro-batches per epoch (the last of 4 rows holds 4; 12 = 3 × 4)
		t.Fatalf("%d micro-batches recorded", len(samples))
	}
	for _, s := range samples {
		for _, r := range s.Ranks {
			if r != 8 {
				t.Fatalf("single-rank run sampled rank %d: %+v", r, s)
			}
		}
	}
	// Bad input names the problem.
	_, e, code = shears(t, "train", super, "--data", d, "--tokenizer", tok, "--out", run, "--no-progress")
	if code != 1 || !strings.Contains(e, "already holds a run") {
		t.Fatalf("train into an existing run: code %d, %s", code, e)
	}
	_, e, code = shears(t, "train", super, "--data", d, "--tokenizer", tok, "--out", filepath.Join(t.TempDir(), "r"), "--ranks", "9", "--no-progress")
	if code != 1 || !strings.Contains(e, "rank 9 is outside 1..r_max 8") {
		t.Fatalf("rank 9: code %d, %s", code, e)
	}
	_, e, code = shears(t, "train", super, "--out", run)
	if code != 2 || !strings.Contains(e, "--data is required") {
		t.Fatalf("missing data: code %d, %s", code, e)
	}
	// Text data without a tokenizer: the error names the file and what to give.
	_, e, code = shears(t, "train", super, "--data", d, "--out", filepath.Join(t.TempDir(), "r2"), "--no-progress")
	if code != 1 || !strings.Contains(e, "no tokenizer given") || !strings.Contains(e, filepath.Base(d)) {
		t.Fatalf("text data without a tokenizer: code %d, %s", code, e)
	}
}
