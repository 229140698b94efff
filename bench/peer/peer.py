#!/usr/bin/python3
"""The PyTorch peer of `shears train` (issue 5, Measure): the same LLaMA forward as
models/llama's graph (RMSNorm, interleaved RoPE, GQA, SwiGLU), the same frozen weights and the
same elastic LoRA (A, B and their initial values read from the super-network ONNX file that
`shears adapt` wrote, its `shears.lora` metadata naming modules, groups, scale and dropout), and
the same NLS loop: an independent uniform rank per (layer, group) at every micro-batch applied as
a prefix mask on A's columns (the scale stays alpha / r_max), adapter-input dropout, loss / accumulation,
gradient accumulation, global-norm clip 1.0, AdamW (weight decay 0), cosine learning rate per
micro-batch.

Written idiomatically for PyTorch (1.13 on the CPU here, 2.x with CUDA on GPU machines): F.linear
on [out, in] weights, autograd, torch.optim.AdamW, and on CUDA with --dtype fp16 the frozen base in
float16 under torch.autocast with a GradScaler, the adapters float32 -- the way a user of PEFT would
run it; no custom kernels. It needs nothing but torch: the ONNX file is read by the small protobuf
reader below (the onnx package is not on the offline GPU machines).

    peer.py train SUPER.onnx DATA.jsonl --steps S [--batch 16 --micro-batch 4 --threads 2 --device cuda --dtype fp16]
    peer.py forward SUPER.onnx DATA.jsonl --steps S [--batch 4]   # the base model's forward pass (no adapters), timed
    peer.py loss SUPER.onnx DATA.jsonl --n 16     # mean next-token loss of the first n records (+ one row of logits)
    peer.py sgemm [--n 2048 --threads 2]           # measured fp32 GEMM peak (GFLOP/s)

Every command prints one JSON object on stdout.
"""
import argparse
import json
import math
import os
import resource
import struct
import sys
import time

import torch
import torch.nn.functional as F

COS, SIN = "model.rotary_emb.cos_cached", "model.rotary_emb.sin_cached"

# ONNX TensorProto data types the synthetic and imported models use.
DTYPES = {1: torch.float32, 10: torch.float16, 16: torch.bfloat16, 7: torch.int64, 6: torch.int32, 11: torch.float64}


def _varint(b, i):
    v = shift = 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << shift
        shift += 7
        if c < 0x80:
            return v, i


def _fields(b):
    """Yields (field number, wire type, value) of one protobuf message; length-delimited values
    are memoryview slices, varints ints, fixed32/64 raw bytes."""
    i, n = 0, len(b)
    while i < n:
        key, i = _varint(b, i)
        f, w = key >> 3, key & 7
        if w == 0:
            v, i = _varint(b, i)
        elif w == 2:
            ln, i = _varint(b, i)
            v, i = b[i:i + ln], i + ln
        elif w == 1:
            v, i = b[i:i + 8], i + 8
        elif w == 5:
            v, i = b[i:i + 4], i + 4
        else:
            raise ValueError("unsupported protobuf wire type %d" % w)
        yield f, w, v


def _entries(msgs):
    out = {}
    for m in msgs:
        kv = {f: bytes(v).decode() for f, _, v in _fields(m)}
        out[kv.get(1, "")] = kv.get(2, "")
    return out


