package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/shears-ml/shears/models/llama"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
)

// Config says where the harness finds its inputs and how big the measured work is.
type Config struct {
	// Bin is the shears binary run as the measured child process.
	Bin string
	// Work is the folder for generated models and outputs (default /tmp/shears-bench). The 1B
	// synthetic model written there is reused by later runs.
	Work string
	// Shared is the ../shared folder (models/stories260K, data/llm-adapters); empty: shared
	// next to Repo (or next to the working directory when there is no repository).
	Shared string
	// OrtLib is passed to children as --ort-lib when set.
	OrtLib string
	// Threads is passed to children that run onnxruntime as --threads when above 0.
	Threads int
	// Reps repeats the timed steps of loadsave-1b and import-hf-1b (default 1).
	Reps int
	// PruneSamples and PruneSeqLen size prune-1b's calibration (default 8 × 512).
	PruneSamples, PruneSeqLen int
	// OneShot adds a --one-shot run to prune-1b.
	OneShot bool
	// Repo is the repository root, where serve-25m finds scripts/transformersjs and the
	// transformers.js install in .cache/transformers-js; empty: the folder holding go.mod above
	// the working directory.
	Repo string
	// Log receives progress lines and the children's stderr (nil: discarded).
	Log io.Writer
}

// Result is one scenario's outcome: a table (header and rows of formatted cells), the raw
// figures behind it, and notes that say what was measured and how.
type Result struct {
	Scenario string             `json:"scenario"`
	Header   []string           `json:"header"`
	Rows     [][]string         `json:"rows"`
	Figures  map[string]float64 `json:"figures"`
	Notes    []string           `json:"notes,omitempty"`
	Commands []string           `json:"commands,omitempty"`
}

// Scenario is a named benchmark.
type Scenario struct {
	Name    string
	Summary string
	run     func(ctx context.Context, h *harness) (*Result, error)
}

// Scenarios lists the benchmarks in the order "shears bench" runs them by default.
func Scenarios() []Scenario {
	return []Scenario{
		{"inspect-1b", "inspect the 1B synthetic LLaMA (external data, weights not read)", inspect1B},
		{"loadsave-1b", "onnx.Load + Save of the 1B synthetic vs a plain copy of its files", loadSave1B},
		{"ppl-stories", "stories260K held-out perplexity vs sparsity, magnitude and Wanda", pplStories},
		{"prune-1b", "50% Wanda on the 1B synthetic: seconds per stage, peak RSS", prune1B},
		{"quant-compare", "fp32 dense / 50% sparse / int8 / int4 MatMulNBits: size, prefill and decode tokens/s, ppl (stories260K, 25M)", quantCompare},
		{"quant-speed", "quant-compare's size, prefill and decode tokens/s alone (magnitude + RTN, no calibration, no ppl)", quantSpeed},
		{"quantize-1b", "int4 RTN quantization of the 1B synthetic: wall, peak RSS", quantize1B},
		{"generate-25m", "200 tokens from a 25M LLaMA with the KV cache vs without (--no-cache)", generate25M},
		{"gen-gsm8k", "eval --task gen on 100 gsm8k items (stories260K) with the KV cache vs without", genGSM8K},
		{"serve-25m", "shears generate vs transformers.js on one model folder of the 25M LLaMA, 200 tokens", serve25M},
		{"import-hf-1b", "shears import hf of a 1B bf16 checkpoint in 3 shards vs a plain copy of its files", importHF1B},
	}
}

// Run runs the named scenarios (all when names is empty) in order and returns their results.
// A failing scenario stops the run; the results so far are returned with the error.
func Run(ctx context.Context, cfg Config, names []string) ([]*Result, error) {
	h, err := newHarness(cfg)
	if err != nil {
		return nil, err
	}
	byName := map[string]Scenario{}
	var all []string
	for _, s := range Scenarios() {
		byName[s.Name] = s
		all = append(all, s.Name)
	}
	if len(names) == 0 {
		names = all
	}
	for _, n := range names {
		if _, ok := byName[n]; !ok {
			return nil, fmt.Errorf("bench: unknown scenario %q (have %s)", n, strings.Join(all, ", "))
		}
	}
	var out []*Result
	for _, n := range names {
		h.logf("== %s", n)
		r, err := byName[n].run(ctx, h)
		if err != nil {
			return out, fmt.Errorf("bench %s: %w", n, err)
		}
		r.Scenario = n
		out = append(out, r)
	}
	return out, nil
}

type harness struct {
	Config
}

