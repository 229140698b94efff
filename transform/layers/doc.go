// Package layers finds the linear layers of a transformer graph and labels them.
//
// Structure finds, names label: a linear layer is a MatMul whose B input is a constant rank-2
// weight (an initializer, possibly reached through Transpose and/or Cast) or a Gemm with a
// constant B. Names only give the decoder block and the role (q, k, v, o, gate, up, down, ...)
// through one registry of per-family rules. When no rule matches (torch's dynamo exporter writes
// node_MatMul_12 and val_34), the graph around the layer gives the role (structure.go: q, k and
// v by where they enter the attention, o after it, gate and up by the gated product, down after
// it, a fused qkv), and its depth in the chain of linears gives the block (four levels per
// decoder block) and, failing all else, a depth role (attn_in, attn_out, mlp_in, mlp_out). Attention
// products (activation × activation) are never linears; the LM head and embeddings are found
// but excluded from targets unless a caller includes them explicitly.
package layers
