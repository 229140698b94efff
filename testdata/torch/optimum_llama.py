#!/usr/bin/python3
"""Optimum-style ONNX exports of a llama2.c checkpoint, made with PyTorch's own exporter.

The test fixtures for "models as people have them": a Hugging Face-style LLaMA written in plain
torch (rotate-half RoPE over q/k rows permuted the way Hugging Face's conversion script permutes
them, grouped-query attention, SwiGLU, RMSNorm, a KV cache), loaded from a legacy (v0) llama2.c
checkpoint and exported the way optimum exports the task text-generation-with-past:

  model.onnx                 inputs input_ids, attention_mask, position_ids,
                             past_key_values.{i}.key / .value  ->  logits, present.{i}.key / .value
                             (opset 17, node names /model/layers.N/self_attn/q_proj/MatMul,
                             anonymous onnx::MatMul_* weights)
  decoder_model.onnx         the same without past inputs (what optimum's merge takes as the
                             no-cache branch)
  decoder_model_merged.onnx  one If on a bool use_cache_branch input: the then-branch is the
                             with-past graph, the else-branch the no-past one, both reading one
                             shared, de-duplicated set of outer-scope weights

With --random the script first writes a seeded random llama2.c checkpoint (CKPT is then the
path written), so tests without ../shared still have a fixture whose weights our own llama2.c
importer reads too.

Run with Debian's python (python3-torch, python3-onnx):
  /usr/bin/python3 testdata/torch/optimum_llama.py CKPT -o DIR
  /usr/bin/python3 testdata/torch/optimum_llama.py --random "dim=64,hidden=172,layers=2,heads=8,kv_heads=4,vocab=512,seq=128" --seed 1 CKPT -o DIR

Everything here is this project's own code.
"""

import argparse
import hashlib
import math
import os
import struct
import sys

import numpy as np
import onnx
import torch
from torch import nn


# ---- the llama2.c checkpoint ----------------------------------------------------------------

HEADER = ["dim", "hidden", "layers", "heads", "kv_heads", "vocab", "seq"]


def read_llama2c(path):
    """Returns (config dict, shared classifier, dict of float32 numpy arrays in file order)."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 28:
        raise SystemExit(f"{path}: truncated header")
    v = struct.unpack("<7i", raw[:28])
    cfg = dict(zip(HEADER, v))
    shared = cfg["vocab"] > 0
    cfg["vocab"] = abs(cfg["vocab"])
    d, h, l, kv = cfg["dim"], cfg["hidden"], cfg["layers"], cfg["kv_heads"] * cfg["dim"] // cfg["heads"]
    hd = d // cfg["heads"]
    layout = [
        ("token_embedding_table", (cfg["vocab"], d)), ("rms_att_weight", (l, d)),
        ("wq", (l, d, d)), ("wk", (l, kv, d)), ("wv", (l, kv, d)), ("wo", (l, d, d)),
        ("rms_ffn_weight", (l, d)), ("w1", (l, h, d)), ("w2", (l, d, h)), ("w3", (l, h, d)),
        ("rms_final_weight", (d,)), ("freq_cis_real", (cfg["seq"], hd // 2)), ("freq_cis_imag", (cfg["seq"], hd // 2)),
    ]
    if not shared:
        layout.append(("wcls", (cfg["vocab"], d)))
    arrays, off = {}, 28
    for name, shape in layout:
        n = int(np.prod(shape))
        if off + 4 * n > len(raw):
            raise SystemExit(f"{path}: truncated at {name}")
        arrays[name] = np.frombuffer(raw, dtype="<f4", count=n, offset=off).reshape(shape).copy()
        off += 4 * n
    if off != len(raw):
        raise SystemExit(f"{path}: {len(raw) - off} trailing bytes")
    return cfg, shared, arrays


def write_random_llama2c(path, spec, seed):
    """Writes a seeded random legacy llama2.c checkpoint (untied head) for the config spec."""
    cfg = {k: 0 for k in HEADER}
    for kv in spec.split(","):
        k, v = kv.split("=")
        if k not in cfg:
            raise SystemExit(f"--random: unknown field {k!r} (have {HEADER})")
        cfg[k] = int(v)
    d, h, l, vocab, seq = cfg["dim"], cfg["hidden"], cfg["layers"], cfg["vocab"], cfg["seq"]
    hd = d // cfg["heads"]
    kv = cfg["kv_heads"] * hd
    rng = np.random.default_rng(seed)

    def rand(*shape, scale=None):
        fan_in = shape[-1]
        return (rng.standard_normal(shape) * (scale if scale is not None else 1 / math.sqrt(fan_in))).astype("<f4")

    freqs = 1.0 / (10000.0 ** (np.arange(0, hd, 2)[: hd // 2].astype(np.float32) / hd))
    ang = np.outer(np.arange(seq, dtype=np.float32), freqs)
    parts = [
        rand(vocab, d, scale=1.0), 1 + 0.1 * rand(l, d, scale=1.0),
        rand(l, d, d), rand(l, kv, d), rand(l, kv, d), rand(l, d, d),
        1 + 0.1 * rand(l, d, scale=1.0), rand(l, h, d), rand(l, d, h), rand(l, h, d),
        1 + 0.1 * rand(d, scale=1.0), np.cos(ang).astype("<f4"), np.sin(ang).astype("<f4"),
        rand(vocab, d),
    ]
    with open(path, "wb") as f:
        # A negative vocab marks an untied classifier (wcls follows the tables).
        f.write(struct.pack("<7i", d, h, l, cfg["heads"], cfg["kv_heads"], -vocab, seq))
        for p in parts:
            f.write(np.ascontiguousarray(p, dtype="<f4").tobytes())


# ---- a Hugging Face-style LLaMA in plain torch ----------------------------------------------

def permute_rows(w, heads):
    """Hugging Face's conversion permutation of q/k rows: llama2.c rotates interleaved pairs
    (2j, 2j+1) of each head; Hugging Face's rotate-half rotates (j, j + hd/2)."""
    out, inp = w.shape
    return w.reshape(heads, out // heads // 2, 2, inp).transpose(1, 2).reshape(out, inp)


class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        var = x.pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(var + self.eps))


