package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shears-ml/shears/data"
	"github.com/shears-ml/shears/eval"
	"github.com/shears-ml/shears/internal/dirlock"
	"github.com/shears-ml/shears/internal/safetensors"
	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/pipeline"
	"github.com/shears-ml/shears/runtime"
	"github.com/shears-ml/shears/tokenizer"
)

// relSetup makes a self-contained training fixture: the tiny synthetic LLaMA pruned by
// magnitude, adapted with ranks 8,6,4, and n pre-tokenized records ({"ids": [...]}, no
// tokenizer needed) of 20 to 31 tokens.
func relSetup(t *testing.T, n int) (dir, super, dataPath string) {
	t.Helper()
	testkit.ORT(t)
	dir = t.TempDir()
	super = sparseSuper(t, testkit.Synthetic(t, "tiny"), dir)
	dataPath = filepath.Join(dir, "ids.jsonl")
	writeIDs(t, dataPath, n, 1)
	return dir, super, dataPath
}

// writeIDs writes n pre-tokenized records drawn with seed.
func writeIDs(t *testing.T, path string, n int, seed int64) {
	t.Helper()
	r := rand.New(rand.NewSource(seed))
	var b strings.Builder
	for i := 0; i < n; i++ {
		ids := make([]int, 20+r.Intn(12))
		for j := range ids {
			ids[j] = 1 + r.Intn(500)
		}
		j, _ := json.Marshal(map[string][]int{"ids": ids})
		fmt.Fprintf(&b, "%s\n", j)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Issue 14 case 2: an output naming one of the command's own inputs (the model, its data
// file, the super-network, the base's data it refers to) is refused before any work, and the
// input is left as it was. Before, "prune m.onnx -o m.onnx.data" overwrote the model's
// weights and exited 0.
func TestOutputNeverAliasesAnInput(t *testing.T) {
	dir, super, _ := relSetup(t, 4)
	sparse := filepath.Join(dir, "sparse.onnx")
	before := map[string][]byte{}
	for _, f := range []string{sparse, sparse + ".data", super, super + ".data"} {
		b, err := os.ReadFile(f)
		if err == nil {
			before[f] = b
		}
	}
	if err := os.Symlink(sparse, filepath.Join(dir, "link.onnx")); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"prune", sparse, "-o", sparse + ".data", "--method", "magnitude"}, "is the model to prune's external data"},
		{[]string{"prune", sparse, "-o", sparse, "--method", "magnitude"}, "is the model to prune"},
		{[]string{"prune", sparse, "-o", filepath.Join(dir, "link.onnx"), "--method", "magnitude"}, "is the model to prune"},
		{[]string{"convert", sparse, "-o", sparse + ".data", "--dtype", "bf16"}, "is the model to convert's external data"},
		{[]string{"adapt", sparse, "-o", sparse, "--ranks", "8,4"}, "is the model to adapt"},
		{[]string{"export", "--super", super, "--ranks", "max", "-o", super}, "is the super-network"},
		// The super-network shares the pruned base's data file: exporting over it is refused too.
		{[]string{"export", "--super", super, "--ranks", "max", "-o", sparse + ".data"}, "is the super-network's external data"},
		{[]string{"prune", sparse, "-o", filepath.Join(dir, "no-such-dir", "x.onnx"), "--method", "magnitude"}, "cannot write in its folder"},
	}
	for _, c := range cases {
		_, e, code := shears(t, c.args...)
		if code != 1 || !strings.Contains(e, c.want) {
			t.Errorf("%s: exit %d, %q; want exit 1 and %q", strings.Join(c.args[:1], " "), code, e, c.want)
		}
	}
	for f, b := range before {
		if now, _ := os.ReadFile(f); string(now) != string(b) {
			t.Errorf("%s changed", f)
		}
	}
}