func newHarness(cfg Config) (*harness, error) {
	if cfg.Work == "" {
		cfg.Work = filepath.Join(os.TempDir(), "shears-bench")
	}
	if cfg.Reps <= 0 {
		cfg.Reps = 1
	}
	if cfg.PruneSamples <= 0 {
		cfg.PruneSamples = 8
	}
	if cfg.PruneSeqLen <= 0 {
		cfg.PruneSeqLen = 512
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	if cfg.Repo == "" {
		cfg.Repo = repoRoot()
	}
	if cfg.Shared == "" {
		cfg.Shared = defaultShared(cfg.Repo)
	}
	if cfg.Bin == "" {
		return nil, errors.New("bench: no shears binary given")
	}
	bin, err := filepath.Abs(cfg.Bin)
	if err != nil {
		return nil, fmt.Errorf("bench: binary %s: %w", cfg.Bin, err)
	}
	if fi, err := os.Stat(bin); err != nil || !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("bench: shears binary %s not found (run \"make build\")", cfg.Bin)
	}
	cfg.Bin = bin
	if err := os.MkdirAll(cfg.Work, 0o755); err != nil {
		return nil, fmt.Errorf("bench: work folder: %w", err)
	}
	return &harness{cfg}, nil
}

// defaultShared is ../shared next to the repository root, or next to the working directory
// when there is none.
func defaultShared(repo string) string {
	if repo != "" {
		return filepath.Join(filepath.Dir(repo), "shared")
	}
	wd, err := os.Getwd()
	if err != nil {
		return filepath.Join("..", "shared")
	}
	return filepath.Join(filepath.Dir(wd), "shared")
}

// repoRoot is the folder holding go.mod above the working directory ("" when there is none).
func repoRoot() string {
	wd, err := os.Getwd()
	if err != nil {
		return ""
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		if filepath.Dir(dir) == dir {
			return ""
		}
	}
}

func (h *harness) logf(format string, args ...any) {
	fmt.Fprintf(h.Log, format+"\n", args...)
}

// shared returns the paths of rels under the shared folder, or an error naming the first
// one missing.
func (h *harness) shared(rels ...string) ([]string, error) {
	var out []string
	for _, rel := range rels {
		if h.Shared == "" {
			return nil, fmt.Errorf("no shared folder given (--shared); need %s", rel)
		}
		p := filepath.Join(h.Shared, rel)
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("shared input missing: %s", p)
		}
		out = append(out, p)
	}
	return out, nil
}

// rtArgs are the onnxruntime flags passed to children that run a model.
func (h *harness) rtArgs() []string {
	var a []string
	if h.OrtLib != "" {
		a = append(a, "--ort-lib", h.OrtLib)
	}
	if h.Threads > 0 {
		a = append(a, "--threads", fmt.Sprint(h.Threads))
	}
	return a
}

// Measurement is what one child process cost.
type Measurement struct {
	Seconds float64 // wall time from start to exit
	PeakRSS int64   // bytes: ru_maxrss of the child (and any children it waited for)
	User    float64 // CPU seconds in user mode
	System  float64 // CPU seconds in the kernel
	Stdout  []byte
}

// Measure runs name with args as a child process and returns its wall time, its peak RSS and
// its stdout; stderr goes to log. A non-zero exit is an error that quotes the command.
func Measure(ctx context.Context, log io.Writer, name string, args ...string) (Measurement, error) {
	var m Measurement
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	var tail tailBuffer
	if log == nil {
		log = io.Discard
	}
	cmd.Stderr = io.MultiWriter(log, &tail)
	t0 := time.Now()
	err := cmd.Run()
	m.Seconds = time.Since(t0).Seconds()
	m.Stdout = stdout.Bytes()
	if cmd.ProcessState != nil {
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			m.PeakRSS = int64(ru.Maxrss) * 1024 // Linux reports kilobytes
			m.User = time.Duration(ru.Utime.Nano()).Seconds()
			m.System = time.Duration(ru.Stime.Nano()).Seconds()
		}
	}
	if err != nil {
		return m, fmt.Errorf("%s: %w%s", commandLine(name, args), err, tail.suffix())
	}
	return m, nil
}

// tailBuffer keeps the last lines a child wrote to stderr, for error messages.
type tailBuffer struct{ b []byte }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > 2048 {
		t.b = t.b[len(t.b)-2048:]
	}
	return len(p), nil
}

func (t *tailBuffer) suffix() string {
	s := strings.TrimSpace(string(t.b))
	if s == "" {
		return ""
	}
	if i := strings.LastIndexAny(s, "\r\n"); i >= 0 {
		s = s[i+1:]
	}
	return ": " + s
}

