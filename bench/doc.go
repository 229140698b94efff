// Package bench is the benchmark harness behind "shears bench": named scenarios that run the
// shears binary as a child process and report wall time and the child's peak resident set
// (getrusage of the waited child, so the memory figure is the tool's own, not the harness's).
//
// Every ratio is taken against a baseline measured in the same run (a plain file copy for
// load/save, the dense model for perplexity), because the machines we measure on are shared and
// noisy: absolute seconds move between runs, ratios much less. Big inputs (the 1B synthetic
// model, about 4.4 GB) are written once into a work folder outside the repository and reused.
// Figures and the commands that produced them are kept in RESULTS.md next to this file.
package bench
