// Package safetensors reads and writes the safetensors format (Hugging Face): an 8-byte
// little-endian header length n, n bytes of JSON {name: {dtype, shape, data_offsets}, and an
// optional "__metadata__": {string: string}}, then the raw little-endian tensor bytes, each
// tensor's data_offsets [begin, end) relative to the end of the header. It is small on purpose:
// shears writes adapters and training checkpoints with it (a format PEFT and the Python tools read
// directly) and reads them back; nothing here knows about LoRA or ONNX.
//
// Writing is atomic (a temporary file in the target folder, synced, then renamed), tensors are
// laid out in name order and the header is padded with spaces to a multiple of 8 bytes, as the
// reference implementation does, so equal contents give equal files. Reading checks the header
// against the file (offsets in range, contiguous and non-overlapping, sizes that match dtype ×
// shape) and never panics on bad input.
//
// Large checkpoints are read without loading them: Open reads and checks only a file's header
// (Reader.Info gives each tensor's byte range in the file, for a ReadAt or a file-to-file copy),
// OpenDir opens a Hugging Face checkpoint folder (model.safetensors, or the shards that
// model.safetensors.index.json names, each checked to hold the tensors the index puts there),
// and WriteStream writes a file whose tensors come from a callback, one at a time.
package safetensors
