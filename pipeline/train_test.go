package pipeline

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// A resumed run takes every option from run.json except the ones whose flag the user set.
func TestResumeTrainOptionsKeepsChangedFlags(t *testing.T) {
	dir := t.TempDir()
	c := RunConfig{Version: RunVersion, Super: "/s/super.onnx", Data: "/d/train.json", Tokenizer: "/t/tok.bin",
		Hyper: Hyper{Epochs: 3, LR: 3e-4, Batch: 16, MicroBatch: 4, Seed: 7, Ranks: []int{8, 4}}}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, RunFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
	o := TrainOptions{Out: dir}
	o.LR, o.Seed, o.Epochs = 1e-3, 1, 1
	if err := ResumeTrainOptions(&o, func(f string) bool { return f == "lr" }); err != nil {
		t.Fatal(err)
	}
	if o.Super != c.Super || o.Data != c.Data || o.Tokenizer != c.Tokenizer || o.Epochs != 3 || o.Batch != 16 ||
		o.MicroBatch != 4 || o.Seed != 7 || !slices.Equal(o.Ranks, []int{8, 4}) {
		t.Errorf("options not taken from run.json: %+v", o)
	}
	if o.LR != 1e-3 {
		t.Errorf("lr = %g, want the flag's 1e-3 kept", o.LR)
	}
	if err := ResumeTrainOptions(&TrainOptions{Out: t.TempDir()}, func(string) bool { return false }); err == nil {
		t.Error("a folder without run.json: no error")
	}
}
