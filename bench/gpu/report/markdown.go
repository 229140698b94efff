package report

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/shears-ml/shears/onnx"
)

// Markdown renders the results as the tables bench/RESULTS.md takes: every measurement, the
// shears/PyTorch ratio per shape and stage, and what did not run, by name.
func (res Results) Markdown() string {
	var b strings.Builder
	m := res.Machine
	fmt.Fprintf(&b, "GPU check, %s. Machine: %s; %d cores (%s); GPU: %s", m.Date, m.Host, m.Cores, m.CPU, m.GPU)
	if m.GPUMemMiB > 0 {
		fmt.Fprintf(&b, " (%.0f MiB", m.GPUMemMiB)
		if m.Driver != "" {
			fmt.Fprintf(&b, ", driver %s", m.Driver)
		}
		b.WriteString(")")
	}
	fmt.Fprintf(&b, ". shears on %s (onnxruntime %s)", m.Device, m.ORT)
	if m.Torch != "" {
		fmt.Fprintf(&b, "; PyTorch %s", m.Torch)
	}
	if m.Note != "" {
		fmt.Fprintf(&b, "; %s", m.Note)
	}
	fmt.Fprintf(&b, ".\nCommand: `%s`\n\n", m.Command)

	b.WriteString("| shape | stage | dtype | batch × seq | engine | device | tokens/s | TFLOP/s | of dense peak | peak memory | note |\n")
	b.WriteString("|---|---|---|---|---|---|---:|---:|---:|---:|---|\n")
	for _, r := range res.Rows {
		tps, tf, of, mem := "—", "—", "—", "—"
		if r.OK() {
			tps = fmt.Sprintf("%.0f", r.TokensPerS)
			tf = fmt.Sprintf("%.3g", r.TFLOPS)
			if r.PeakTFLOPS > 0 {
				of = fmt.Sprintf("%.1f%% of %.0f", 100*r.OfPeak, r.PeakTFLOPS)
			}
		}
		if r.PeakMemMiB > 0 {
			mem = fmt.Sprintf("%.0f MiB (%s)", r.PeakMemMiB, r.MemSource)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %d × %d | %s | %s | %s | %s | %s | %s | %s |\n",
			r.Shape, r.Stage, r.DType, r.Batch, r.Seq, r.Engine, r.Device, tps, tf, of, mem, cell(r.note()))
	}

	if pairs := res.pairs(); len(pairs) > 0 {
		b.WriteString("\n| shape | stage | shears tokens/s | PyTorch tokens/s | shears / PyTorch |\n|---|---|---:|---:|---:|\n")
		for _, p := range pairs {
			fmt.Fprintf(&b, "| %s | %s | %.0f (%s %s) | %.0f (%s %s) | %.2f× |\n", p.s.Shape, p.s.Stage,
				p.s.TokensPerS, p.s.Device, p.s.DType, p.p.TokensPerS, p.p.Device, p.p.DType, p.s.TokensPerS/p.p.TokensPerS)
		}
	}

	var failed []string
	for _, r := range res.Rows {
		if r.Error != "" {
			failed = append(failed, fmt.Sprintf("- %s %s %s %s on %s: %s", r.Engine, r.Shape, r.DType, r.Stage, r.Device, r.Error))
		}
		if r.Placement != nil && r.Placement.Error != "" {
			failed = append(failed, fmt.Sprintf("- %s %s %s %s on %s: no profile: %s", r.Engine, r.Shape, r.DType, r.Stage, r.Device, r.Placement.Error))
		}
		if r.Placement != nil && len(r.Placement.OffDevice) > 0 {
			var ops []string
			for _, op := range r.Placement.OffOps() {
				ops = append(ops, fmt.Sprintf("%s ×%d", op, r.Placement.OffDevice[op]))
			}
			failed = append(failed, fmt.Sprintf("- %s %s %s %s: %d nodes on %s; left to the CPU: %s",
				r.Engine, r.Shape, r.DType, r.Stage, r.Placement.OnDevice, r.Placement.Provider, strings.Join(ops, ", ")))
		}
	}
	if len(failed) > 0 {
		b.WriteString("\nNot run, or not run on the device:\n\n" + strings.Join(failed, "\n") + "\n")
	}
	return b.String()
}

func (r Row) note() string {
	switch {
	case r.Error != "":
		return "failed (below)"
	case r.Skipped != "":
		return "skipped: " + r.Skipped
	case r.Placement != nil && len(r.Placement.OffDevice) > 0:
		return fmt.Sprintf("%d op types on the CPU (below)", len(r.Placement.OffDevice))
	}
	return ""
}

// cell keeps a value from breaking the table.
func cell(s string) string { return strings.ReplaceAll(strings.ReplaceAll(s, "|", "/"), "\n", " ") }

type pair struct{ s, p Row }

// pairs matches each shears figure with PyTorch's for the same shape, stage and batch × seq.
func (res Results) pairs() []pair {
	var out []pair
	for _, s := range res.Rows {
		if s.Engine != "shears" || !s.OK() {
			continue
		}
		for _, p := range res.Rows {
			if p.Engine == "pytorch" && p.OK() && p.Shape == s.Shape && p.Stage == s.Stage && p.Batch == s.Batch && p.Seq == s.Seq {
				out = append(out, pair{s, p})
				break
			}
		}
	}
	return out
}

// Write writes results.json and results.md into dir, each atomically.
func (res Results) Write(dir string) error {
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := onnx.WriteFileAtomic(filepath.Join(dir, "results.json"), append(b, '\n')); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := onnx.WriteFileAtomic(filepath.Join(dir, "results.md"), []byte(res.Markdown())); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}
