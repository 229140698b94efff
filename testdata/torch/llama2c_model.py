#!/usr/bin/python3
"""The stories260K PyTorch export: a llama2.c checkpoint exported by torch.onnx.export (opset 17).

Makes the graph ../shared/models/stories260K/stories260K.torch-opset17.onnx is (ONNX-NOTES §8):
llama2.c's own model.py layout in plain torch — modules tok_embeddings, layers.N.{attention_norm,
wq, wk, wv, wo, ffn_norm, w1, w2, w3}, norm, output; RoPE on interleaved pairs from cos/sin
buffers, GQA by repeat_interleave, a [1,1,seq,seq] additive causal mask buffer, an untied copy of
the embedding as the head — traced by torch 1.13's TorchScript exporter with input input_ids
int64 [batch, sequence] and output logits float32 [batch, sequence, vocab]. Weights come out as
onnx::MatMul_N ([in, out]), nodes as /layers.N/wq/MatMul, /output/MatMul.

From ../shared's stories260K.bin it writes that file byte for byte (torch 1.13); tests use it
when ../shared is absent (internal/testkit/torchstories.go), on the fetched checkpoint or on a
random-weight one of the same shape:
  /usr/bin/python3 testdata/torch/llama2c_model.py CKPT -o OUT.onnx [--after-bos LOGITS.json]

--after-bos also writes PyTorch's own (eager) logits after BOS, the reference that tests of a
random-weight export check onnxruntime against.

Everything here is this project's own code.
"""

import argparse
import json
import os
import sys

import onnx
import torch
from torch import nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from optimum_llama import read_llama2c  # noqa: E402  (the checkpoint reader, shared)