// ckSteps is the step counter of the run's checkpoint (-1 when there is none).
func ckSteps(t *testing.T, run string) int {
	t.Helper()
	f, err := safetensors.Read(filepath.Join(run, pipeline.CheckpointFile))
	if os.IsNotExist(errors.Unwrap(err)) || (err != nil && strings.Contains(err.Error(), "no such file")) {
		return -1
	}
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(f.Metadata["steps"])
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// trainArgs are the flags of a small run: 32 records in steps of 4, one epoch of 8 steps.
func trainArgs(super, data, run string, extra ...string) []string {
	return append([]string{"train", super, "--data", data, "--out", run, "--epochs", "1", "--batch", "4", "--micro-batch", "4",
		"--cutoff", "32", "--threads", "1", "--no-progress"}, extra...)
}

// Issue 14 cases 4 and 5: --max-steps writes a checkpoint before it stops (the resume used to
// redo everything from step 0), and --checkpoint-every is kept in run.json, so a resumed run
// still checkpoints every N steps (it fell back to epoch ends: 61 kills, no progress). The
// resumed run is killed (SIGKILL) once three steps are on disk; its checkpoint must be at
// least at step 2.
func TestMaxStepsCheckpointsAndCheckpointEverySurvivesResume(t *testing.T) {
	dir, super, data := relSetup(t, 32)
	run := filepath.Join(dir, "run")
	o, e, code := shears(t, trainArgs(super, data, run, "--max-steps", "1", "--checkpoint-every", "1")...)
	if code != 0 || !strings.Contains(o, "continue with: shears train --resume") {
		t.Fatalf("train --max-steps 1: %d %s %s", code, o, e)
	}
	if n := ckSteps(t, run); n != 1 {
		t.Fatalf("--max-steps 1 left a checkpoint at step %d, want 1", n)
	}
	cfg, err := pipeline.ReadRunConfig(run)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.CheckpointEvery != 1 {
		t.Fatalf("run.json checkpoint_every %d, want 1", cfg.CheckpointEvery)
	}
	// Resume without the flag in a child process and kill it once 3 steps are recorded.
	cmd := child(t, nil, "train", "--resume", "--out", run, "--threads", "1", "--no-progress")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, cmd, func() bool { recs, _ := pipeline.ReadMetrics(run); return len(recs) >= 3 })
	cmd.Process.Kill()
	cmd.Wait()
	if n := ckSteps(t, run); n < 2 {
		t.Fatalf("after a kill at step >= 3 of a resumed --checkpoint-every 1 run, the checkpoint is at step %d", n)
	}
	o, e, code = shears(t, "train", "--resume", "--out", run, "--threads", "1", "--no-progress")
	if code != 0 || !strings.Contains(o, "steps        8 of 8") {
		t.Fatalf("final resume: %d %s %s", code, o, e)
	}
}

