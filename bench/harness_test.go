package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/models/llama"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
)

// The test binary doubles as a child process: with BENCH_TEST_ALLOC_MB set it touches that many
// megabytes and exits, with BENCH_TEST_FAIL set it writes to stderr and exits 3, with
// BENCH_TEST_WRITE set it writes 1000 bytes to that file and prints its last argument.
func TestMain(m *testing.M) {
	if p := os.Getenv("BENCH_TEST_WRITE"); p != "" {
		if err := os.WriteFile(p, make([]byte, 1000), 0o644); err != nil {
			os.Exit(1)
		}
		fmt.Print(os.Args[len(os.Args)-1])
		os.Exit(0)
	}
	if s := os.Getenv("BENCH_TEST_ALLOC_MB"); s != "" {
		n, _ := strconv.Atoi(s)
		buf := make([]byte, n<<20)
		for i := 0; i < len(buf); i += 4096 {
			buf[i] = 1
		}
		fmt.Println(len(buf))
		os.Exit(0)
	}
	if os.Getenv("BENCH_TEST_FAIL") != "" {
		fmt.Fprintln(os.Stderr, "loading\nchild: boom")
		os.Exit(3)
	}
	os.Exit(m.Run())
}

func child(t *testing.T, env string) (Measurement, error) {
	t.Helper()
	t.Setenv(strings.SplitN(env, "=", 2)[0], strings.SplitN(env, "=", 2)[1])
	return Measure(context.Background(), nil, os.Args[0], "-test.run=^$")
}

// The peak RSS is the child's own: a child touching 300 MB reports at least that, one touching
// 20 MB stays far below, whatever the parent holds.
func TestMeasurePeakRSSIsTheChilds(t *testing.T) {
	big, err := child(t, "BENCH_TEST_ALLOC_MB=300")
	if err != nil {
		t.Fatal(err)
	}
	if big.PeakRSS < 300<<20 || big.PeakRSS > 450<<20 {
		t.Errorf("300 MB child: peak RSS %d bytes, want in [300, 450] MiB", big.PeakRSS)
	}
	if got := strings.TrimSpace(string(big.Stdout)); got != strconv.Itoa(300<<20) {
		t.Errorf("child stdout %q, want %d", got, 300<<20)
	}
	small, err := child(t, "BENCH_TEST_ALLOC_MB=20")
	if err != nil {
		t.Fatal(err)
	}
	if small.PeakRSS < 20<<20 || small.PeakRSS > 100<<20 {
		t.Errorf("20 MB child: peak RSS %d bytes, want in [20, 100] MiB", small.PeakRSS)
	}
	if big.User+big.System <= 0 {
		t.Errorf("300 MB child: no CPU time recorded (user %g, sys %g)", big.User, big.System)
	}
	if big.Seconds <= 0 || small.Seconds <= 0 {
		t.Errorf("wall times %g, %g: want > 0", big.Seconds, small.Seconds)
	}
}

func TestMeasureErrorQuotesCommandAndLastStderrLine(t *testing.T) {
	var log bytes.Buffer
	t.Setenv("BENCH_TEST_FAIL", "1")
	_, err := Measure(context.Background(), &log, os.Args[0], "-test.run=^$", "with space")
	if err == nil {
		t.Fatal("want an error from a child exiting 3")
	}
	for _, want := range []string{"exit status 3", "child: boom", "'with space'"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "loading") {
		t.Errorf("error %q should keep only the last stderr line", err)
	}
	if !strings.Contains(log.String(), "loading\nchild: boom") {
		t.Errorf("log got %q, want the child's whole stderr", log.String())
	}
}

func TestMarkdownTable(t *testing.T) {
	r := &Result{Scenario: "demo", Header: []string{"step", "wall"},
		Rows:     [][]string{{"copy", "3.54 s"}, {"Load + Save (é)", "11.2 s"}},
		Notes:    []string{"best of 2"},
		Commands: []string{"shears inspect M --json"}}
	want := "### demo\n\n" +
		"| step            | wall   |\n" +
		"|-----------------|--------|\n" +
		"| copy            | 3.54 s |\n" +
		"| Load + Save (é) | 11.2 s |\n" +
		"\n- best of 2\n" +
		"\n```\nshears inspect M --json\n```\n"
	if got := Markdown([]*Result{r}); got != want {
		t.Errorf("markdown:\n%s\nwant:\n%s", got, want)
	}
}

