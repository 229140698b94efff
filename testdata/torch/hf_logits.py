#!/usr/bin/python3
"""Logits of a Hugging Face LLaMA checkpoint folder, computed by plain PyTorch.

The independent truth for "shears ... --format hf": the folder's config.json and safetensors
(one file, or shards with model.safetensors.index.json; read here with numpy, no safetensors
package) are loaded by name into optimum_llama.py's transformers-style LlamaForCausalLM
(rotate-half RoPE, GQA, SwiGLU, RMSNorm; module names as transformers'), which then runs ids.

  /usr/bin/python3 testdata/torch/hf_logits.py DIR ID [ID ...]   -> JSON list of logits [T·vocab]

Everything here is this project's own code.
"""

import json
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import optimum_llama  # noqa: E402

DTYPES = {"F32": np.float32, "F16": np.float16}


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        a, b = e["data_offsets"]
        arr = np.frombuffer(raw[8 + n + a:8 + n + b], dtype=DTYPES[e["dtype"]]).reshape(e["shape"])
        out[name] = torch.from_numpy(arr.astype(np.float32))
    return out


def main():
    folder, ids = sys.argv[1], [int(x) for x in sys.argv[2:]]
    with open(os.path.join(folder, "config.json")) as f:
        c = json.load(f)
    files = ["model.safetensors"]
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    state = {}
    for name in files:
        state.update(read_safetensors(os.path.join(folder, name)))
    if "lm_head.weight" not in state and c.get("tie_word_embeddings"):
        state["lm_head.weight"] = state["model.embed_tokens.weight"]
    cfg = {"dim": c["hidden_size"], "hidden": c["intermediate_size"], "layers": c["num_hidden_layers"],
           "heads": c["num_attention_heads"], "kv_heads": c["num_key_value_heads"], "vocab": c["vocab_size"],
           "seq": c["max_position_embeddings"]}
    m = optimum_llama.LlamaForCausalLM(cfg)
    m.load_state_dict(state, strict=True)
    m.eval()
    x = torch.tensor([ids])
    with torch.no_grad():
        logits = m(x, torch.ones_like(x), torch.arange(len(ids))[None])[0]
    json.dump([float(v) for v in logits.reshape(-1)], sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