class RMSNorm(nn.Module):
    def __init__(self, d, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope(x, bsz, seqlen, half, cos, sin):
    """Rotates the interleaved pairs (2j, 2j+1) of each head of x [b, t, h, 2·half]."""
    xs = x.reshape(bsz, seqlen, x.shape[2], half, 2)
    xr, xi = xs[..., 0], xs[..., 1]
    cos = cos[:seqlen].view(1, seqlen, 1, -1)  # the exporter's CSE keeps one slice for q and k
    sin = sin[:seqlen].view(1, seqlen, 1, -1)
    out = torch.stack([xr * cos - xi * sin, xr * sin + xi * cos], dim=-1)
    return out.reshape(x.shape)


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, self.nh, self.nkv = cfg["dim"], cfg["heads"], cfg["kv_heads"]
        self.hd = d // self.nh
        self.attention_norm = RMSNorm(d)
        self.wq = nn.Linear(d, self.nh * self.hd, bias=False)
        self.wk = nn.Linear(d, self.nkv * self.hd, bias=False)
        self.wv = nn.Linear(d, self.nkv * self.hd, bias=False)
        self.wo = nn.Linear(self.nh * self.hd, d, bias=False)
        self.ffn_norm = RMSNorm(d)
        self.w1 = nn.Linear(d, cfg["hidden"], bias=False)
        self.w2 = nn.Linear(cfg["hidden"], d, bias=False)
        self.w3 = nn.Linear(d, cfg["hidden"], bias=False)

    def forward(self, x, cos, sin, mask):
        bsz, seqlen, _ = x.shape
        h = self.attention_norm(x)
        xq = self.wq(h).view(bsz, seqlen, self.nh, self.hd)
        xk = self.wk(h).view(bsz, seqlen, self.nkv, self.hd)
        xv = self.wv(h).view(bsz, seqlen, self.nkv, self.hd)
        xq = rope(xq, bsz, seqlen, self.hd // 2, cos, sin)
        xk = rope(xk, bsz, seqlen, self.hd // 2, cos, sin)
        rep = self.nh // self.nkv
        xk = torch.repeat_interleave(xk, rep, dim=2)
        xv = torch.repeat_interleave(xv, rep, dim=2)
        xq, xk, xv = xq.transpose(1, 2), xk.transpose(1, 2), xv.transpose(1, 2)
        scores = torch.matmul(xq, xk.transpose(2, 3)) / (self.hd ** 0.5)
        scores = scores + mask[:, :, :seqlen, :seqlen]
        p = F.softmax(scores, dim=-1)
        o = torch.matmul(p, xv).transpose(1, 2).contiguous().view(bsz, seqlen, self.nh * self.hd)
        x = x + self.wo(o)
        return x + self.w2(F.silu(self.w1(self.ffn_norm(x))) * self.w3(self.ffn_norm(x)))


class Transformer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.tok_embeddings = nn.Embedding(cfg["vocab"], cfg["dim"])
        self.layers = nn.ModuleList([Block(cfg) for _ in range(cfg["layers"])])
        self.norm = RMSNorm(cfg["dim"])
        self.output = nn.Linear(cfg["dim"], cfg["vocab"], bias=False)
        seq = cfg["seq"]
        hd = cfg["dim"] // cfg["heads"]
        self.register_buffer("cos", torch.zeros(seq, hd // 2))
        self.register_buffer("sin", torch.zeros(seq, hd // 2))
        self.register_buffer("mask", torch.full((1, 1, seq, seq), float("-inf")).triu(1))

    def forward(self, input_ids):
        h = self.tok_embeddings(input_ids)
        for layer in self.layers:
            h = layer(h, self.cos, self.sin, self.mask)
        return self.output(self.norm(h))


def load(path):
    cfg, shared, a = read_llama2c(path)
    m = Transformer(cfg)
    t = torch.from_numpy
    with torch.no_grad():
        m.tok_embeddings.weight.copy_(t(a["token_embedding_table"]))
        if shared:  # tied as in llama2.c's model.py; the exporter writes the head's transposed copy
            m.output.weight = m.tok_embeddings.weight
        else:
            m.output.weight.copy_(t(a["wcls"]))
        m.norm.weight.copy_(t(a["rms_final_weight"]))
        # llama2.c's precompute_freqs_cis in torch (θ = 10000), as the shared export has them:
        # the checkpoint's own freq_cis tables differ in the last bit.
        hd = cfg["dim"] // cfg["heads"]
        inv = 1.0 / (10000.0 ** (torch.arange(0, hd, 2)[: hd // 2].float() / hd))
        ang = torch.outer(torch.arange(cfg["seq"]), inv).float()
        m.cos.copy_(torch.cos(ang))
        m.sin.copy_(torch.sin(ang))
        for i, b in enumerate(m.layers):
            b.attention_norm.weight.copy_(t(a["rms_att_weight"][i]))
            b.ffn_norm.weight.copy_(t(a["rms_ffn_weight"][i]))
            for name in ["wq", "wk", "wv", "wo", "w1", "w2", "w3"]:
                getattr(b, name).weight.copy_(t(a[name][i]))
    return m.eval()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ckpt", help="llama2.c legacy (v0) checkpoint")
    ap.add_argument("-o", "--out", required=True, help="the .onnx to write")
    ap.add_argument("--after-bos", help="also write the eager logits after BOS (a JSON list) here")
    args = ap.parse_args()
    m = load(args.ckpt)
    if args.after_bos:
        with torch.no_grad():
            row = m(torch.ones(1, 1, dtype=torch.int64))[0, 0]
        with open(args.after_bos, "w") as f:
            json.dump([float(v) for v in row], f)
    ids = torch.ones(1, 4, dtype=torch.int64)
    # The exporter merges equal initializers behind Identity nodes; a random-weight stand-in's
    # norm weights are all ones, and must keep their own names (layers.N.attention_norm.weight)
    # as trained ones do. Trained weights have no equal pair: their export is unchanged.
    if hasattr(torch._C, "_jit_pass_onnx_deduplicate_initializers"):
        torch._C._jit_pass_onnx_deduplicate_initializers = lambda graph, params, training: params
    tmp = args.out + ".tmp"
    torch.onnx.export(m, (ids,), tmp, opset_version=17, input_names=["input_ids"], output_names=["logits"],
                      dynamic_axes={"input_ids": {0: "batch", 1: "sequence"}, "logits": {0: "batch", 1: "sequence"}})
    onnx.checker.check_model(tmp)
    os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
