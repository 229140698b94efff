// Package pipeline is the Shears pipeline as library calls: the stage functions that the
// single CLI commands (import, inspect, convert, prune, quantize, adapt, train, search, export,
// eval, generate, gradcheck) and "shears run" share, each with typed Options (a Check that names
// the flag a bad value came from, as an ErrUsage error) and a Report; the session options
// (RuntimeConfig loads onnxruntime into RuntimeOptions; DeviceList); the one JSON form of
// reports (MarshalJSON, WriteJSON); and the recipe runner that chains the stages — prune →
// adapt → train → search → export → eval — under one work directory.
//
// Why a package of its own. A recipe run and the single commands must do the same thing for
// the same options; keeping each stage's body here (and only flag parsing and printing in
// cmd/shears) makes that true by construction, and lets tests and benchmarks drive the whole
// pipeline without a child process.
//
// Resumability. Every stage writes its outputs atomically into its own folder of the work
// directory and then a manifest (manifest.json) holding a hash of its options and of its
// inputs (external files by content, upstream stages by their own hash). A later run skips a
// stage whose manifest hash matches and whose outputs exist, so editing one stage's options
// reruns that stage and those downstream of it only. An interrupted training stage resumes
// from its last checkpoint (TrainOptions.Resume) when its hash is unchanged.
//
// Run directories. Train owns the run directory's format (rundir.go: run.json, metrics and
// samples as JSON lines, checkpoint and adapter safetensors, the loss plot; digests of the
// inputs): it prepares the inputs and run.json, hands nls's training loop the directory as its
// Store, and finishes with the adapter and the plot. OpenRun reads a run back for Search and
// Export; nls itself never touches a file.
//
// Progress. Long stages report through one callback shape, ProgressFunc (an Event per
// training step or search evaluation); the CLI draws every stage's Events with one bar.
package pipeline
