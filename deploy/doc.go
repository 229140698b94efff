// Package deploy writes what serving runtimes load: model folders and Hugging Face checkpoints.
//
// A model folder (WriteFolder, "--format folder") is laid out the way the Hugging Face Hub's
// ONNX repositories are, so one folder serves every runtime:
//
//	DIR/config.json             Hugging Face config (carried from an HF import, else from the model's facts)
//	DIR/generation_config.json
//	DIR/tokenizer.json          + tokenizer_config.json (copied from an HF source, converted from llama2.c)
//	DIR/genai_config.json       onnxruntime GenAI (decoder filename onnx/model.onnx)
//	DIR/README.md               model card
//	DIR/onnx/model.onnx         the graph, optimum's with-past interface
//	DIR/onnx/model.onnx_data    its weights, when they are stored externally
//
// Why onnx/ and model.onnx_data: transformers.js loads <dir>/onnx/model.onnx (its default
// subfolder and file name for fp32) and, when config.json's transformers.js_config says
// use_external_data_format, exactly <file>_data next to it; optimum's exporter names external
// data the same way, and ORTModelForCausalLM finds the file with subfolder="onnx" (the config at
// the top is used); onnxruntime GenAI opens decoder.filename relative to genai_config.json and
// onnxruntime itself follows the location written in the graph, so any name works for those two.
//
// The folder appears complete or not at all: everything is written into a hidden sibling
// folder, which is renamed into place last (Begin, then Finish or Abort). An existing non-empty
// folder is refused unless forced. Facts a file needs and the model lacks are errors naming
// them; a tokenizer that cannot be converted leaves the folder without one, with a warning.
//
// Hugging Face checkpoints (Folder.FinishHF, "--format hf") hold the merged weights as safetensors
// under the checkpoint's names in [out, in] layout, sharded above 5 GB with an index.
package deploy
