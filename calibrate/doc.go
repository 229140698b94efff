// Package calibrate runs onnxruntime over calibration data through the stage graphs of
// transform/prune and collects the statistics that weight transforms need: Wanda's input norms
// (Calibrate) and GPTQ's Hessians 2/T·XᵀX (GPTQ), block by block (each block calibrated on the
// outputs of the blocks already transformed) or one-shot. Both share one stage loop (runStages).
// Wanda's pruned model is written by streaming every weight through the pure masking function
// while saving; GPTQ returns the quantized layers (transform/quant) for the caller to write. Only
// per-layer statistics (one stage's Hessians at a time) are kept in memory, never a second copy
// of the weights.
package calibrate
