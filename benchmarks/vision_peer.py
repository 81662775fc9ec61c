#!/usr/bin/env python3
"""The peer for grlhf's multimodal benchmark: transformers on the same Qwen2-VL checkpoints.

`--create` writes a random Qwen2-VL checkpoint of a preset shape (config, safetensors,
preprocessor_config.json and a deterministic 448x448 bench_image.png) for both engines to load.
Otherwise it times, for one checkpoint: the vision tower on `images` copies of the bench image
(preprocessing excluded), and greedy decoding of `new_tokens` tokens for `batch` copies of a
prompt holding the image (same prompt ids as grlhf-bench builds). Median of `repeats` runs after
one warm-up; writes a JSON list of points in grlhf-bench's schema.
"""

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np
import torch

DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}

PRESETS = {
    # text (hidden, layers, heads, kv, intermediate, vocab), vision (embed, depth, heads)
    "tiny": ((64, 2, 4, 2, 128, 512), (32, 2, 2)),
    "100m": ((512, 12, 8, 2, 1408, 32000), (384, 8, 6)),
    "2b": ((1536, 28, 12, 2, 8960, 151936), (1280, 32, 16)),
}
IMAGE_TOKEN, VISION_START, VISION_END = 5, 3, 4


def create(path, preset, dtype, seed=0):
    from PIL import Image
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor

    (h, layers, heads, kv, inter, vocab), (embed, depth, vheads) = PRESETS[preset]
    head_dim = h // heads
    quarter = head_dim // 2
    section = [quarter - 2 * (quarter // 3), quarter // 3, quarter // 3]
    config = Qwen2VLConfig(
        text_config=dict(vocab_size=vocab, hidden_size=h, intermediate_size=inter,
                         num_hidden_layers=layers, num_attention_heads=heads,
                         num_key_value_heads=kv, eos_token_id=2, bos_token_id=1,
                         rope_parameters={"rope_type": "default", "rope_theta": 1000000.0,
                                          "mrope_section": section}),
        vision_config=dict(depth=depth, embed_dim=embed, hidden_size=h, num_heads=vheads,
                           mlp_ratio=4, spatial_merge_size=2, patch_size=14, temporal_patch_size=2),
        image_token_id=IMAGE_TOKEN, vision_start_token_id=VISION_START,
        vision_end_token_id=VISION_END, video_token_id=6,
    )
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config)
    n = sum(p.numel() for p in model.parameters())
    model.to(DTYPES[dtype]).save_pretrained(path)
    Qwen2VLImageProcessor().save_pretrained(path)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, size=(448, 448, 3), dtype=np.uint8), "RGB").save(
        os.path.join(path, "bench_image.png"))
    print(f"created {preset} Qwen2-VL ({n / 1e6:.1f}M parameters) in {path}", file=sys.stderr)


def prompt_ids(image_tokens, text_len, vocab):
    # Must equal grlhf-bench's `vision_prompt`.
    text = [7 + (i * 7919 + 13) % (vocab - 7) for i in range(text_len)]
    return [VISION_START] + [IMAGE_TOKEN] * image_tokens + [VISION_END] + text


def timed(fn, repeats, device):
    times = []
    for run in range(repeats + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if run > 0:
            times.append(time.perf_counter() - start)
    return statistics.median(times), times


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="NAME=DIR")
    p.add_argument("--create", choices=sorted(PRESETS))
    p.add_argument("--images", type=int, default=4)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--text-len", type=int, default=16)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="f32", choices=sorted(DTYPES))
    p.add_argument("--out")
    args = p.parse_args()
    name, path = args.model.split("=", 1)
    if args.create:
        create(path, args.create, args.dtype)
        return
    from PIL import Image
    from transformers import Qwen2VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = Qwen2VLForConditionalGeneration.from_pretrained(
        path, dtype=DTYPES[args.dtype], attn_implementation="sdpa").to(device).eval()
    proc = Qwen2VLImageProcessor.from_pretrained(path)
    image = Image.open(os.path.join(path, "bench_image.png"))
    points = []
    with torch.no_grad():
        batch = proc(images=[image] * args.images, return_tensors="pt")
        pixels = batch["pixel_values"].to(device)
        grid = batch["image_grid_thw"].to(device)
        med, times = timed(lambda: model.model.visual(pixels, grid_thw=grid), args.repeats, device)
        points.append({"engine": "transformers", "model": name, "batch": args.images,
                       "seconds_median": med, "seconds_all": times,
                       "tokens_per_second": args.images / med, "metric": "vision_images_per_s"})
        one = proc(images=[image], return_tensors="pt")
        tokens = int(one["image_grid_thw"][0].prod()) // 4
        ids = torch.tensor([prompt_ids(tokens, args.text_len, model.config.text_config.vocab_size)]
                           * args.batch, device=device)
        inputs = dict(input_ids=ids, attention_mask=torch.ones_like(ids),
                      pixel_values=torch.cat([one["pixel_values"]] * args.batch).to(device),
                      image_grid_thw=torch.cat([one["image_grid_thw"]] * args.batch).to(device),
                      mm_token_type_ids=(ids == IMAGE_TOKEN).int())

        def gen():
            out = model.generate(**inputs, do_sample=False, max_new_tokens=args.new_tokens,
                                 min_new_tokens=args.new_tokens, eos_token_id=None, pad_token_id=0)
            assert out.shape[1] == ids.shape[1] + args.new_tokens, out.shape
        med, times = timed(gen, args.repeats, device)
        points.append({"engine": "transformers", "model": name, "batch": args.batch,
                       "seconds_median": med, "seconds_all": times,
                       "tokens_per_second": args.batch * args.new_tokens / med,
                       "metric": "multimodal_decode_tokens_per_s"})
    for pt in points:
        print(f"transformers {name:>6} {pt['metric']} batch {pt['batch']}: "
              f"{pt['tokens_per_second']:.1f}/s ({pt['seconds_median']:.3f} s)", file=sys.stderr)
    with open(args.out, "w") as f:
        json.dump(points, f, indent=1)


if __name__ == "__main__":
    main()
