// Package testkit is the one package of helpers that tests across the repository share, a file
// per concern:
//
//   - paths.go: the repository root and ../shared inputs (Shared skips, naming the missing path,
//     when a file is neither there nor fetchable from its public home with a checksum);
//   - synth.go, fused.go, dynamo.go, storieshf.go: synthetic models (random-weight LLaMA presets,
//     fused-attention and dynamo-style variants, stories260K as a Hugging Face checkpoint);
//   - standin.go: stories260K-shaped stand-ins for a clone without ../shared or network;
//   - tokenizer.go: a llama2.c tokenizer trained here on a fixed text;
//   - torch.go: optimum-style fixtures exported by PyTorch (skip when torch is missing);
//   - torchstories.go: the stories260K PyTorch export, ../shared's or exported here the same way;
//   - transformersjs.go: running transformers.js under Node on exported folders;
//   - testkit.go: onnxruntime start-up, causal-LM feeds, NaN-aware MaxDiff/Worse, the official
//     ONNX checker.
//
// testkit imports onnx, runtime, lm and models, so the in-package tests of those packages cannot
// import it: their tests that need it live in external test packages (package onnx_test, …), and
// onnx's in-package tests reach the stories260K export through the TorchStoriesFixture hook its
// external tests set.
package testkit
