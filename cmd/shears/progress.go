package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/shears-ml/shears/pipeline"
)

// progress draws a one-line progress bar on stderr; it redraws at most ten times a second.
// When stderr is not a terminal (CI logs, pipes) it prints a plain line every 10 seconds and
// at the end instead, so logs stay readable.
type progress struct {
	w     io.Writer
	label string
	start time.Time
	last  time.Time
	drawn bool
	tty   bool
}

func newProgress(w io.Writer, label string) *progress {
	return &progress{w: w, label: label, start: time.Now(), tty: isTerminal(w)}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// set draws done/total with an optional suffix (e.g. "loss 2.31").
func (p *progress) set(done, total int, suffix string) {
	now := time.Now()
	if !p.tty {
		if done < total && now.Sub(p.last) < 10*time.Second {
			return
		}
		p.last = now
		fmt.Fprintf(p.w, "%s %d/%d %s (%s)\n", p.label, done, total, suffix, now.Sub(p.start).Round(time.Millisecond))
		return
	}
	if done < total && now.Sub(p.last) < 100*time.Millisecond {
		return
	}
	p.last = now
	const width = 28
	frac := 0.0
	if total > 0 {
		frac = float64(done) / float64(total)
	}
	n := int(frac * width)
	eta := ""
	if done > 0 && done < total {
		rem := time.Duration(float64(now.Sub(p.start)) * (1 - frac) / frac)
		eta = " ETA " + rem.Round(time.Second).String()
	}
	fmt.Fprintf(p.w, "\r%s [%s%s] %d/%d%s %s\033[K", p.label, strings.Repeat("█", n), strings.Repeat("░", width-n), done, total, eta, suffix)
	p.drawn = true
}

// relabel changes the label (e.g. the block being calibrated).
func (p *progress) relabel(label string) { p.label = label }

// done ends the line.
func (p *progress) done() {
	if p.drawn {
		fmt.Fprintln(p.w)
		p.drawn = false
	}
}

// stageBar draws the progress Events of pipeline stages with one bar on stderr: the label is
// the Event's stage, and a stage's bar ends its line when its last unit is done (a recipe's
// next stage starts a fresh bar). A nil *stageBar (--no-progress) draws nothing.
type stageBar struct {
	w   io.Writer
	bar *progress
}

// progressBar is the stage bar of a command, nil when on is false.
func (env *cliEnv) progressBar(on bool) *stageBar {
	if !on {
		return nil
	}
	return &stageBar{w: env.stderr}
}

// fn is the callback to hand a stage (nil for a nil bar, so the stage skips its reports).
func (b *stageBar) fn() pipeline.ProgressFunc {
	if b == nil {
		return nil
	}
	return b.report
}

func (b *stageBar) report(e pipeline.Event) {
	if b.bar == nil {
		b.bar = newProgress(b.w, e.Stage)
	}
	b.bar.relabel(e.Stage)
	b.bar.set(e.Done, e.Total, e.Detail)
	if e.Total > 0 && e.Done >= e.Total {
		b.done()
	}
}

// done ends the current bar's line.
func (b *stageBar) done() {
	if b != nil && b.bar != nil {
		b.bar.done()
		b.bar = nil
	}
}
