#!/usr/bin/env python3
"""Which attention kernel libtorch picks for grlhf's decode shapes, and what cuDNN's plan cache costs.

Issue 18's unmeasured risk: torch 2.11 with cuDNN 9.x prefers cuDNN attention on sm90, and its
plan cache is keyed on the exact key length and never shrinks, so decoding (a new key length
every step) could rebuild plans and grow memory. This prints, for a Qwen2-0.5B-shaped decode
(14 query heads, 2 KV heads, head_dim 64, bf16, one query per row):

- the backend `scaled_dot_product_attention` chooses (torch._fused_sdp_choice) with and without
  a boolean mask, with GQA expanded or not, at batch 1, 8 and 64;
- per backend forced in turn (cuDNN, flash, efficient, math), called as grlhf calls SDPA (K/V
  with 2 heads and `enable_gqa=True`; with a `[b, 1, 1, kv]` bool mask, as the slot cache and
  padded batches do, and without): the time of one call at kv length 512, and the growth of the
  host's current RSS over `--lengths` calls whose key length changes every call (what decoding
  does; the plan cache is host memory), in a JSON file. Inputs are sliced from one buffer
  allocated at the longest length, so GPU allocations do not change with the length.

Run on a GPU machine: python3 benchmarks/sdpa_choice.py --out sdpa.json
"""

import argparse
import json
import resource
import time

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
import torch.nn.functional as F

BACKENDS = {
    "cudnn": SDPBackend.CUDNN_ATTENTION,
    "flash": SDPBackend.FLASH_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "math": SDPBackend.MATH,
}


def rss_mib():
    # Current resident set (pages), not ru_maxrss's peak.
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def tensors(batch, kv_len, heads=14, kv_heads=2, dim=64, expand=True, mask=False):
    dev, dt = "cuda", torch.bfloat16
    q = torch.randn(batch, heads, 1, dim, device=dev, dtype=dt)
    k = torch.randn(batch, kv_heads, kv_len, dim, device=dev, dtype=dt)
    v = torch.randn_like(k)
    if expand:
        k = k.repeat_interleave(heads // kv_heads, 1)
        v = v.repeat_interleave(heads // kv_heads, 1)
    m = torch.ones(batch, 1, 1, kv_len, device=dev, dtype=torch.bool) if mask else None
    return q, k, v, m


def choice(batch, kv_len, expand, mask):
    q, k, v, m = tensors(batch, kv_len, expand=expand, mask=mask)
    try:
        return SDPBackend(torch._fused_sdp_choice(q, k, v, m, 0.0, False, enable_gqa=not expand)).name
    except Exception as e:  # noqa: BLE001 - report, do not stop
        return f"error: {e}"


def attend(q, k, v, m):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=m, enable_gqa=True)


def timed(backend, mask, batch=8, kv_len=512, repeats=200):
    q, k, v, m = tensors(batch, kv_len, expand=False, mask=mask)
    with sdpa_kernel([BACKENDS[backend]]):
        try:
            attend(q, k, v, m)
        except RuntimeError as e:
            return {"error": str(e).splitlines()[0]}
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(repeats):
            attend(q, k, v, m)
        torch.cuda.synchronize()
    return {"us_per_call": (time.perf_counter() - start) / repeats * 1e6}


def growth(backend, mask, lengths):
    q, k_all, v_all, m_all = tensors(8, 64 + lengths, expand=False, mask=mask)
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    rss0, gpu0 = rss_mib(), torch.cuda.memory_reserved() / 2**20
    with sdpa_kernel([BACKENDS[backend]]):
        try:
            for kv_len in range(64, 64 + lengths):
                m = None if m_all is None else m_all[..., :kv_len]
                attend(q, k_all[:, :, :kv_len], v_all[:, :, :kv_len], m)
        except RuntimeError as e:
            return {"error": str(e).splitlines()[0]}
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    return {
        "calls": lengths,
        "host_rss_growth_mib": rss_mib() - rss0,
        "gpu_reserved_growth_mib": torch.cuda.memory_reserved() / 2**20 - gpu0,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="sdpa.json")
    ap.add_argument("--lengths", type=int, default=1000)
    args = ap.parse_args()
    report = {
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "cudnn": torch.backends.cudnn.version(),
        "choices": [],
        "backends": {},
    }
    for batch in (1, 8, 64):
        for expand in (True, False):
            for mask in (False, True):
                report["choices"].append(
                    {"batch": batch, "gqa_expanded": expand, "bool_mask": mask,
                     "chosen": choice(batch, 512, expand, mask)})
    for name in BACKENDS:
        for mask in (False, True):
            key = f"{name}, {'bool mask' if mask else 'no mask'}"
            report["backends"][key] = {**timed(name, mask), **growth(name, mask, args.lengths)}
    json.dump(report, open(args.out, "w"), indent=1)
    for c in report["choices"]:
        print(c)
    for name, r in report["backends"].items():
        print(name, r)


if __name__ == "__main__":
    main()