class Rotary(nn.Module):
    def __init__(self, hd, seq, theta):
        super().__init__()
        inv = 1.0 / (theta ** (torch.arange(0, hd, 2).float() / hd))
        t = torch.arange(seq).float()
        emb = torch.cat([torch.outer(t, inv)] * 2, dim=-1)
        self.register_buffer("cos_cached", emb.cos(), persistent=False)
        self.register_buffer("sin_cached", emb.sin(), persistent=False)

    def forward(self, position_ids):
        # [B, T, hd] -> [B, 1, T, hd]
        return self.cos_cached[position_ids].unsqueeze(1), self.sin_cached[position_ids].unsqueeze(1)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, self.nh, self.nkv = cfg["dim"], cfg["heads"], cfg["kv_heads"]
        self.hd = d // self.nh
        self.q_proj = nn.Linear(d, self.nh * self.hd, bias=False)
        self.k_proj = nn.Linear(d, self.nkv * self.hd, bias=False)
        self.v_proj = nn.Linear(d, self.nkv * self.hd, bias=False)
        self.o_proj = nn.Linear(self.nh * self.hd, d, bias=False)

    def forward(self, x, cos, sin, mask, past):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.nh, self.hd).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.nkv, self.hd).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.nkv, self.hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if past is not None:
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        present = (k, v)
        rep = self.nh // self.nkv
        if rep > 1:
            k = k[:, :, None].expand(b, self.nkv, rep, k.shape[2], self.hd).reshape(b, self.nh, k.shape[2], self.hd)
            v = v[:, :, None].expand(b, self.nkv, rep, v.shape[2], self.hd).reshape(b, self.nh, v.shape[2], self.hd)
        s = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(self.hd) + mask
        p = torch.softmax(s, dim=-1, dtype=torch.float32)
        o = torch.matmul(p, v).transpose(1, 2).reshape(b, t, self.nh * self.hd)
        return self.o_proj(o), present


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, h = cfg["dim"], cfg["hidden"]
        self.gate_proj = nn.Linear(d, h, bias=False)
        self.up_proj = nn.Linear(d, h, bias=False)
        self.down_proj = nn.Linear(h, d, bias=False)
        self.act_fn = nn.SiLU()

    def forward(self, x):
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg["dim"], 1e-5)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg["dim"], 1e-5)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin, mask, past):
        a, present = self.self_attn(self.input_layernorm(x), cos, sin, mask, past)
        x = x + a
        return x + self.mlp(self.post_attention_layernorm(x)), present


class LlamaModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg["vocab"], cfg["dim"])
        self.layers = nn.ModuleList([DecoderLayer(cfg) for _ in range(cfg["layers"])])
        self.norm = RMSNorm(cfg["dim"], 1e-5)
        self.rotary_emb = Rotary(cfg["dim"] // cfg["heads"], cfg["seq"], 10000.0)

    def forward(self, input_ids, attention_mask, position_ids, past):
        x = self.embed_tokens(input_ids)
        b, t = input_ids.shape
        total = attention_mask.shape[1]  # past + current
        p = total - t
        # Causal over past + current (query i sits at position p + i), and padding masked out.
        q_pos = torch.arange(t, device=x.device)[:, None] + p
        k_pos = torch.arange(total, device=x.device)[None, :]
        allowed = (k_pos <= q_pos)[None, None] & attention_mask[:, None, None, :].bool()
        mask = torch.zeros(allowed.shape, dtype=x.dtype).masked_fill(~allowed, torch.finfo(x.dtype).min)
        cos, sin = self.rotary_emb(position_ids)
        presents = []
        for i, layer in enumerate(self.layers):
            x, present = layer(x, cos, sin, mask, None if past is None else past[i])
            presents.append(present)
        return self.norm(x), presents


class LlamaForCausalLM(nn.Module):
    """Module names follow transformers' LlamaForCausalLM, so the exporter's scopes match."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.model = LlamaModel(cfg)
        self.lm_head = nn.Linear(cfg["dim"], cfg["vocab"], bias=False)

    def forward(self, input_ids, attention_mask, position_ids, *past_flat):
        past = None
        if past_flat:
            past = [(past_flat[2 * i], past_flat[2 * i + 1]) for i in range(len(past_flat) // 2)]
        h, presents = self.model(input_ids, attention_mask, position_ids, past)
        out = [self.lm_head(h)]
        for k, v in presents:
            out += [k, v]
        return tuple(out)


def load(cfg, shared, a):
    m = LlamaForCausalLM(cfg)
    t = lambda x: torch.from_numpy(np.ascontiguousarray(x))
    m.model.embed_tokens.weight.data = t(a["token_embedding_table"])
    m.lm_head.weight.data = t(a["token_embedding_table"] if shared else a["wcls"])
    m.model.norm.weight.data = t(a["rms_final_weight"])
    for i, layer in enumerate(m.model.layers):
        layer.input_layernorm.weight.data = t(a["rms_att_weight"][i])
        layer.post_attention_layernorm.weight.data = t(a["rms_ffn_weight"][i])
        at = layer.self_attn
        at.q_proj.weight.data = permute_rows(t(a["wq"][i]), cfg["heads"])
        at.k_proj.weight.data = permute_rows(t(a["wk"][i]), cfg["kv_heads"])
        at.v_proj.weight.data = t(a["wv"][i])
        at.o_proj.weight.data = t(a["wo"][i])
        layer.mlp.gate_proj.weight.data = t(a["w1"][i])
        layer.mlp.down_proj.weight.data = t(a["w2"][i])
        layer.mlp.up_proj.weight.data = t(a["w3"][i])
    return m.eval()


# ---- export ----------------------------------------------------------------------------------

def export(m, path, with_past):
    cfg = m.cfg
    nkv, hd = cfg["kv_heads"], cfg["dim"] // cfg["heads"]
    b, t, p = 2, 3, 4 if with_past else 0
    ids = torch.randint(0, cfg["vocab"], (b, t))
    mask = torch.ones(b, p + t, dtype=torch.int64)
    pos = torch.arange(p, p + t)[None].expand(b, t).contiguous()
    args = [ids, mask, pos]
    in_names = ["input_ids", "attention_mask", "position_ids"]
    out_names = ["logits"]
    axes = {
        "input_ids": {0: "batch_size", 1: "sequence_length"},
        "attention_mask": {0: "batch_size", 1: "past_sequence_length + sequence_length" if with_past else "sequence_length"},
        "position_ids": {0: "batch_size", 1: "sequence_length"},
        "logits": {0: "batch_size", 1: "sequence_length"},
    }
    total = "past_sequence_length + sequence_length" if with_past else "sequence_length"
    for i in range(cfg["layers"]):
        for kind in ("key", "value"):
            if with_past:
                n = f"past_key_values.{i}.{kind}"
                args.append(torch.randn(b, nkv, p, hd))
                in_names.append(n)
                axes[n] = {0: "batch_size", 2: "past_sequence_length"}
            n = f"present.{i}.{kind}"
            out_names.append(n)
            axes[n] = {0: "batch_size", 2: total}
    with torch.no_grad():
        torch.onnx.export(m, tuple(args), path, input_names=in_names, output_names=out_names,
                          dynamic_axes=axes, opset_version=17, do_constant_folding=True)


def is_subgraph_local(init):
    """optimum keeps scalars and 1-D int32/int64 initializers inside each branch."""
    return len(init.dims) == 0 or (len(init.dims) == 1 and init.data_type in (onnx.TensorProto.INT32, onnx.TensorProto.INT64))


def merge(no_past_path, with_past_path, out_path):
    """optimum's merged decoder, built from the two exports by this project's own code: the
    union of the inputs plus use_cache_branch, one If node, the large initializers moved to the
    outer graph and shared between the branches (equal contents stored once)."""
    dec, dwp = onnx.load(no_past_path), onnx.load(with_past_path)
    outer, by_content, used = [], {}, set()

    def lift(model, tag):
        rename, local = {}, []
        for init in model.graph.initializer:
            if is_subgraph_local(init):
                local.append(init)
                continue
            key = (init.data_type, tuple(init.dims), hashlib.sha256(init.raw_data or init.SerializeToString()).hexdigest())
            if key in by_content:
                rename[init.name] = by_content[key]
                continue
            name = init.name
            if name in used:
                name = f"{name}_{tag}"
            used.add(name)
            by_content[key] = name
            rename[init.name] = name
            c = onnx.TensorProto()
            c.CopyFrom(init)
            c.name = name
            outer.append(c)
        for node in model.graph.node:
            for j, x in enumerate(node.input):
                if x in rename:
                    node.input[j] = rename[x]
        return local

    local_dec = lift(dec, "no_past")
    local_dwp = lift(dwp, "with_past")
    if [o.name for o in dec.graph.output] != [o.name for o in dwp.graph.output]:
        raise SystemExit("merge: the two exports have different outputs")
    no_past = onnx.helper.make_graph(list(dec.graph.node), "no_past", [], list(dec.graph.output), local_dec)
    with_past = onnx.helper.make_graph(list(dwp.graph.node), "with_past", [], list(dwp.graph.output), local_dwp)
    inputs, seen = [], set()
    for g in (dec.graph, dwp.graph):
        for i in g.input:
            if i.name not in seen:
                seen.add(i.name)
                c = onnx.ValueInfoProto()
                c.CopyFrom(i)
                if c.name == "attention_mask":
                    c.type.tensor_type.shape.dim[1].dim_param = "attention_mask_sequence_length"
                inputs.append(c)
    use_cache = onnx.helper.make_tensor_value_info("use_cache_branch", onnx.TensorProto.BOOL, [1])
    node = onnx.helper.make_node("If", ["use_cache_branch"], [o.name for o in dec.graph.output],
                                 name="optimum::if", then_branch=with_past, else_branch=no_past)
    graph = onnx.helper.make_graph([node], "merged", inputs + [use_cache], list(dec.graph.output), outer)
    model = onnx.helper.make_model(graph, producer_name="optimum-onnx", opset_imports=list(dwp.opset_import))
    model.ir_version = dwp.ir_version
    onnx.checker.check_model(model)
    onnx.save(model, out_path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ckpt", help="llama2.c checkpoint (read; written first with --random)")
    ap.add_argument("-o", "--out", required=True, help="output folder")
    ap.add_argument("--random", metavar="SPEC", help="write a random checkpoint of this shape to CKPT first")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    torch.manual_seed(0)
    if args.random:
        write_random_llama2c(args.ckpt, args.random, args.seed)
    cfg, shared, arrays = read_llama2c(args.ckpt)
    m = load(cfg, shared, arrays)
    os.makedirs(args.out, exist_ok=True)
    with_past = os.path.join(args.out, "model.onnx")
    no_past = os.path.join(args.out, "decoder_model.onnx")
    export(m, with_past, True)
    export(m, no_past, False)
    merge(no_past, with_past, os.path.join(args.out, "decoder_model_merged.onnx"))
    for n in ("model.onnx", "decoder_model.onnx"):
        onnx.checker.check_model(os.path.join(args.out, n))


if __name__ == "__main__":
    sys.exit(main())
