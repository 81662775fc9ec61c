#!/usr/bin/env python3
"""The peer for grlhf's decode benchmark: transformers' `generate` on the same checkpoints.

Same workload as `grlhf-bench decode` (see benchmarks/src/decode.rs): `batch` copies of one
deterministic prompt, greedy, exactly `new_tokens` new tokens, KV cache, same device, dtype and
thread count; wall-clock of the whole call, median of `repeats` runs after one warm-up.
Writes a JSON list of points in grlhf-bench's schema.
"""

import argparse
import json
import statistics
import sys
import time

import torch
from transformers import Qwen2ForCausalLM

DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}


def bench_prompt(length, vocab):
    # Must equal grlhf-bench's `bench_prompt`.
    return [3 + (i * 7919 + 13) % (vocab - 3) for i in range(length)]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", action="append", required=True, help="NAME=DIR (repeatable)")
    p.add_argument("--batches", default="1,8,64")
    p.add_argument("--prompt-len", type=int, default=16)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="f32", choices=sorted(DTYPES))
    p.add_argument("--out", required=True)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    points = []
    for spec in args.model:
        name, path = spec.split("=", 1)
        model = Qwen2ForCausalLM.from_pretrained(
            path, dtype=DTYPES[args.dtype], attn_implementation="sdpa"
        ).to(device).eval()
        prompt = bench_prompt(args.prompt_len, model.config.vocab_size)
        for batch in [int(b) for b in args.batches.split(",")]:
            ids = torch.tensor([prompt] * batch, device=device)
            mask = torch.ones_like(ids)
            times = []
            for run in range(args.repeats + 1):
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                with torch.no_grad():
                    out = model.generate(
                        ids, attention_mask=mask, do_sample=False,
                        max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                        eos_token_id=None, pad_token_id=0,
                    )
                if device.type == "cuda":
                    torch.cuda.synchronize()
                seconds = time.perf_counter() - start
                assert out.shape[1] == args.prompt_len + args.new_tokens, out.shape
                if run > 0:
                    times.append(seconds)
            med = statistics.median(times)
            tps = batch * args.new_tokens / med
            print(f"transformers {name:>6} batch {batch:>3}: {tps:>9.1f} tok/s ({med:.3f} s)",
                  file=sys.stderr, flush=True)
            points.append({
                "engine": "transformers", "model": name, "batch": batch,
                "seconds_median": med, "seconds_all": times, "tokens_per_second": tps,
            })
    with open(args.out, "w") as f:
        json.dump(points, f, indent=1)


if __name__ == "__main__":
    main()
