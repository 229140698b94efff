// Package models holds the model families and importers that produce ONNX graphs, one
// package per family or source format, the way ollama's convert/ keeps one file per
// architecture behind a small interface:
//
//   - models/llama: the LLaMA architecture (RMSNorm, interleaved RoPE, GQA, SwiGLU) built
//     from a Config and a weight Source with Hugging Face / optimum node and tensor names,
//     plus synthetic random-weight models (presets "tiny", "25m", "1b", "7b") for benchmarks.
//   - models/llama2c: the legacy llama2.c checkpoint (stories260K and friends) imported into
//     the llama graph.
//   - models/hf: Hugging Face checkpoints (config.json + safetensors; LLaMA, Mistral, Qwen2,
//     Phi-3, Gemma, GPT-2), one small file per family over the llama and gpt2 builders, tensors
//     streamed from the safetensors files into the output.
//
// Every family writes weights in ONNX layout [in, out] (x·W), so the linear layers are plain
// MatMuls with rank-2 constant weights that transform/layers finds by structure.
package models