def read_onnx(path):
    """The initializers (name -> torch tensor, external data read from the model's folder) and
    metadata_props of an ONNX model, from the protobuf wire format (ModelProto.graph = 7,
    metadata_props = 14; GraphProto.initializer = 5; TensorProto dims = 1, data_type = 2,
    float_data = 4, int64_data = 7, name = 8, raw_data = 9, external_data = 13)."""
    with open(path, "rb") as f:
        b = memoryview(f.read())
    meta, graph = [], None
    for f, _, v in _fields(b):
        if f == 14:
            meta.append(v)
        elif f == 7:
            graph = v
    if graph is None:
        raise SystemExit("peer: %s: no graph (not an ONNX model?)" % path)
    weights = {}
    folder = os.path.dirname(os.path.abspath(path))
    for f, _, t in _fields(graph):
        if f != 5:
            continue
        dims, dt, name, raw, ext, floats, ints = [], 1, "", None, [], [], []
        for tf, tw, v in _fields(t):
            if tf == 1:
                if tw == 2:  # packed
                    j = 0
                    while j < len(v):
                        d, j = _varint(v, j)
                        dims.append(d)
                else:
                    dims.append(v)
            elif tf == 2:
                dt = v
            elif tf == 4:
                floats.extend(struct.unpack("<%df" % (len(v) // 4), v) if tw == 2 else struct.unpack("<f", v))
            elif tf == 7:
                if tw == 2:
                    j = 0
                    while j < len(v):
                        d, j = _varint(v, j)
                        ints.append(d - (1 << 64) if d >= 1 << 63 else d)
                else:
                    ints.append(v)
            elif tf == 8:
                name = bytes(v).decode()
            elif tf == 9:
                raw = v
            elif tf == 13:
                ext.append(v)
        if dt not in DTYPES:
            raise SystemExit("peer: %s: initializer %s has ONNX data type %d, not one the peer reads" % (path, name, dt))
        count = 1
        for d in dims:
            count *= d
        if ext:
            e = _entries(ext)
            with open(os.path.join(folder, e["location"]), "rb") as fh:
                fh.seek(int(e.get("offset", "0")))
                raw = fh.read(int(e.get("length", count * torch.empty(0, dtype=DTYPES[dt]).element_size())))
        if raw is not None:
            x = torch.frombuffer(bytearray(raw), dtype=DTYPES[dt]) if len(raw) else torch.empty(0, dtype=DTYPES[dt])
        elif floats:
            x = torch.tensor(floats, dtype=torch.float32).to(DTYPES[dt])
        else:
            x = torch.tensor(ints, dtype=DTYPES[dt])
        if x.numel() != count:
            raise SystemExit("peer: %s: initializer %s holds %d values for dims %s" % (path, name, x.numel(), dims))
        weights[name] = x.reshape(dims)
    return weights, _entries(meta)


def layer_weight(i, module):
    return "model.layers.%d.%s.weight" % (i, module)


class Peer:
    """A LLaMA with frozen base weights and trainable elastic-LoRA A/B tensors."""

    def __init__(self, path, device="cpu", dtype=torch.float32):
        w, meta = read_onnx(path)  # external data resolves next to the file
        if "shears.lora" not in meta:
            raise SystemExit("peer: %s has no shears.lora metadata (not a super-network)" % path)
        self.lora = json.loads(meta["shears.lora"])
        self.device = device
        self.d = int(meta["hidden_size"])
        self.hid = int(meta["intermediate_size"])
        self.layers = int(meta["num_hidden_layers"])
        self.heads = int(meta["num_attention_heads"])
        self.kv = int(meta["num_key_value_heads"])
        self.vocab = int(meta["vocab_size"])
        self.eps = float(meta["rms_norm_eps"])
        self.hd = self.d // self.heads

        def t(name, dt=dtype):  # the frozen base in the compute type, on the device
            return w.pop(name).to(device=device, dtype=dt).contiguous()

        self.emb = t("model.embed_tokens.weight")
        self.cos, self.sin = t(COS), t(SIN)  # [max_seq, hd/2]
        self.norm = t("model.norm.weight")
        self.head = t("lm_head.weight").t().contiguous()  # ONNX [d, V] → [V, d]
        # Adapters by base weight name: (A [in, r], B [r, out], group index).
        groups = [g["name"] for g in self.lora["groups"]]
        self.adapters = {}
        self.params = []
        for mod in self.lora["modules"]:
            a = t(mod["a"], torch.float32).requires_grad_(True)
            b = t(mod["b"], torch.float32).requires_grad_(True)
            self.adapters[mod["weight"]] = (a, b, groups.index(mod["group"]))
            self.params += [a, b]
        self.groups = groups
        self.blocks = []
        mods = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
        for i in range(self.layers):
            blk = {"in_norm": t(layer_weight(i, "input_layernorm")),
                   "post_norm": t(layer_weight(i, "post_attention_layernorm"))}
            for mod in mods:
                name = layer_weight(i, mod)
                blk[mod] = (name, t(name).t().contiguous())  # [in, out] → [out, in] for F.linear
            self.blocks.append(blk)
        self.rmax = int(self.lora["r_max"])
        self.scale = float(self.lora["scale"])
        self.dropout = float(self.lora["dropout"])
        self.masks = None
        self.training = False

    def set_ranks(self, ranks):
        """ranks: one rank per group (prefix mask on the r_max adapter columns, times the scale)."""
        ar = torch.arange(self.rmax, device=self.device)
        self.masks = [(ar < r).to(torch.float32) * self.scale for r in ranks]

    def linear(self, x, entry):
        name, wt = entry
        y = F.linear(x, wt)
        ad = self.adapters.get(name) if self.masks is not None else None
        if ad is not None:
            a, b, g = ad
            xd = F.dropout(x, self.dropout, self.training) if self.dropout > 0 else x
            y = y + ((xd @ a) * self.masks[g]) @ b
        return y

    def rms(self, x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * w

    def rope(self, x, n, T):
        B = x.shape[0]
        x = x.view(B, T, n, self.hd // 2, 2)
        x0, x1 = x[..., 0], x[..., 1]
        c = self.cos[:T].view(T, 1, self.hd // 2)
        s = self.sin[:T].view(T, 1, self.hd // 2)
        return torch.stack((x0 * c - x1 * s, x0 * s + x1 * c), -1).view(B, T, n, self.hd)

    def logits(self, ids):
        B, T = ids.shape
        x = self.emb[ids]
        mask = torch.full((T, T), -1e9, device=self.device).triu(1)
        rep = self.heads // self.kv
        for blk in self.blocks:
            h = self.rms(x, blk["in_norm"])
            q = self.linear(h, blk["self_attn.q_proj"]).view(B, T, self.heads, self.hd)
            k = self.linear(h, blk["self_attn.k_proj"]).view(B, T, self.kv, self.hd)
            v = self.linear(h, blk["self_attn.v_proj"]).view(B, T, self.kv, self.hd)
            q = self.rope(q, self.heads, T).transpose(1, 2)
            k = self.rope(k, self.kv, T).transpose(1, 2)
            v = v.transpose(1, 2)
            if rep > 1:  # query head h reads kv head h // rep
                k = k.repeat_interleave(rep, dim=1)
                v = v.repeat_interleave(rep, dim=1)
            s = (q @ k.transpose(-1, -2)) / math.sqrt(self.hd) + mask
            o = (s.softmax(-1) @ v).transpose(1, 2).reshape(B, T, self.d)
            x = x + self.linear(o, blk["self_attn.o_proj"])
            h = self.rms(x, blk["post_norm"])
            g = self.linear(h, blk["mlp.gate_proj"])
            u = self.linear(h, blk["mlp.up_proj"])
            x = x + self.linear(F.silu(g) * u, blk["mlp.down_proj"])
        return F.linear(self.rms(x, self.norm), self.head)

    def loss(self, ids):
        logits = self.logits(ids).float()
        return F.cross_entropy(logits[:, :-1].reshape(-1, self.vocab), ids[:, 1:].reshape(-1))

    def flops_per_token(self, T):
        """FLOPs of one train step per token (see bench/RESULTS.md, "PyTorch peer")."""
        kvd = self.kv * self.hd
        p_lin = self.layers * (2 * self.d * self.d + 2 * self.d * kvd + 3 * self.d * self.hid) + self.d * self.vocab
        attn_fwd = 4 * T * self.d * self.layers
        lora = sum(self.rmax * (mod["in"] + mod["out"]) for mod in self.lora["modules"])
        return {"linear_params": p_lin, "lora_params": lora,
                "forward": 2 * p_lin + attn_fwd + 2 * lora,
                "train": 4 * p_lin + 3 * attn_fwd + 6 * lora}


def read_ids(path, n=None):
    out = []
    with open(path) as f:
        for line in f:
            if line.strip():
                out.append(json.loads(line)["ids"])
                if n is not None and len(out) == n:
                    break
    lens = {len(r) for r in out}
    if len(lens) != 1:
        raise SystemExit("peer: %s: records must all have the same length, got %s" % (path, sorted(lens)))
    return torch.tensor(out, dtype=torch.long)


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def setup(a):
    """The device, the compute type and the autocast context the flags ask for. float16 computes
    on CUDA only (under autocast, the adapters float32); on the CPU the peer computes float32."""
    if a.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("peer: --device cuda: torch %s sees no CUDA device" % torch.__version__)
    half = a.dtype == "fp16" and a.device == "cuda"
    dtype = torch.float16 if half else torch.float32
    if half:
        ctx = lambda: torch.autocast(device_type="cuda", dtype=torch.float16)
    else:
        import contextlib
        ctx = contextlib.nullcontext
    return dtype, ctx


def grad_scaler(enabled):
    """torch.amp.GradScaler("cuda") where it exists (torch >= 2.3; the torch.cuda.amp spelling is
    deprecated there), torch.cuda.amp.GradScaler before."""
    if hasattr(torch, "amp") and hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler("cuda", enabled=enabled)
    return torch.cuda.amp.GradScaler(enabled=enabled)


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def device_mem_mib(device):
    return torch.cuda.max_memory_allocated() / 2 ** 20 if device == "cuda" else 0.0


def cmd_train(a):
    torch.manual_seed(a.seed)
    gen = torch.Generator().manual_seed(a.seed)
    dtype, autocast = setup(a)
    t0 = time.perf_counter()
    model = Peer(a.model, a.device, dtype)
    data = read_ids(a.data)
    n, T = data.shape
    accum = a.batch // a.micro_batch
    steps = a.steps or n // a.batch
    if steps * a.batch > n:
        raise SystemExit("peer: %d steps of %d need %d records, %s has %d" % (steps, a.batch, steps * a.batch, a.data, n))
    order = torch.randperm(n, generator=gen)
    ranks = [int(r) for r in model.lora["ranks"]]
    opt = torch.optim.AdamW(model.params, lr=a.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    scaler = grad_scaler(dtype == torch.float16)
    total_micro = steps * accum
    model.training = True
    load_s = time.perf_counter() - t0
    step_s, losses = [], []
    for s in range(steps):
        sync(a.device)
        ts = time.perf_counter()
        step_loss = 0.0
        for m in range(accum):
            t = s * accum + m
            pick = torch.randint(0, len(ranks), (len(model.groups),), generator=gen).tolist()
            model.set_ranks([ranks[i] for i in pick])
            idx = order[(s * accum + m) * a.micro_batch:(s * accum + m + 1) * a.micro_batch]
            with autocast():
                loss = model.loss(data[idx].to(a.device))
            scaler.scale(loss / accum).backward()
            step_loss += loss.item() / accum
            for g in opt.param_groups:  # cosine to 0 per micro-batch, no warmup
                g["lr"] = 0.5 * a.lr * (1 + math.cos(math.pi * (t + 1) / total_micro))
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.params, 1.0)
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        sync(a.device)
        step_s.append(time.perf_counter() - ts)
        losses.append(step_loss)
        print("peer step %d/%d loss %.4f %.0f tok/s" % (s + 1, steps, step_loss, a.batch * T / step_s[-1]), file=sys.stderr)
    tokens = a.batch * T
    steady = step_s[1:] if len(step_s) > 1 else step_s
    print(json.dumps({
        "steps": steps, "seq_len": T, "tokens_per_step": tokens, "load_s": load_s, "step_s": step_s,
        "losses": losses, "tokens_per_s_steady": tokens * len(steady) / sum(steady),
        "tokens_per_s_total": tokens * steps / (time.perf_counter() - t0),
        "threads": torch.get_num_threads(), "flops_per_token": model.flops_per_token(T),
        "device": a.device, "compute_dtype": "fp16" if dtype == torch.float16 else "fp32",
        "peak_device_mem_mib": device_mem_mib(a.device), "peak_rss_mb": peak_rss_mb(), "torch": torch.__version__}))


def cmd_forward(a):
    """The base model's forward pass (no adapters, as bench/gpu/gpucheck measures shears'):
    one warm-up, then --steps timed passes of --batch sequences, each returning its float32 logits
    to host memory (what a shears session run does)."""
    dtype, autocast = setup(a)
    t0 = time.perf_counter()
    model = Peer(a.model, a.device, dtype)
    data = read_ids(a.data, a.batch)
    if data.shape[0] < a.batch:
        raise SystemExit("peer: %s has %d records, --batch %d" % (a.data, data.shape[0], a.batch))
    ids = data.to(a.device)
    T = ids.shape[1]
    load_s = time.perf_counter() - t0
    times = []
    with torch.no_grad(), autocast():
        for s in range(a.steps + 1):
            sync(a.device)
            ts = time.perf_counter()
            # The logits come back to host memory as float32, as onnxruntime returns them to shears.
            model.logits(ids).float().cpu()
            sync(a.device)
            times.append(time.perf_counter() - ts)
    steady = times[1:]
    print(json.dumps({
        "steps": a.steps, "seq_len": T, "batch": a.batch, "load_s": load_s, "step_s": times,
        "tokens_per_s_steady": a.batch * T * len(steady) / sum(steady), "threads": torch.get_num_threads(),
        "flops_per_token": model.flops_per_token(T), "device": a.device,
        "compute_dtype": "fp16" if dtype == torch.float16 else "fp32",
        "peak_device_mem_mib": device_mem_mib(a.device), "peak_rss_mb": peak_rss_mb(), "torch": torch.__version__}))


def cmd_loss(a):
    dtype, autocast = setup(a)
    model = Peer(a.model, a.device, dtype)
    data = read_ids(a.data, a.n).to(a.device)
    model.set_ranks([model.rmax] * len(model.groups))
    with torch.no_grad(), autocast():
        per = [model.loss(data[i:i + 1]).item() for i in range(data.shape[0])]
        mean = model.loss(data).item()
        last = model.logits(data[:1])[0, -1].float().tolist()  # the first record's last position
    print(json.dumps({"n": data.shape[0], "loss": mean, "per_sequence": per, "last_logits": last}))


def cmd_sgemm(a):
    n = a.n
    x, y = torch.randn(n, n), torch.randn(n, n)
    torch.matmul(x, y)
    best = float("inf")
    for _ in range(a.reps):
        t = time.perf_counter()
        torch.matmul(x, y)
        best = min(best, time.perf_counter() - t)
    print(json.dumps({"n": n, "threads": torch.get_num_threads(), "best_s": best, "gflops": 2 * n ** 3 / best / 1e9}))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("model")
    t.add_argument("data")
    t.add_argument("--steps", type=int, default=0)
    t.add_argument("--batch", type=int, default=16)
    t.add_argument("--micro-batch", type=int, default=4)
    t.add_argument("--lr", type=float, default=3e-4)
    t.add_argument("--seed", type=int, default=42)
    fw = sub.add_parser("forward")
    fw.add_argument("model")
    fw.add_argument("data")
    fw.add_argument("--steps", type=int, default=5)
    fw.add_argument("--batch", type=int, default=4)
    l = sub.add_parser("loss")
    l.add_argument("model")
    l.add_argument("data")
    l.add_argument("--n", type=int, default=16)
    g = sub.add_parser("sgemm")
    g.add_argument("--n", type=int, default=2048)
    g.add_argument("--reps", type=int, default=5)
    for s in (t, l, g, fw):
        s.add_argument("--threads", type=int, default=2)
    for s in (t, l, fw):
        s.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
        s.add_argument("--dtype", choices=["fp32", "fp16"], default="fp32",
                       help="the frozen base's compute type: fp16 on CUDA only (autocast); the CPU computes fp32")
    a = p.parse_args()
    for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        if v in os.environ:
            raise SystemExit("peer: %s is set; the peer must run with it unset" % v)
    torch.set_num_threads(a.threads)
    if a.cmd == "train" and (a.micro_batch < 1 or a.batch % a.micro_batch):
        raise SystemExit("peer: batch %d is not a multiple of micro-batch %d" % (a.batch, a.micro_batch))
    {"train": cmd_train, "forward": cmd_forward, "loss": cmd_loss, "sgemm": cmd_sgemm}[a.cmd](a)


if __name__ == "__main__":
    main()
