// Package sparsify runs stage 1 of Shears on a model: it collects Wanda's input statistics in
// onnxruntime (block by block, or one-shot) through the stage graphs of transform/prune, then
// writes the pruned model by streaming every weight through the pure masking function while
// saving. Only per-layer statistic vectors are kept in memory, never a second copy of the weights.
package sparsify
