// Package calibrate runs onnxruntime over calibration data through the stage graphs of
// transform/prune and collects the statistics that weight transforms need (Wanda's input
// norms today, block by block or one-shot), then writes the pruned model by streaming every
// weight through the pure masking function while saving. Only per-layer statistic vectors are
// kept in memory, never a second copy of the weights.
package calibrate
