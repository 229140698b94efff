package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
)

// versusCopy is what copyBaseline measured: the fastest plain copy, the fastest shears run,
// that command's last stdout and the size of the outputs it wrote.
type versusCopy struct {
	Copy, Run Measurement
	Stdout    []byte
	Written   int64
}

// copyBaseline times a plain copy of files (cp into dir/copy, then sync of the copies: the same
// bytes on the same file system, fsynced as shears' Save fsyncs) against the shears command
// args, which writes outputs, alternating them h.Reps times and keeping the fastest of each.
// files is a shell word list (globs allowed). The copy and the outputs are removed before each
// run and at the end; r gets both command lines.
func (h *harness) copyBaseline(ctx context.Context, r *Result, dir, files string, outputs []string, args ...string) (versusCopy, error) {
	var v versusCopy
	copyDir := filepath.Join(dir, "copy")
	clean := func() {
		os.RemoveAll(copyDir)
		for _, o := range outputs {
			os.Remove(o)
		}
	}
	clean()
	defer clean()
	cpCmd := fmt.Sprintf("cp %s %s/ && sync %s/*", files, copyDir, copyDir)
	fastest := func(old, new Measurement) Measurement {
		if old.Seconds == 0 || new.Seconds < old.Seconds {
			return new
		}
		return old
	}
	for rep := 0; rep < h.Reps; rep++ {
		clean()
		if err := os.MkdirAll(copyDir, 0o755); err != nil {
			return v, err
		}
		h.logf("$ sh -c %q", cpCmd)
		m, err := Measure(ctx, h.Log, "sh", "-c", cpCmd)
		if err != nil {
			return v, err
		}
		v.Copy = fastest(v.Copy, m)
		os.RemoveAll(copyDir) // the copy's pages leave the cache's dirty list before the run
		if rep > 0 {
			h.logf("$ %s", commandLine("shears", args))
			m, err = Measure(ctx, h.Log, h.Bin, args...)
		} else {
			m, err = h.shears(ctx, r, args...)
		}
		if err != nil {
			return v, err
		}
		v.Run = fastest(v.Run, m)
		v.Stdout = m.Stdout
	}
	for _, o := range outputs {
		fi, err := os.Stat(o)
		if err != nil {
			return v, fmt.Errorf("output of shears %s: %w", args[0], err)
		}
		v.Written += fi.Size()
	}
	r.Commands = append([]string{"sh -c '" + cpCmd + "'"}, r.Commands...)
	return v, nil
}
