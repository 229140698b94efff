// Package merge turns a trained elastic-LoRA super-network (transform/lora) into deliverables
// for one chosen sub-adapter (METHOD §6): an ONNX graph with the base model's inputs only, in
// one of three modes, optionally stored in float16, and a Hugging Face PEFT adapter.
//
//   - None: the sparse base plus the sliced sub-adapter A[:, :r], B[:r, :] at the fixed scale
//     alpha / r_max (lora.Extract; the rank masks become constants). Shears' own deliverable.
//   - Dense: W' = W + s·A_r·B_r (ONNX layout, ΔW [in, out]; a weight stored [out, in], behind a
//     Transpose or a Gemm transB, gets ΔWᵀ). Exact, but it fills the zeros: the Report counts
//     the zeros before and after, per layer and overall.
//   - Sparse: W' = W + M ⊙ (s·A_r·B_r), M = (W ≠ 0) (SQFT SparsePEFT): the zeros stay exactly
//     where they were. Exact when the super-network was built with lora.Config.SparseAdapter
//     (its adapter path is x·(M ⊙ ΔW), so training saw the masked delta); for a plainly trained
//     adapter the Report gives, per layer, the share of ΔW that fell on zeros and was dropped
//     (Layer.Dropped) and Exact = false. With a SparseAdapter network Dense masks too, since
//     the masked delta is the function that was trained.
//
// Merged exports drop every adapter node, tensor and rank-mask input and replace the
// "shears.lora" metadata by MetaKey (mode, ranks, scale, exactness). Merging refuses weights
// shared by several nodes (tied weights) and Gemm nodes with alpha ≠ 1.
//
// Plan, then apply, as prune and convert do: Prepare builds the output graph and the Report
// (each weight merged once to count, then dropped) and leaves the base's weights in place; the
// Plan's SaveOptions merge each weight as it is written (a streaming Transform reading the base
// from the super-network's data), so a saved export never holds the model's weights in memory.
// Export (Prepare + Apply) merges in memory, for small models and callers that read the merged
// weights before saving.
//
// An fp16 export (shears export --dtype fp16) is transform/convert's weight-only conversion of
// the exported model.
//
// WritePEFT writes adapter_config.json and adapter_model.safetensors (internal/safetensors) with
// PEFT's names and PyTorch layout, r and lora_alpha chosen so that PEFT's lora_alpha / r equals
// the trained scale (rank_pattern and alpha_pattern for modules off the common rank).
//
// The sub-adapter is a Selection, stored as CONFIG.json by the search and read by "shears
// export --config":
//
//	{
//	  "ranks": {"layers.0.qkv": 24, "layers.0.up": 16, "layers.0.down": 32, ...},
//	  "strategy": "hill-climb",
//	  "metric": {"name": "val_loss", "value": 1.93},
//	  "adapter_params": 95040
//	}
//
// "ranks" is required and must name every group of the super-network (lora.Meta.Groups) with a
// rank in 1..r_max; the other fields are informational and unknown fields are ignored. Check
// validates a selection; Preset gives the heuristic (middle rank), max and min selections.
package merge
