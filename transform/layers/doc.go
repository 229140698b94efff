// Package layers finds the linear layers of a transformer graph and labels them.
//
// Structure finds, names label: a linear layer is a MatMul whose B input is a constant rank-2
// weight (an initializer, possibly reached through Transpose and/or Cast) or a Gemm with a
// constant B. Names only give the decoder block and the role (q, k, v, o, gate, up, down, ...)
// through one registry of per-family rules; when no rule matches, a structural fallback labels
// layers by their depth in the chain of linears (four levels per decoder block). Attention
// products (activation × activation) are never linears; the LM head and embeddings are found
// but excluded from targets unless a caller includes them explicitly.
package layers