func TestCommandLineQuotes(t *testing.T) {
	got := commandLine("sh", []string{"-c", "cp a b && sync", "it's", "plain/path.onnx", ""})
	want := `sh -c 'cp a b && sync' 'it'\''s' plain/path.onnx ''`
	if got != want {
		t.Errorf("got %s\nwant %s", got, want)
	}
}

func TestDedupeShapesKeepsOnePerVerbAndMethod(t *testing.T) {
	in := []string{
		"shears import llama2c a.bin -o m.onnx",
		"shears eval m.onnx --task ppl",
		"shears prune m.onnx --method magnitude --sparsity 0",
		"shears eval m0.onnx --task ppl",
		"shears prune m.onnx --method wanda --sparsity 0",
		"shears prune m.onnx --method magnitude --sparsity 0.3",
	}
	got := dedupeShapes(in)
	want := []string{in[0], in[1], in[2], in[4]}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got %q\nwant %q", got, want)
	}
}

func TestRunRefusesUnknownScenarioAndMissingBinary(t *testing.T) {
	_, err := Run(context.Background(), Config{Bin: os.Args[0], Work: t.TempDir()}, []string{"inspect-1b", "nope"})
	if err == nil || !strings.Contains(err.Error(), `"nope"`) || !strings.Contains(err.Error(), "prune-1b") {
		t.Errorf("want an error naming \"nope\" and the scenarios, got %v", err)
	}
	_, err = Run(context.Background(), Config{Bin: filepath.Join(t.TempDir(), "shears"), Work: t.TempDir()}, nil)
	if err == nil || !strings.Contains(err.Error(), "make build") {
		t.Errorf("want an error about the missing binary, got %v", err)
	}
}

func TestSharedNamesTheMissingPath(t *testing.T) {
	h := &harness{Config{Shared: "/nonexistent/shared"}}
	_, err := h.shared(tok512, arcTrain)
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/shared/models/stories260K/tok512.bin") {
		t.Errorf("got %v", err)
	}
}

// LoadSave (the measured child work of loadsave-1b) writes the same tensors it read.
func TestLoadSaveRoundTrip(t *testing.T) {
	dir := t.TempDir()
	cfg, err := llama.Preset("tiny")
	if err != nil {
		t.Fatal(err)
	}
	in, out := filepath.Join(dir, "in.onnx"), filepath.Join(dir, "sub", "out.onnx")
	if err := llama.WriteSynthetic(in, cfg, 1, onnxpb.TensorProto_FLOAT); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(filepath.Dir(out), 0o755)
	if err := LoadSave(in, out); err != nil {
		t.Fatal(err)
	}
	a, err := onnx.Load(in)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := onnx.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := os.Stat(out + ".data"); err != nil {
		t.Errorf("no external data file: %v", err)
	}
	ia, ib := a.Graph().GetInitializer(), b.Graph().GetInitializer()
	if len(ia) != len(ib) || len(ia) == 0 {
		t.Fatalf("%d initializers in, %d out", len(ia), len(ib))
	}
	for i := range ia {
		ra, err := a.RawData(ia[i])
		if err != nil {
			t.Fatal(err)
		}
		rb, err := b.RawData(ib[i])
		if err != nil {
			t.Fatal(err)
		}
		if ia[i].GetName() != ib[i].GetName() || !bytes.Equal(ra, rb) {
			t.Fatalf("initializer %d (%s) differs after Load+Save", i, ia[i].GetName())
		}
	}
	if err := LoadSave(filepath.Join(dir, "missing.onnx"), out); err == nil || !strings.Contains(err.Error(), "missing.onnx") {
		t.Errorf("want an error naming missing.onnx, got %v", err)
	}
}

// buildShears builds the CLI into a temporary folder for the benchmarks.
func buildShears(b *testing.B) string {
	b.Helper()
	bin := filepath.Join(b.TempDir(), "shears")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/shears-ml/shears/cmd/shears")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("go build shears: %v\n%s", err, out)
	}
	return bin
}

