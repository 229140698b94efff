package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// interruptContext is cancelled by the first SIGINT (Ctrl-C) or SIGTERM (what schedulers and
// "docker stop" send): long commands then finish their current step, write a checkpoint and
// exit non-zero saying how to resume. After the first signal the default handling is
// restored, so a second one ends the process at once; every file shears writes is renamed
// into place whole, so that loses at most the steps since the last checkpoint. stop releases
// the handler (call it when the command ends).
func interruptContext(stderr io.Writer) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-ch:
			signal.Stop(ch)
			signal.Reset(os.Interrupt, syscall.SIGTERM)
			fmt.Fprintf(stderr, "\nshears: %v: finishing the current step and writing a checkpoint (send it again to quit at once)\n", s)
			cancel()
		case <-done:
		}
	}()
	var once sync.Once
	return ctx, func() {
		once.Do(func() {
			signal.Stop(ch)
			close(done)
			cancel()
		})
	}
}
