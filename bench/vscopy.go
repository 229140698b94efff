package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
)

// versusCopy is what copyBaseline measured: the fastest plain copy, the fastest direct-I/O copy
// (when asked for), the fastest shears run, that command's last stdout and the size of the
// outputs it wrote.
type versusCopy struct {
	Copy, Direct, Run Measurement
	Stdout            []byte
	Written           int64
}

// copyBaseline's options.
type copyOptions struct {
	// Direct adds a reference copy that writes with O_DIRECT (dd oflag=direct, then sync),
	// bypassing the page cache as shears' Save does: the floor of the disk itself, for
	// context. The goal ratios stay against the plain copy.
	Direct bool
}

// copyBaseline times a plain copy of files (cp into dir/copy, then sync of the copies: the same
// bytes on the same file system, fsynced as shears' Save fsyncs) against the shears command
// args, which writes outputs, alternating them h.Reps times (in rotated order) and keeping the
// fastest of each.
// files is a shell word list (globs allowed). The copies and the outputs are removed before each
// run and at the end; r gets the command lines, the copies' first.
func (h *harness) copyBaseline(ctx context.Context, r *Result, o copyOptions, dir, files string, outputs []string, args ...string) (versusCopy, error) {
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
	ddCmd := fmt.Sprintf(`for f in %s; do dd if="$f" of=%s/"$(basename "$f")" bs=64M oflag=direct status=none || exit 1; done && sync %s/*`, files, copyDir, copyDir)
	type timed struct {
		cmd  string
		best *Measurement
	}
	copies := []timed{{cpCmd, &v.Copy}}
	if o.Direct {
		copies = append(copies, timed{ddCmd, &v.Direct})
	}
	fastest := func(old, new Measurement) Measurement {
		if old.Seconds == 0 || new.Seconds < old.Seconds {
			return new
		}
		return old
	}
	// Each rep runs the copies and the command in a rotated order, so that none always follows
	// another's gigabytes of writes (the disk's own cache is still busy with them).
	steps := len(copies) + 1
	for rep := 0; rep < h.Reps; rep++ {
		clean()
		for k := 0; k < steps; k++ {
			i := (k + rep) % steps
			if i < len(copies) {
				c := copies[i]
				if err := os.MkdirAll(copyDir, 0o755); err != nil {
					return v, err
				}
				h.logf("$ sh -c %q", c.cmd)
				m, err := Measure(ctx, h.Log, "sh", "-c", c.cmd)
				if err != nil {
					return v, err
				}
				*c.best = fastest(*c.best, m)
				os.RemoveAll(copyDir)
				continue
			}
			var m Measurement
			var err error
			if v.Run.Seconds > 0 {
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
	}
	for _, o := range outputs {
		fi, err := os.Stat(o)
		if err != nil {
			return v, fmt.Errorf("output of shears %s: %w", args[0], err)
		}
		v.Written += fi.Size()
	}
	var cmds []string
	for _, c := range copies {
		cmds = append(cmds, "sh -c '"+c.cmd+"'")
	}
	r.Commands = append(cmds, r.Commands...)
	return v, nil
}