// BenchmarkScenarios runs every scenario once per iteration and reports the figures as metrics.
// It needs SHEARS_BENCH_BIG=1 (the 1B scenarios write 4.4 GB and take minutes), so "go test
// ./..." and "make test" skip it.
func BenchmarkScenarios(b *testing.B) {
	if os.Getenv("SHEARS_BENCH_BIG") != "1" {
		b.Skip("set SHEARS_BENCH_BIG=1 to run the scenarios (1B model: 4.4 GB in $TMPDIR/shears-bench, minutes)")
	}
	bin := buildShears(b)
	shared := filepath.Join(testkit.RepoRoot(b), "..", "shared")
	for _, s := range Scenarios() {
		b.Run(s.Name, func(b *testing.B) {
			for b.Loop() {
				res, err := Run(context.Background(), Config{Bin: bin, Shared: shared, Log: os.Stderr}, []string{s.Name})
				if err != nil {
					b.Fatal(err)
				}
				for _, k := range sortedKeys(res[0].Figures) {
					if strings.HasSuffix(k, "_seconds") || strings.HasSuffix(k, "_bytes") || strings.HasSuffix(k, "_ppl") || strings.HasSuffix(k, "_over_copy") {
						b.ReportMetric(res[0].Figures[k], k)
					}
				}
			}
		})
	}
}

// BenchmarkLoadSaveTiny is the in-process load/save of the tiny preset: small enough to run
// with "make bench" by default.
func BenchmarkLoadSaveTiny(b *testing.B) {
	dir := b.TempDir()
	cfg, err := llama.Preset("tiny")
	if err != nil {
		b.Fatal(err)
	}
	in := filepath.Join(dir, "in.onnx")
	if err := llama.WriteSynthetic(in, cfg, 1, onnxpb.TensorProto_FLOAT); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := LoadSave(in, filepath.Join(dir, "out.onnx")); err != nil {
			b.Fatal(err)
		}
	}
}

// copyBaseline alternates the copies (plain, pre-faulted, direct) and the command h.Reps times,
// keeps every rep, reports the command's stdout and output size, lists the copies first among
// the commands, and leaves neither copy nor output.
func TestCopyBaseline(t *testing.T) {
	dir := t.TempDir()
	src, out := filepath.Join(dir, "src.bin"), filepath.Join(dir, "run", "out.bin")
	if err := os.WriteFile(src, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(filepath.Dir(out), 0o755)
	t.Setenv("BENCH_TEST_WRITE", out)
	h := &harness{Config{Bin: os.Args[0], Reps: 3, Log: io.Discard}}
	r := &Result{}
	v, err := h.copyBaseline(context.Background(), r, copyOptions{Direct: true, Prefault: 1 << 20}, filepath.Join(dir, "run"), src, []string{out}, "import", "--json")
	if err != nil {
		t.Fatal(err)
	}
	if string(v.Stdout) != "--json" || v.Written != 1000 || !(v.Copy.Best.Seconds > 0) || !(v.Prefaulted.Best.Seconds > 0) || !(v.Direct.Best.Seconds > 0) || !(v.Run.Best.Seconds > 0) {
		t.Errorf("stdout %q, written %d, copy %gs, pre-faulted copy %gs, direct copy %gs, run %gs", v.Stdout, v.Written, v.Copy.Best.Seconds, v.Prefaulted.Best.Seconds, v.Direct.Best.Seconds, v.Run.Best.Seconds)
	}
	for _, tm := range []timing{v.Copy, v.Prefaulted, v.Direct, v.Run} {
		if len(tm.Walls) != 3 || tm.Best.Seconds != slices.Min(tm.Walls) || tm.Median() < tm.Best.Seconds || tm.Median() > slices.Max(tm.Walls) {
			t.Errorf("walls %v, best %g, median %g", tm.Walls, tm.Best.Seconds, tm.Median())
		}
	}
	// RunOver is the median of the reps' own ratios, not a ratio of medians.
	vc := versusCopy{Copy: timing{Walls: []float64{1, 4, 2}}, Run: timing{Walls: []float64{3, 4, 1}}}
	if got := vc.RunOver(vc.Copy); got != 1 { // ratios 3, 1, 0.5
		t.Errorf("RunOver = %g, want 1", got)
	}
	if len(r.Commands) != 4 || !strings.HasPrefix(r.Commands[0], "sh -c 'cp "+src) || !strings.Contains(r.Commands[0], "&& sync ") ||
		!strings.Contains(r.Commands[1], "if=/dev/zero") || !strings.Contains(r.Commands[2], "oflag=direct") || !strings.HasPrefix(r.Commands[3], "shears import --json") {
		t.Errorf("commands %q", r.Commands)
	}
	for _, p := range []string{out, filepath.Join(dir, "run", "copy")} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s left behind (%v)", p, err)
		}
	}
}
