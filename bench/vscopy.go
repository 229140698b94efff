package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
)

// timing is every rep of one step of copyBaseline.
type timing struct {
	Best   Measurement // the fastest rep
	Walls  []float64   // every rep's wall time, in order
	MaxRSS int64       // the highest peak RSS of any rep
}

// Median is the median wall time of the reps (0 when none ran).
func (t timing) Median() float64 { return median(t.Walls) }

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(xs))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func (t *timing) add(m Measurement) {
	if t.Best.Seconds == 0 || m.Seconds < t.Best.Seconds {
		t.Best = m
	}
	t.Walls = append(t.Walls, m.Seconds)
	t.MaxRSS = max(t.MaxRSS, m.PeakRSS)
}

// versusCopy is what copyBaseline measured: the plain copy, the copy into pre-faulted memory
// and the direct-I/O copy (when asked for), the shears command, that command's last stdout and
// the size of the outputs it wrote.
type versusCopy struct {
	Copy, Prefaulted, Direct, Run timing
	Stdout                        []byte
	Written                       int64
}

// RunOver is the median over reps of the command's wall time divided by the given copy's in
// the same rep (adjacent in time, so a slow spell of the machine stretches both).
func (v versusCopy) RunOver(copy timing) float64 {
	var r []float64
	for i := range min(len(copy.Walls), len(v.Run.Walls)) {
		r = append(r, v.Run.Walls[i]/copy.Walls[i])
	}
	return median(r)
}

// copyBaseline's options.
type copyOptions struct {
	// Direct adds a reference copy that writes with O_DIRECT (dd oflag=direct, then sync),
	// bypassing the page cache as shears' Save does: the floor of the disk itself, for
	// context.
	Direct bool
	// Prefault, when positive, adds the plain copy once more, right after this process made
	// that many bytes of memory resident and freed them: the copy at its best (see prefault).
	Prefault int64
}

// copyBaseline times a plain copy of files (cp into dir/copy, then sync of the copies: the same
// bytes on the same file system, fsynced as shears' Save fsyncs) against the shears command
// args, which writes outputs, alternating them h.Reps times (in rotated order) and keeping
// every rep. files is a shell word list (globs allowed). The copies and the outputs are removed
// before each run and at the end; r gets the command lines, the copies' first.
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
	type step struct {
		cmd      string // "" for the shears command
		prefault int64
		t        *timing
	}
	steps := []step{{cmd: cpCmd, t: &v.Copy}}
	if o.Prefault > 0 {
		steps = append(steps, step{cmd: cpCmd, prefault: o.Prefault, t: &v.Prefaulted})
	}
	if o.Direct {
		steps = append(steps, step{cmd: ddCmd, t: &v.Direct})
	}
	steps = append(steps, step{t: &v.Run})
	// Each rep runs the steps in a rotated order, so that none always follows another's
	// gigabytes of writes (the disk's own cache is still busy with them).
	for rep := 0; rep < h.Reps; rep++ {
		clean()
		for k := range steps {
			s := steps[(k+rep)%len(steps)]
			if s.cmd != "" {
				if err := os.MkdirAll(copyDir, 0o755); err != nil {
					return v, err
				}
				if s.prefault > 0 {
					h.logf("$ %s", prefaultCmd(s.prefault))
					if _, err := Measure(ctx, h.Log, "sh", "-c", prefaultCmd(s.prefault)); err != nil {
						// Not enough memory to spare: this copy is then one more as it comes.
						h.logf("pre-faulting skipped: %v", err)
					}
				}
				h.logf("$ sh -c %q", s.cmd)
				m, err := Measure(ctx, h.Log, "sh", "-c", s.cmd)
				if err != nil {
					return v, err
				}
				s.t.add(m)
				os.RemoveAll(copyDir)
				continue
			}
			var m Measurement
			var err error
			if len(v.Run.Walls) > 0 {
				h.logf("$ %s", commandLine("shears", args))
				m, err = Measure(ctx, h.Log, h.Bin, args...)
			} else {
				m, err = h.shears(ctx, r, args...)
			}
			if err != nil {
				return v, err
			}
			v.Run.add(m)
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
	for _, s := range steps {
		switch {
		case s.prefault > 0:
			cmds = append(cmds, "sh -c '"+prefaultCmd(s.prefault)+"' # then the copy again")
		case s.cmd != "":
			cmds = append(cmds, "sh -c '"+s.cmd+"'")
		}
	}
	r.Commands = append(cmds, r.Commands...)
	return v, nil
}

// prefaultCmd makes n bytes of memory resident in a child process (dd reading /dev/zero into
// one buffer of that size), which frees them as it exits, so that the pages the next step
// allocates (a copy's page cache) are ones the hypervisor has already backed. On a VM that
// hands free memory back to its host (virtio-balloon free page reporting, as on the Firecracker
// VMs this project runs on), faulting such memory in again costs the guest 4-7 s of kernel time
// per GB, and whether cp's 2.2 GB of page cache landed on backed memory or not swung its time
// from 1.4 to 15 s between runs. Freed pages stay backed for a couple of seconds (the reporting
// waits that long), so the step follows at once. A child, not this process, so that the
// children's peak RSS (inherited at fork) stays theirs.
func prefaultCmd(n int64) string {
	return fmt.Sprintf("dd if=/dev/zero of=/dev/null bs=%dK count=1 iflag=fullblock status=none", (n+1023)/1024)
}