// commandLine renders a command for the report, shell-quoted where needed.
func commandLine(name string, args []string) string {
	parts := []string{name}
	for _, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\"'$\\*?;&|<>()") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

// shears runs the shears binary, recording the command line in r.
func (h *harness) shears(ctx context.Context, r *Result, args ...string) (Measurement, error) {
	r.Commands = append(r.Commands, commandLine("shears", args))
	h.logf("$ %s", commandLine("shears", args))
	return Measure(ctx, h.Log, h.Bin, args...)
}

// model1B writes the 1B synthetic LLaMA (seed 0, fp32, external data) into the work folder,
// or reuses the one there, and returns its path and total size on disk.
func (h *harness) model1B() (string, int64, error) {
	p := filepath.Join(h.Work, "llama-1b.onnx")
	size := func() (int64, error) {
		var n int64
		for _, f := range []string{p, p + ".data"} {
			fi, err := os.Stat(f)
			if err != nil {
				return 0, err
			}
			n += fi.Size()
		}
		return n, nil
	}
	if n, err := size(); err == nil {
		if _, err := onnx.Load(p); err == nil {
			h.logf("reusing %s (%.2f GB)", p, float64(n)/1e9)
			return p, n, nil
		}
	}
	cfg, err := llama.Preset("1b")
	if err != nil {
		return "", 0, err
	}
	h.logf("writing the 1B synthetic model to %s (about 4.4 GB) ...", p)
	t0 := time.Now()
	if err := llama.WriteSynthetic(p, cfg, 0, onnxpb.TensorProto_FLOAT); err != nil {
		return "", 0, err
	}
	n, err := size()
	h.logf("wrote %.2f GB in %.1fs", float64(n)/1e9, time.Since(t0).Seconds())
	return p, n, err
}

// LoadSave is the measured work of loadsave-1b, run inside the child: load in (external data
// stays on disk) and save it to out with external data, streaming tensor by tensor.
func LoadSave(in, out string) error {
	m, err := onnx.Load(in)
	if err != nil {
		return err
	}
	defer m.Close()
	return m.Save(out, onnx.SaveOptions{ExternalData: true})
}

// WriteMarkdown writes Markdown(results) to path atomically (a temporary file renamed into
// place), for "shears bench --markdown-out".
func WriteMarkdown(path string, results []*Result) error {
	return onnx.WriteFileAtomic(path, []byte(Markdown(results)))
}

// Markdown renders results as one markdown section per scenario: a table, then the notes.
func Markdown(results []*Result) string {
	var b strings.Builder
	for i, r := range results {
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "### %s\n\n", r.Scenario)
		b.WriteString(table(r.Header, r.Rows))
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "\n- %s", n)
		}
		if len(r.Notes) > 0 {
			b.WriteString("\n")
		}
		if len(r.Commands) > 0 {
			b.WriteString("\n```\n")
			for _, c := range r.Commands {
				b.WriteString(c + "\n")
			}
			b.WriteString("```\n")
		}
	}
	return b.String()
}

// table renders a markdown table with cells padded to their column's width.
func table(header []string, rows [][]string) string {
	w := make([]int, len(header))
	for i, h := range header {
		w[i] = len([]rune(h))
	}
	for _, r := range rows {
		for i, c := range r {
			if i < len(w) && len([]rune(c)) > w[i] {
				w[i] = len([]rune(c))
			}
		}
	}
	var b strings.Builder
	line := func(cells []string) {
		b.WriteString("|")
		for i := range header {
			c := ""
			if i < len(cells) {
				c = cells[i]
			}
			fmt.Fprintf(&b, " %s%s |", c, strings.Repeat(" ", w[i]-len([]rune(c))))
		}
		b.WriteString("\n")
	}
	line(header)
	b.WriteString("|")
	for i := range header {
		b.WriteString(strings.Repeat("-", w[i]+2) + "|")
	}
	b.WriteString("\n")
	for _, r := range rows {
		line(r)
	}
	return b.String()
}

// gb formats bytes as GB (10^9) with two decimals; mb as MB with no decimals.
func gb(n int64) string { return fmt.Sprintf("%.2f GB", float64(n)/1e9) }
func mb(n int64) string { return fmt.Sprintf("%.0f MB", float64(n)/1e6) }
func secs(s float64) string {
	if s < 10 {
		return fmt.Sprintf("%.2f s", s)
	}
	return fmt.Sprintf("%.1f s", s)
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	k := make([]string, 0, len(m))
	for s := range m {
		k = append(k, s)
	}
	sort.Strings(k)
	return k
}
