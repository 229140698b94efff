package main

import (
	"bufio"
	"context"
	"os/exec"
	"strconv"
	"strings"
	"sync"
)

// memPoller samples the GPU's used memory (nvidia-smi, every 100 ms) while a measurement runs.
// The peak is reported over the level before it started, so what other processes hold is not
// counted. Without nvidia-smi it measures nothing.
type memPoller struct {
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	base   float64
	peak   float64
}

func hasNvidiaSMI() bool {
	_, err := exec.LookPath("nvidia-smi")
	return err == nil
}

// usedMiB is the GPU's memory in use now (the first GPU), or -1.
func usedMiB() float64 {
	out, err := exec.Command("nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits").Output()
	if err != nil {
		return -1
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0]), 64)
	if err != nil {
		return -1
	}
	return v
}

func startMem() *memPoller {
	if !hasNvidiaSMI() {
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &memPoller{cancel: cancel, done: make(chan struct{}), base: usedMiB()}
	cmd := exec.CommandContext(ctx, "nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-lms", "100")
	out, err := cmd.StdoutPipe()
	if err != nil || cmd.Start() != nil {
		cancel()
		return nil
	}
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if v, err := strconv.ParseFloat(strings.TrimSpace(sc.Text()), 64); err == nil {
				p.mu.Lock()
				if v > p.peak {
					p.peak = v
				}
				p.mu.Unlock()
			}
		}
		cmd.Wait()
	}()
	return p
}

// stop ends sampling and returns the peak over the starting level in MiB (0 when unmeasured).
func (p *memPoller) stop() float64 {
	if p == nil {
		return 0
	}
	if v := usedMiB(); v > 0 { // a last sample, in case the measurement was shorter than one period
		p.mu.Lock()
		if v > p.peak {
			p.peak = v
		}
		p.mu.Unlock()
	}
	p.cancel()
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.base < 0 || p.peak <= p.base {
		return 0
	}
	return p.peak - p.base
}