// waitFor polls cond until it holds, failing when the child exits first or 60 s pass.
func waitFor(t *testing.T, cmd *exec.Cmd, cond func() bool) {
	t.Helper()
	exited := make(chan struct{})
	go func() {
		for cmd.ProcessState == nil {
			time.Sleep(5 * time.Millisecond)
			if p, err := os.FindProcess(cmd.Process.Pid); err == nil && p.Signal(syscall.Signal(0)) != nil {
				close(exited)
				return
			}
		}
	}()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		select {
		case <-exited:
			t.Fatalf("the child exited first: %s", cmd.Stdout.(*bytes.Buffer).String())
		default:
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatal("timed out waiting for the child")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// Issue 14 case 6: resume, search and export check the content of the run's inputs, not just
// their path and size. Data swapped for another file with the same record count, and a
// super-network re-adapted with another alpha (same size), are refused, naming the file.
func TestRunInputsAreCheckedByContent(t *testing.T) {
	dir, super, data := relSetup(t, 16)
	run := filepath.Join(dir, "run")
	if _, e, code := shears(t, trainArgs(super, data, run, "--max-steps", "1")...); code != 0 {
		t.Fatalf("train: %s", e)
	}
	cfg, err := pipeline.ReadRunConfig(run)
	if err != nil {
		t.Fatal(err)
	}
	roles := map[string]bool{}
	for _, in := range cfg.Inputs {
		roles[in.Role] = true
	}
	for _, r := range []string{"super-network", "data", "base data (shared by the super-network)"} {
		if !roles[r] {
			t.Errorf("run.json inputs lack the %s: %+v", r, cfg.Inputs)
		}
	}
	// Issue 14 case 2 on a run: exporting over the run's own super-network is refused.
	if _, e, code := shears(t, "export", run, "--ranks", "max", "-o", super); code != 1 || !strings.Contains(e, "is the super-network") {
		t.Errorf("export RUN -o SUPER: %d %s", code, e)
	}
	// Same record count, other records.
	orig, _ := os.ReadFile(data)
	writeIDs(t, data, 16, 2)
	_, e, code := shears(t, "train", "--resume", "--out", run, "--no-progress")
	if code != 1 || !strings.Contains(e, "inputs changed") || !strings.Contains(e, "the data "+data) {
		t.Fatalf("resume over swapped data: %d %s", code, e)
	}
	os.WriteFile(data, orig, 0o644)
	// The shared base re-pruned underneath (the super-network refers to its data file).
	sparse0 := filepath.Join(dir, "sparse.onnx")
	keep, _ := os.ReadFile(sparse0 + ".data")
	keepH, _ := os.ReadFile(sparse0)
	if _, e, code := shears(t, "prune", testkit.Synthetic(t, "tiny"), "-o", sparse0, "--method", "magnitude", "--sparsity", "0.6"); code != 0 {
		t.Fatalf("re-prune: %s", e)
	}
	if _, e, code := shears(t, "export", run, "--ranks", "max", "-o", filepath.Join(dir, "y.onnx")); code != 1 || !strings.Contains(e, "base data (shared by the super-network) "+sparse0+".data") {
		t.Errorf("export after the base was re-pruned: %d %s", code, e)
	}
	if _, e, code := shears(t, "train", "--resume", "--out", run, "--no-progress"); code != 1 || !strings.Contains(e, sparse0+".data") {
		t.Errorf("resume after the base was re-pruned: %d %s", code, e)
	}
	os.WriteFile(sparse0+".data", keep, 0o644)
	os.WriteFile(sparse0, keepH, 0o644)
	// The super-network re-adapted with another alpha: same size, other content.
	sparse := filepath.Join(dir, "sparse.onnx")
	before, _ := os.Stat(super)
	if _, e, code := shears(t, "adapt", sparse, "-o", super, "--ranks", "8,6,4", "--alpha", "32"); code != 0 {
		t.Fatalf("re-adapt: %s", e)
	}
	if after, _ := os.Stat(super); after.Size() != before.Size() {
		t.Logf("re-adapted super-network changed size %d -> %d", before.Size(), after.Size())
	}
	for _, args := range [][]string{
		{"train", "--resume", "--out", run, "--no-progress"},
		{"export", run, "--ranks", "max", "-o", filepath.Join(dir, "x.onnx")},
		{"search", run, "--data", data, "--strategy", "heuristic", "-o", filepath.Join(dir, "cfg.json")},
	} {
		_, e, code := shears(t, args...)
		if code == 0 || !strings.Contains(e, "inputs changed") || !strings.Contains(e, "the super-network "+super) {
			t.Errorf("%s after re-adapting: %d %s", args[0], code, e)
		}
	}
}

// Issue 14 case 8: SIGTERM (and SIGINT) finish the current step, write a checkpoint and exit 1
// with "interrupted ... resume with"; the resume finishes the run. Before, SIGTERM killed train
// with no checkpoint (exit 143) and Ctrl-C exited 0.
func TestSignalsCheckpointAndExitNonZero(t *testing.T) {
	// 16 records in steps of 8: 2 steps per epoch, 16 epochs. Metrics reach the disk at each
	// epoch end's checkpoint; a signal at an odd step makes the interrupt write its own.
	dir, super, data := relSetup(t, 16)
	long := []string{"--epochs", "16", "--batch", "8"}
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		run := filepath.Join(dir, "run-"+sig.String())
		cmd := child(t, nil, trainArgs(super, data, run, long...)...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, cmd, func() bool { recs, _ := pipeline.ReadMetrics(run); return len(recs) >= 1 })
		cmd.Process.Signal(sig)
		err := cmd.Wait()
		out := cmd.Stdout.(*bytes.Buffer).String()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(out, "interrupted after step") ||
			!strings.Contains(out, "resume with: shears train --resume --out "+run) {
			t.Fatalf("%v: %v, %s", sig, err, out)
		}
		recs, _ := pipeline.ReadMetrics(run)
		if n := ckSteps(t, run); n < 1 || n != len(recs) {
			t.Fatalf("%v: checkpoint at step %d, %d steps recorded", sig, n, len(recs))
		}
		if n := ckSteps(t, run); n >= 32 {
			t.Skipf("%v arrived after the last step", sig)
		}
		o, e, code := shears(t, "train", "--resume", "--out", run, "--no-progress")
		if code != 0 || !strings.Contains(o, "steps        32 of 32") {
			t.Fatalf("%v: resume: %d %s %s", sig, code, o, e)
		}
	}
	// Two signals in a row: the second ends the process at once; the run still resumes.
	run := filepath.Join(dir, "run-twice")
	cmd := child(t, nil, trainArgs(super, data, run, long...)...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, cmd, func() bool { recs, _ := pipeline.ReadMetrics(run); return len(recs) >= 1 })
	cmd.Process.Signal(syscall.SIGTERM)
	time.Sleep(time.Millisecond)
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err == nil {
		t.Fatal("the twice-signalled train exited 0")
	}
	if o, e, code := shears(t, "train", "--resume", "--out", run, "--no-progress"); code != 0 || !strings.Contains(o, "steps        32 of 32") {
		t.Fatalf("resume after two signals: %d %s %s", code, o, e)
	}
}

// Issue 14 case 7: a second train on a run directory that a live train holds is refused with
// the holder's pid; the first finishes with every step recorded once.
func TestSecondTrainOnALiveRunIsRefused(t *testing.T) {
	dir, super, data := relSetup(t, 16)
	run := filepath.Join(dir, "run")
	cmd := child(t, nil, trainArgs(super, data, run, "--epochs", "8", "--batch", "8")...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, cmd, func() bool { _, err := os.Stat(filepath.Join(run, dirlock.FileName)); return err == nil })
	for _, args := range [][]string{trainArgs(super, data, run), {"train", "--resume", "--out", run, "--no-progress"}} {
		_, e, code := shears(t, args...)
		if code != 1 || !strings.Contains(e, "in use by another process") || !strings.Contains(e, fmt.Sprintf("pid %d", cmd.Process.Pid)) {
			t.Errorf("second train: %d %s", code, e)
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("the first train: %v %s", err, cmd.Stdout.(*bytes.Buffer).String())
	}
	recs, err := pipeline.ReadMetrics(run)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 16 {
		t.Fatalf("%d metric records, want 16 (each step once)", len(recs))
	}
}

// paragraphs writes n paragraphs of the test tokenizer's corpus, separated by blank lines.
func paragraphs(t *testing.T, path string, n int) {
	t.Helper()
	var b strings.Builder
	lines := strings.Split(testkit.TokCorpus, "\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "%s\n%s\n\n", lines[i%len(lines)], lines[(i+1)%len(lines)])
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Issue 14 case 3: --limit and --max-tokens bound what eval --task ppl reads of a .txt file
// (split into paragraphs; it was one document, so --limit 10 scored all 1.7 M tokens of a
// 5 MB file), and the streaming scorer equals the whole-stream one bit for bit.
func TestTextDataIsBoundedByLimitAndMaxTokens(t *testing.T) {
	testkit.ORT(t)
	model := testkit.Synthetic(t, "tiny")
	tok := testkit.Tokenizer(t, 400)
	dir := t.TempDir()
	txt := filepath.Join(dir, "p.txt")
	paragraphs(t, txt, 200)
	ppl := func(extra ...string) pipeline.EvalResult {
		t.Helper()
		o, e, code := shears(t, append([]string{"eval", model, "--task", "ppl", "--data", txt, "--tokenizer", tok, "--seq-len", "32", "--json"}, extra...)...)
		if code != 0 {
			t.Fatalf("eval %v: %s", extra, e)
		}
		var r pipeline.EvalResult
		if err := json.Unmarshal([]byte(o), &r); err != nil {
			t.Fatalf("%v: %s", err, o)
		}
		return r
	}
	all, lim, capped := ppl(), ppl("--limit", "10"), ppl("--max-tokens", "100")
	if all.Items != 200 || lim.Items != 10 || !(lim.Tokens < all.Tokens/10) || capped.Tokens > 99 || capped.Tokens < 90 {
		t.Fatalf("items/tokens: all %d/%d, --limit 10 %d/%d, --max-tokens 100 %d/%d", all.Items, all.Tokens, lim.Items, lim.Tokens, capped.Items, capped.Tokens)
	}

	// The lazily scored stream gives the same number as the whole stream in one call.
	tk, err := tokenizer.Load(tok)
	if err != nil {
		t.Fatal(err)
	}
	docs, err := data.ReadDocuments(txt)
	if err != nil {
		t.Fatal(err)
	}
	s, err := runtime.OpenFile(model, runtime.Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	whole, err := eval.Perplexity(s, data.Stream(docs, tk), 32, 4)
	if err != nil {
		t.Fatal(err)
	}
	if whole.NLL != all.Loss || whole.Tokens != all.Tokens || whole.Windows != all.Windows {
		t.Fatalf("streamed %+v, whole stream %+v", all, whole)
	}

	// prune calibrates on paragraphs of a .txt (read up to data.CalibrationBudget tokens; the
	// peak-RSS figures for 5 MB and 200 MB files are in bench/RESULTS.md).
	if _, e, code := shears(t, "prune", model, "-o", filepath.Join(dir, "w.onnx"), "--calib", txt, "--tokenizer", tok, "--samples", "4", "--seq-len", "32"); code != 0 {
		t.Fatalf("prune --calib text: %s", e)
	}
}

// poisoned copies the tiny synthetic model to dir with one NaN and one Inf in a q
// projection's weight (through a streaming Save, external data kept).
func poisoned(t *testing.T, dir string) (path, tensor string) {
	t.Helper()
	m := testkit.LoadSynthetic(t, "tiny")
	for _, x := range m.Graph().GetInitializer() {
		if strings.Contains(x.GetName(), "q_proj") && len(x.GetDims()) == 2 {
			tensor = x.GetName()
			break
		}
	}
	path = filepath.Join(dir, "nan.onnx")
	poison := func(name string, x *onnxpb.TensorProto, raw []byte) ([]byte, error) {
		if name != tensor {
			return raw, nil
		}
		out := append([]byte(nil), raw...)
		binary.LittleEndian.PutUint32(out[0:], math.Float32bits(float32(math.NaN())))
		binary.LittleEndian.PutUint32(out[4:], math.Float32bits(float32(math.Inf(1))))
		return out, nil
	}
	if err := m.Save(path, onnx.SaveOptions{ExternalData: true, Transform: poison}); err != nil {
		t.Fatal(err)
	}
	return path, tensor
}

// Issue 14 case 9: NaN and Inf weights are found at load and refused by prune, convert, quantize and
// adapt, naming the tensor (prune kept them and exited 0), unless --allow-nonfinite; eval
// --json writes null for a NaN perplexity and says so (it failed with "json: unsupported value:
// NaN").
func TestNonFiniteWeightsAreRefusedAndJSONSaysNull(t *testing.T) {
	testkit.ORT(t)
	dir := t.TempDir()
	model, tensor := poisoned(t, dir)
	for _, args := range [][]string{
		{"prune", model, "-o", filepath.Join(dir, "p.onnx"), "--method", "magnitude"},
		{"convert", model, "-o", filepath.Join(dir, "c.onnx"), "--dtype", "fp16"},
		{"adapt", model, "-o", filepath.Join(dir, "a.onnx")},
		{"quantize", model, "-o", filepath.Join(dir, "q.onnx"), "--bits", "4"},
	} {
		_, e, code := shears(t, args...)
		if code != 1 || !strings.Contains(e, "non-finite weights: "+tensor+" (1 NaN, 1 Inf of") || !strings.Contains(e, "--allow-nonfinite") {
			t.Errorf("%s: %d %s", args[0], code, e)
		}
		if _, e, code := shears(t, append(args, "--allow-nonfinite")...); code != 0 || !strings.Contains(e, "proceeding") {
			t.Errorf("%s --allow-nonfinite: %d %s", args[0], code, e)
		}
	}
	tok := testkit.Tokenizer(t, 400)
	txt := filepath.Join(dir, "p.txt")
	paragraphs(t, txt, 4)
	o, e, code := shears(t, "eval", model, "--task", "ppl", "--data", txt, "--tokenizer", tok, "--seq-len", "32", "--json")
	var r map[string]any
	if err := json.Unmarshal([]byte(o), &r); err != nil {
		t.Fatalf("eval --json of a NaN model: %v: %s", err, o)
	}
	if ppl, ok := r["ppl"]; code != 0 || !ok || ppl != nil || !strings.Contains(e, "written as null") {
		t.Fatalf("eval --json of a NaN model: %d %s %s", code, o, e)
	}
}

// Issue 14 case 9: a diverging train stops at the first non-finite loss or gradient norm,
// naming the step and what to try, with the last good state checkpointed (it failed later,
// writing samples.jsonl).
func TestDivergingTrainStopsAtTheFirstNaN(t *testing.T) {
	dir, super, data := relSetup(t, 16)
	run := filepath.Join(dir, "run")
	_, e, code := shears(t, trainArgs(super, data, run, "--lr", "1e30", "--max-grad-norm", "0")...)
	m := regexp.MustCompile(`became (NaN|\+Inf|-Inf).* at step (\d+); the last good state \(step (\d+)\) is checkpointed`).FindStringSubmatch(e)
	if code != 1 || m == nil || !strings.Contains(e, "lower --lr (now 1e+30)") {
		t.Fatalf("diverging train: %d %s", code, e)
	}
	step, good := atoi(t, m[2]), atoi(t, m[3])
	if good != step-1 || step < 2 {
		t.Fatalf("stopped at step %d with good state %d", step, good)
	}
	if n := ckSteps(t, run); n != good {
		t.Fatalf("checkpoint at step %d, want %d", n, good)
	}
	recs, err := pipeline.ReadMetrics(run)
	if err != nil || len(recs) != good {
		t.Fatalf("%d metric records (%v), want %d", len(recs), err, good)
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Issue 14 case 10: weak validation. An opset-7 model gets a word about the opset (not
// "Expand ... shapes do not broadcast"); absurd dims are refused at load; a rank outside the
// trained space in an export config warns, naming the group and rank; a fractional epoch count
// in a recipe is an error (yaml made 1.7 into 1); {"ids": []} records are refused (they
// trained with loss 0).
func TestValidationSaysWhatHappened(t *testing.T) {
	dir, super, _ := relSetup(t, 8)
	sparse := filepath.Join(dir, "sparse.onnx")

	old := filepath.Join(dir, "opset7.onnx")
	m, err := onnx.Load(sparse)
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range m.Proto.GetOpsetImport() {
		if op.GetDomain() == "" || op.GetDomain() == "ai.onnx" {
			v := int64(7)
			op.Version = &v
		}
	}
	if err := m.Save(old, onnx.SaveOptions{ExternalData: true}); err != nil {
		t.Fatal(err)
	}
	m.Close()
	for _, args := range [][]string{
		{"prune", old, "-o", filepath.Join(dir, "p.onnx"), "--method", "magnitude"},
		{"adapt", old, "-o", filepath.Join(dir, "a.onnx")},
	} {
		if _, e, code := shears(t, args...); code != 1 || !strings.Contains(e, "uses ai.onnx opset 7") || !strings.Contains(e, "opset_version=17") {
			t.Errorf("%s on opset 7: %d %s", args[0], code, e)
		}
	}

	huge := filepath.Join(dir, "huge.onnx")
	m, _ = onnx.Load(sparse)
	m.Graph().GetInitializer()[0].Dims = []int64{1 << 62}
	b, _ := m.Marshal()
	m.Close()
	os.WriteFile(huge, b, 0o644)
	if _, e, code := shears(t, "adapt", huge, "-o", filepath.Join(dir, "h.onnx")); code != 1 || !strings.Contains(e, "more than 2^40 elements") {
		t.Errorf("adapt with dims 2^62: %d %s", code, e)
	}

	cfg := filepath.Join(dir, "cfg.json")
	o, e, code := shears(t, "export", "--super", super, "--ranks", "max", "-o", filepath.Join(dir, "max.onnx"), "--json")
	if code != 0 {
		t.Fatalf("export max: %s", e)
	}
	var rep struct {
		Selection struct {
			Ranks map[string]int `json:"ranks"`
		} `json:"selection"`
	}
	if err := json.Unmarshal([]byte(o), &rep); err != nil || len(rep.Selection.Ranks) == 0 {
		t.Fatalf("export report: %v %s", err, o)
	}
	for g := range rep.Selection.Ranks {
		rep.Selection.Ranks[g] = 5
	}
	j, _ := json.Marshal(map[string]any{"ranks": rep.Selection.Ranks})
	os.WriteFile(cfg, j, 0o644)
	if _, e, code := shears(t, "export", "--super", super, "--config", cfg, "-o", filepath.Join(dir, "r5.onnx"), "--json"); code != 0 ||
		!strings.Contains(e, "outside the trained rank space") || !strings.Contains(e, "at rank 5") {
		t.Errorf("export with rank 5 of 8,6,4: %d %s", code, e)
	}

	recipe := filepath.Join(dir, "recipe.yaml")
	os.WriteFile(recipe, []byte("work: w\nmodel: m.onnx\ntokenizer: t.bin\ntrain: {data: d.jsonl, epochs: 1.7}\n"), 0o644)
	if _, e, code := shears(t, "run", recipe); code == 0 || !strings.Contains(e, "train.epochs: 1.7 is not a whole number") {
		t.Errorf("recipe with epochs 1.7: %d %s", code, e)
	}

	empty := filepath.Join(dir, "empty.jsonl")
	os.WriteFile(empty, []byte("{\"ids\": [1, 2, 3]}\n{\"ids\": []}\n"), 0o644)
	if _, e, code := shears(t, trainArgs(super, empty, filepath.Join(dir, "run-empty"))...); code != 1 || !strings.Contains(e, "empty.jsonl:2: record has an empty \"ids\" array") {
		t.Errorf("train on an empty ids record: %d %s", code, e)
	}
}
