// Package lora inserts elastic LoRA super-adapters into a linear-layer graph (Shears §2): every
// targeted linear y = x·W becomes
//
//	y = x·W + ((drop(x)·A) ⊙ (s·m_g))·B        s = alpha / r_max, fixed for every active rank
//
// with A [in, r_max] and B [r_max, out] new initializers in ONNX layout (PyTorch/PEFT stores
// the transposes, lora_A.weight [r, in] and lora_B.weight [out, r]; the layout is recorded in
// the metadata), and m_g a float rank-mask graph input [r_max] shared by the modules of one
// group of one decoder layer: m[k] = 1 for k < r, 0 after (RankMask). Sub-ranks are prefixes,
// A[:, :r] and B[:r, :], so one graph serves every sub-adapter: the mask gives the same forward
// values as slicing and exactly zero gradients for the inactive columns of A and rows of B. The
// scale never becomes alpha/r: the reference (PEFT + NNCF) computes it once at r_max.
//
// Plan, then apply. NewPlan decides everything (modules, groups, tensor and input names,
// shapes) and can be printed and golden-tested; Apply writes it into a copy of the model and
// stores the plan as JSON in the model's metadata_props under MetaKey, which ReadConfig reads
// back for the training loop, the search and the export.
//
// Dropout. A train graph (ApplyOptions.Train with Dropout > 0, or AddDropout on an inference
// super-network) multiplies each module's adapter input by its own keep-mask graph input,
// lora_dropout_keep.<module>, of x's shape (symbolic dims copied from the model's inputs). The
// mask is generated on the Go side — Bernoulli(1−p) already scaled by 1/(1−p) — so a run is
// reproducible across checkpoint and resume, which an in-graph random Dropout is not. Inference
// graphs have no dropout inputs.
//
// Fused q/k/v linears (GPT-2's c_attn, Phi-3's qkv_proj, NeoX's query_key_value: role "qkv")
// get one adapter per q, k and v slice of their output, as the reference adapts MPT's fused
// Wqkv, all three in the block's qkv rank group; the slice deltas are joined by one Concat
// before the Add, so the effect equals separate q, k, v adapters on the split weights (fused.go;
// Module.Slice and Module.Fused record it, merge writes each slice's columns, and PEFT gets one
// block-diagonal module of the summed rank).
//
// Sparse adapters (Config.SparseAdapter, "shears adapt --sparse-adapter", SQFT SparsePEFT): the
// adapter path becomes x·(M ⊙ ((A ⊙ s·m)·B)) with M = Cast(Not(Equal(W, 0))) built from the
// frozen weight in the graph (stop-gradient, folded by onnxruntime), so the trained delta never
// touches the base's zeros and transform/merge's sparsity-keeping merge is exact. It costs a
// dense [in, out] ΔW per module per step. Meta.SparseAdapter records it; training needs no flag.
//
// Quantized bases (SQFT QA-SparsePEFT): on a model lowered by quant.Lower (MatMulNBits turned
// into MatMuls by the dequantized weight W, the grids kept beside it), each module's path is
// d = x·(FQ(W + M ⊙ s·(A⊙m)·B) − W), FQ fake-quantizing on the base's own grid (refit per
// block where the merged weights leave it, as the merge does: quant.Requantize) with a
// straight-through gradient built from integer (stop-gradient) tensors (see qaDelta), so the
// base plus d computes what the quantized merge writes; lowered linears without a module keep
// their packed integers (quant.KeepQuantized; the float weight is folded in when a session
// opens, quant.FoldKept, so no per-step cost). Meta.QuantAware records it; UnfakeQA
// turns an extracted sub-adapter back into plain sparse adapters for the unmerged export.
//
// Low-precision bases (transform/convert): a linear's weight may be float16 or bfloat16. A
// weight-only base computes in float32 (its weights pass through a Cast), so its adapters need
// nothing special. A native base computes in its own type; its adapters are float32 by default
// (Config.AdapterDType): x is cast up once per input tensor (q, k and v share one Cast), A, B,
// the mask and the product are float32, and the delta is cast down before the Add, so the small
// adapter product keeps float32 precision and the trainer's parameters need no conversion. With
// AdapterBase everything stays in the base's type, with no Casts. Module.DType and AdapterDType
// record the types; rank and dropout masks are float32 inputs either way (cast in the graph).
//
// Initialisation follows PEFT: A ~ U(−1/√in, +1/√in) (kaiming_uniform with a = √5 on PEFT's
// [r, in] tensor), drawn from a generator seeded by (Config.Seed, module name), so a module's
// values do not depend on which other modules are adapted; B = 0, so a fresh super-network
// computes exactly the base model.
package lora
