#!/usr/bin/env python3
"""Parity fixtures: tiny random models built and run by `transformers`, for the Rust tests.

Writes, under the output directory (default: target/fixtures):

  qwen2/<case>/       config.json, safetensors weights (one case sharded with an index),
                      expected.json: prompts, logits at every position, greedy continuations
                      from `generate`, and the smallest top-1/top-2 logit margin seen
  reward/             a Qwen2ForSequenceClassification (num_labels=1) and its scores
  images/             PNG images of several sizes (up- and down-scaled by smart resize), the
                      preprocessor_config.json, and transformers' pixel_values / image_grid_thw
  mrope/              prompts with 0, 1 and 2 images run through Qwen2VLProcessor (placeholder
                      expansion, left padding) and Qwen2VLModel.get_rope_index
  qwen2_vl/           a tiny random Qwen2VLForConditionalGeneration and, for prompts with one
                      and two images, the processor's input ids, logits and greedy continuations
  qwen2_5_vl/         the same for Qwen2_5_VLForConditionalGeneration (window attention)
  <vl>_hub/           the same weights under the hub's transformers-4 config.json layout
                      (Qwen2-VL-2B-Instruct's / Qwen2.5-VL-3B-Instruct's keys, tiny sizes)
  qwen2/<text>_hub/   a tiny text model under Qwen2-0.5B-Instruct's / Qwen2.5-0.5B-Instruct's
                      hub config (torch_dtype, sliding window off, eos int or list), and
  qwen2/<text>_resaved/  the same re-saved by transformers 5
  <vl>_resaved/       that directory loaded and re-saved by transformers 5 (rope `type` kept
                      next to `rope_type`); transformers computes the base logits from both
  tokenizer/          a byte-level BPE tokenizer.json with Qwen2's pre-tokenizer and special
                      tokens, and expected encodings / decodings / chat-template renderings
  parquet/            preference datasets as Hugging Face publishes them (align-anything's and
                      RLAIF-V's layouts, renamed columns, a bad row), written by pyarrow
  chat_templates/     Qwen2's, Qwen2.5's and Qwen2-VL's own chat templates, each in a file form
                      checkpoints ship (tokenizer_config.json, a named list in it,
                      chat_template.json, chat_template.jinja), and transformers' renderings

Greedy continuations are only useful for an exact-match test when no step is a near-tie, so
prompts are re-drawn until every greedy step's top-1/top-2 margin exceeds a tolerance much
larger than the dtype's rounding error. The script is deterministic and skips all work when
its stamp (script hash + library versions) is unchanged.
"""

import argparse
import hashlib
import json
import os
import shutil
import sys

import numpy as np
import torch
import transformers
from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen2ForSequenceClassification

VOCAB = 320
BASE = dict(
    vocab_size=VOCAB,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    max_position_embeddings=512,
    rms_norm_eps=1e-6,
    initializer_range=0.08,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=0,
    use_sliding_window=False,
)

# name -> (num_key_value_heads, tie_word_embeddings, rope_theta, dtype, sharded)
CASES = {
    "gqa_tied_f32": (2, True, 10000.0, torch.float32, False),
    "mha_untied_f32_sharded": (4, False, 1000000.0, torch.float32, True),
    "gqa_untied_bf16": (2, False, 1000000.0, torch.bfloat16, False),
    "mha_tied_bf16": (4, True, 10000.0, torch.bfloat16, False),
}
PROMPT_LENGTHS = [5, 9, 13]
MAX_NEW_TOKENS = 10
# Greedy steps must beat the runner-up by this much for exact-token comparison to be fair.
MIN_MARGIN = {torch.float32: 1e-3, torch.bfloat16: 0.1}

# The `chat_template` of Qwen2-Instruct checkpoints.
QWEN2_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
# The keys and values of the hub's config.json for Qwen2-0.5B-Instruct and Qwen2.5-0.5B-Instruct
# (transformers-4 layout: torch_dtype, rope_theta at the top, a sliding window that is switched
# off). Sizes, ids and numerics are replaced by the tiny model's; the eos id is kept an int in one
# and made a list in the other, the two forms configs use.
HUB_TEXT_CONFIGS = {
    "qwen2_0_5b": {
        "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
        "eos_token_id": 151645, "hidden_act": "silu", "hidden_size": 896,
        "initializer_range": 0.02, "intermediate_size": 4864, "max_position_embeddings": 32768,
        "max_window_layers": 24, "model_type": "qwen2", "num_attention_heads": 14,
        "num_hidden_layers": 24, "num_key_value_heads": 2, "rms_norm_eps": 1e-06,
        "rope_theta": 1000000.0, "sliding_window": 32768, "tie_word_embeddings": True,
        "torch_dtype": "bfloat16", "transformers_version": "4.40.1", "use_cache": True,
        "use_sliding_window": False, "vocab_size": 151936,
    },
    "qwen2_5_0_5b": {
        "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
        "eos_token_id": [151645, 151643], "hidden_act": "silu", "hidden_size": 896,
        "initializer_range": 0.02, "intermediate_size": 4864, "max_position_embeddings": 32768,
        "max_window_layers": 21, "model_type": "qwen2", "num_attention_heads": 14,
        "num_hidden_layers": 24, "num_key_value_heads": 2, "rms_norm_eps": 1e-06,
        "rope_theta": 1000000.0, "sliding_window": 32768, "tie_word_embeddings": True,
        "torch_dtype": "bfloat16", "transformers_version": "4.43.1", "use_cache": True,
        "use_sliding_window": False, "vocab_size": 151936,
    },
}

# Qwen2.5-Instruct's chat template (tool use included), as its tokenizer_config.json carries it.
QWEN2_5_CHAT_TEMPLATE = r"""{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"""
# Qwen2-VL-Instruct's chat template (chat_template.json of Qwen2-VL-2B-Instruct).
QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture "
    "{{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video "
    "{{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
QWEN2_PRETOKENIZE = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|image_pad|>", "<|video_pad|>",
]


def stamp_text():
    with open(__file__, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    return f"{digest} torch={torch.__version__} transformers={transformers.__version__}\n"


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f)


DEVICE = torch.device("cpu")


def greedy_with_margin(model, prompt, repetition_penalty=None, max_new_tokens=None):
    ids = torch.tensor([prompt], device=DEVICE)
    max_new_tokens = max_new_tokens or MAX_NEW_TOKENS
    out = model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=max_new_tokens,
        min_new_tokens=max_new_tokens,
        do_sample=False,
        eos_token_id=None,
        pad_token_id=0,
        repetition_penalty=repetition_penalty,
        output_scores=True,
        return_dict_in_generate=True,
    )
    new = out.sequences[0, len(prompt):].tolist()
    margins = []
    for scores in out.scores:
        top = scores[0].float().topk(2).values
        margins.append(float(top[0] - top[1]))
    return new, min(margins)


def make_lm_case(root, name, kv_heads, tied, theta, dtype, sharded):
    torch.manual_seed(sum(map(ord, name)))
    config = Qwen2Config(
        **BASE,
        num_key_value_heads=kv_heads,
        tie_word_embeddings=tied,
        rope_theta=theta,
    )
    config._attn_implementation = "sdpa"
    model = Qwen2ForCausalLM(config).eval().to(dtype)
    model.generation_config.eos_token_id = None
    out = os.path.join(root, "qwen2", name)
    os.makedirs(out, exist_ok=True)
    model.save_pretrained(out, max_shard_size="40KB" if sharded else "2GB")
    # Expectations come from the checkpoint as users load it. (`model.to(bf16)` above also
    # rounds the rotary inverse frequencies to bf16; `from_pretrained` keeps them in f32.)
    model = Qwen2ForCausalLM.from_pretrained(out, dtype=dtype, attn_implementation="sdpa")
    model = model.to(DEVICE).eval()
    model.generation_config.eos_token_id = None
    rng = np.random.default_rng(sum(map(ord, name)))
    prompts, logits, greedy, margins = [], [], [], []
    with torch.no_grad():
        for length in PROMPT_LENGTHS:
            for _ in range(200):
                prompt = rng.integers(3, VOCAB, size=length).tolist()
                new, margin = greedy_with_margin(model, prompt)
                if margin > MIN_MARGIN[dtype]:
                    break
            else:
                sys.exit(f"{name}: no well-conditioned prompt of length {length}")
            full = model(torch.tensor([prompt], device=DEVICE)).logits[0].float().cpu()
            prompts.append(prompt)
            logits.append({"shape": list(full.shape), "data": full.flatten().tolist()})
            greedy.append(new)
            margins.append(margin)
    write_json(
        os.path.join(out, "expected.json"),
        {
            "dtype": "bf16" if dtype == torch.bfloat16 else "f32",
            "device": DEVICE.type,
            "prompts": prompts,
            "logits": logits,
            "greedy": greedy,
            "max_new_tokens": MAX_NEW_TOKENS,
            "min_margin": min(margins),
            "sharded": sharded,
        },
    )
    print(f"fixtures: qwen2/{name} (min greedy margin {min(margins):.4f})")


def make_repetition_penalty_case(root):
    """A checkpoint whose generation_config.json asks for greedy decoding with a repetition
    penalty and two end-of-sequence ids, and transformers' greedy continuations with and
    without that penalty (prompts re-drawn until every step is well clear of a tie, and until
    the penalty changes at least one continuation)."""
    torch.manual_seed(1234)
    config = Qwen2Config(**BASE, num_key_value_heads=2, tie_word_embeddings=True)
    model = Qwen2ForCausalLM(config).eval()
    out = os.path.join(root, "qwen2", "repetition_penalty")
    os.makedirs(out, exist_ok=True)
    model.generation_config.eos_token_id = None
    model.save_pretrained(out)
    penalty, steps = 1.8, 12
    write_json(os.path.join(out, "generation_config.json"), {
        "do_sample": False, "repetition_penalty": penalty, "eos_token_id": [2, 7],
        "temperature": 0.7, "top_p": 0.8, "top_k": 20, "bos_token_id": 1,
    })
    model = Qwen2ForCausalLM.from_pretrained(out, dtype=torch.float32).to(DEVICE).eval()
    model.generation_config.eos_token_id = None
    rng = np.random.default_rng(99)
    cases, changed = [], False
    with torch.no_grad():
        for length in (5, 9):
            for _ in range(300):
                # Repeated tokens in the prompt, so the penalty has something to act on.
                prompt = rng.integers(3, 40, size=length).tolist()
                penalised, m1 = greedy_with_margin(model, prompt, penalty, steps)
                plain, m2 = greedy_with_margin(model, prompt, None, steps)
                if min(m1, m2) > MIN_MARGIN[torch.float32]:
                    break
            else:
                sys.exit(f"repetition_penalty: no well-conditioned prompt of length {length}")
            changed |= penalised != plain
            cases.append({"prompt": prompt, "penalised": penalised, "plain": plain})
    if not changed:
        sys.exit("repetition_penalty: the penalty changed no continuation; pick other prompts")
    write_json(os.path.join(out, "expected.json"), {
        "repetition_penalty": penalty, "max_new_tokens": steps, "cases": cases})
    print("fixtures: qwen2/repetition_penalty")


def make_reward_case(root):
    torch.manual_seed(7)
    config = Qwen2Config(**BASE, num_key_value_heads=2, num_labels=1)
    config._attn_implementation = "sdpa"
    model = Qwen2ForSequenceClassification(config).eval()
    out = os.path.join(root, "reward")
    os.makedirs(out, exist_ok=True)
    model.save_pretrained(out)
    rng = np.random.default_rng(7)
    # Ids >= 3 so no token equals pad_token_id (transformers reads the last non-pad token).
    sequences = [rng.integers(3, VOCAB, size=n).tolist() for n in (4, 7, 11)]
    with torch.no_grad():
        scores = [float(model(torch.tensor([s])).logits[0, 0]) for s in sequences]
    write_json(os.path.join(out, "expected.json"), {"sequences": sequences, "scores": scores})
    print("fixtures: reward")


def make_tokenizer_case(root):
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    corpus = [
        "How many red circles are in the picture? There are three red circles.",
        "The blue square is to the left of the green triangle.",
        "Is there a yellow star? No, there is no yellow star in the image.",
        "Answer with one word. Describe the scene: two small objects, one large.",
        "I can't help with that request, it would be unsafe.",
    ] * 20
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)
    out = os.path.join(root, "tokenizer")
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "tokenizer.json")
    tok.save(path)
    fast = PreTrainedTokenizerFast(tokenizer_file=path)
    texts = [
        "How many red circles are there?",
        "  leading spaces, trailing spaces  ",
        "numbers 12345 and symbols !?;:\n\nnew lines\r\n",
        "unicode: café, naïve, 日本語, emoji 🙂",
        "it's what they've said, I'll do",
        "<|im_start|>user\nhi<|im_end|>\n",
    ]
    cases = []
    for text in texts:
        ids = tok.encode(text).ids
        cases.append({"text": text, "ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False)})
    conversations = [
        ([{"role": "user", "content": "How many red circles are there?"}], True),
        ([{"role": "system", "content": "Be brief."},
          {"role": "user", "content": "Is there a star?"},
          {"role": "assistant", "content": "No."},
          {"role": "user", "content": "Sure?"}], True),
        ([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}], False),
    ]
    chats = []
    for messages, add in conversations:
        rendered = fast.apply_chat_template(
            messages, chat_template=QWEN2_CHAT_TEMPLATE, tokenize=False, add_generation_prompt=add
        )
        chats.append({
            "messages": messages,
            "add_generation_prompt": add,
            "rendered": rendered,
            "ids": tok.encode(rendered).ids,
        })
    write_json(os.path.join(out, "expected.json"), {"cases": cases, "chats": chats})
    print("fixtures: tokenizer")


def make_chat_template_cases(root):
    """Each checkpoint's own chat template, in the file form it ships in, and transformers'
    renderings of conversations through it (`apply_chat_template`, tokenize=False)."""
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(tokenizer_file=os.path.join(root, "tokenizer", "tokenizer.json"))
    text = [
        ([{"role": "user", "content": "How many red circles are there?"}], True),
        ([{"role": "system", "content": "Be brief."},
          {"role": "user", "content": "Is there a star?"},
          {"role": "assistant", "content": "No."},
          {"role": "user", "content": "Sure?"}], True),
        ([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}], False),
    ]
    vision = text + [
        ([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe it."}]}], True),
        ([{"role": "system", "content": "You judge answers."},
          {"role": "user", "content": [{"type": "image"}, {"type": "image"},
                                        {"type": "text", "text": "Which differs?"}]},
          {"role": "assistant", "content": [{"type": "text", "text": "The second."}]},
          {"role": "user", "content": "Why?"}], True),
    ]
    cases = {
        # name: (template, the file it ships in, conversations)
        "qwen2": (QWEN2_CHAT_TEMPLATE, "tokenizer_config.json", text),
        "qwen2_5": (QWEN2_5_CHAT_TEMPLATE, "chat_template.jinja", text),
        "qwen2_vl": (QWEN2_VL_CHAT_TEMPLATE, "chat_template.json", vision),
        "qwen2_vl_named": (QWEN2_VL_CHAT_TEMPLATE, "tokenizer_config.json:named", vision),
    }
    for name, (template, form, conversations) in cases.items():
        out = os.path.join(root, "chat_templates", name)
        os.makedirs(out, exist_ok=True)
        config = {"bos_token": None, "eos_token": "<|im_end|>", "tokenizer_class": "Qwen2Tokenizer"}
        if form == "tokenizer_config.json":
            config["chat_template"] = template
        elif form == "tokenizer_config.json:named":
            config["chat_template"] = [{"name": "tool_use", "template": "unused"},
                                       {"name": "default", "template": template}]
        elif form == "chat_template.json":
            write_json(os.path.join(out, "chat_template.json"), {"chat_template": template})
        else:
            with open(os.path.join(out, "chat_template.jinja"), "w") as f:
                f.write(template)
        write_json(os.path.join(out, "tokenizer_config.json"), config)
        rendered = [
            {"messages": messages, "add_generation_prompt": add,
             "rendered": fast.apply_chat_template(messages, chat_template=template, tokenize=False,
                                                  add_generation_prompt=add)}
            for messages, add in conversations
        ]
        write_json(os.path.join(out, "expected.json"), {"chats": rendered})
    print("fixtures: chat templates")


def make_parquet_cases(root):
    """Preference datasets as Hugging Face publishes them, written by pyarrow: align-anything's
    layout (PNG bytes in `{bytes, path}` structs, `overall_response`), RLAIF-V's (JPEG bytes,
    `chosen` / `rejected`), a dataset with other column names (raw image bytes), and one with a
    bad row. expected.json holds what a reader must find."""
    import io
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    out = os.path.join(root, "parquet")
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(5)

    def image_bytes(fmt, size):
        pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format=fmt)
        return buffer.getvalue()

    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    sizes = [(32, 24), (40, 40), (28, 56)]
    expected = {}

    questions = ["What colour is the circle?", "How many squares are there?", "Is there a star?"]
    rows = [
        ("What colour is the circle?", "It is red.", "It is blue.", 1),
        ("How many squares are there?", "There are three.", "There are two squares.", 2),
        ("Is there a star?", "No.", "Yes, a yellow star.", 1),
    ]
    table = pa.table({
        "question": [r[0] for r in rows],
        "image": pa.array([{"bytes": image_bytes("PNG", s), "path": f"img{i}.png"}
                           for i, s in enumerate(sizes)], type=image_type),
        "response_1": [r[1] for r in rows],
        "response_2": [r[2] for r in rows],
        "overall_response": pa.array([r[3] for r in rows], type=pa.int64()),
    })
    pq.write_table(table, os.path.join(out, "align_anything.parquet"))
    expected["align_anything.parquet"] = [
        {"question": q, "response_1": a, "response_2": b, "preferred": p, "size": list(s)}
        for (q, a, b, p), s in zip(rows, sizes)
    ]

    chosen = ["The circle is red.", "Three squares.", "There is no star."]
    rejected = ["The circle is green.", "Five squares.", "There are two stars."]
    table = pa.table({
        "ds_name": ["RLAIF-V"] * 3,
        "image": pa.array([{"bytes": image_bytes("JPEG", s), "path": None} for s in sizes],
                          type=image_type),
        "question": questions,
        "chosen": chosen,
        "rejected": rejected,
        "origin_dataset": ["synthetic"] * 3,
        "idx": pa.array([10, 11, 12], type=pa.int64()),
    })
    pq.write_table(table, os.path.join(out, "rlaif_v.parquet"))
    expected["rlaif_v.parquet"] = [
        {"question": q, "response_1": c, "response_2": r, "preferred": 1, "size": list(s)}
        for q, c, r, s in zip(questions, chosen, rejected, sizes)
    ]

    table = pa.table({
        "prompt": questions,
        "img": pa.array([image_bytes("PNG", s) for s in sizes], type=pa.binary()),
        "good": chosen,
        "bad": rejected,
    })
    pq.write_table(table, os.path.join(out, "renamed.parquet"))
    expected["renamed.parquet"] = expected["rlaif_v.parquet"]

    bad = [1, 3, 2]  # the second row's preference is neither 1 nor 2
    table = pa.table({
        "question": [r[0] for r in rows],
        "image": pa.array([{"bytes": image_bytes("PNG", s), "path": None} for s in sizes],
                          type=image_type),
        "response_1": [r[1] for r in rows],
        "response_2": [r[2] for r in rows],
        "overall_response": pa.array(bad, type=pa.int64()),
    })
    pq.write_table(table, os.path.join(out, "bad_row.parquet"))
    write_json(os.path.join(out, "expected.json"), expected)
    print("fixtures: parquet")


def make_image_case(root):
    from PIL import Image
    from safetensors.torch import save_file
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor

    out = os.path.join(root, "images")
    os.makedirs(out, exist_ok=True)
    # max_pixels small enough that the larger images are scaled down, min_pixels large enough
    # that the small ones are scaled up.
    proc = Qwen2VLImageProcessor(size={"shortest_edge": 56 * 56, "longest_edge": 28 * 28 * 64})
    proc.save_pretrained(out)
    rng = np.random.default_rng(11)
    # (width, height, mode): up-scaled, down-scaled, unchanged, odd aspect ratios, grayscale.
    shapes = [(50, 30, "RGB"), (500, 140, "RGB"), (224, 112, "RGB"), (97, 203, "RGB"),
              (57, 57, "L"), (640, 480, "RGB")]
    files, grids, tensors = [], [], {}
    for i, (w, h, mode) in enumerate(shapes):
        y, x = np.mgrid[0:h, 0:w]
        base = np.stack([(x * 255 // max(w - 1, 1)), (y * 255 // max(h - 1, 1)),
                         ((x + y) * 7) % 256], axis=-1).astype(np.int32)
        noise = rng.integers(-40, 41, size=base.shape)
        pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
        image = Image.fromarray(pixels, "RGB")
        if mode == "L":
            image = image.convert("L")
        name = f"image_{i}_{w}x{h}.png"
        image.save(os.path.join(out, name))
        loaded = Image.open(os.path.join(out, name))
        result = proc(images=[loaded], return_tensors="pt")
        tensors[f"pixel_values_{i}"] = result["pixel_values"].contiguous()
        files.append(name)
        grids.append(result["image_grid_thw"][0].tolist())
    batch = proc(images=[Image.open(os.path.join(out, f)) for f in files], return_tensors="pt")
    tensors["pixel_values_all"] = batch["pixel_values"].contiguous()
    save_file(tensors, os.path.join(out, "expected.safetensors"))
    write_json(os.path.join(out, "expected.json"), {
        "files": files, "image_grid_thw": grids,
        "batch_image_grid_thw": batch["image_grid_thw"].tolist(),
    })
    print(f"fixtures: images ({len(files)} images)")


def qwen2_vl_processor(root):
    from transformers import PreTrainedTokenizerFast, Qwen2VLProcessor
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(root, "tokenizer", "tokenizer.json"))
    tok.pad_token = "<|endoftext|>"
    return tok, Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor.from_pretrained(os.path.join(root, "images")),
        tokenizer=tok,
        video_processor=Qwen2VLVideoProcessor(),
    )


def tiny_qwen2_vl_config(tok, layers=2, depth=2):
    from transformers import Qwen2VLConfig

    return Qwen2VLConfig(
        text_config=dict(vocab_size=400, hidden_size=64, intermediate_size=128,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         initializer_range=0.08, eos_token_id=2, bos_token_id=1,
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                          "mrope_section": [2, 3, 3]}),
        vision_config=dict(depth=depth, embed_dim=32, hidden_size=64, num_heads=2, mlp_ratio=2,
                           spatial_merge_size=2, patch_size=14, temporal_patch_size=2,
                           initializer_range=0.08),
        image_token_id=tok.convert_tokens_to_ids("<|image_pad|>"),
        video_token_id=tok.convert_tokens_to_ids("<|video_pad|>"),
        vision_start_token_id=tok.convert_tokens_to_ids("<|vision_start|>"),
        vision_end_token_id=tok.convert_tokens_to_ids("<|vision_end|>"),
    )


def tiny_qwen2_5_vl_config(tok):
    from transformers import Qwen2_5_VLConfig

    base = tiny_qwen2_vl_config(tok).to_dict()
    return Qwen2_5_VLConfig(
        text_config=base["text_config"],
        # Windows of 2×2 merge units (56 px) with full attention in block 1 of 3.
        vision_config=dict(depth=3, hidden_size=32, out_hidden_size=64, intermediate_size=48,
                           num_heads=2, spatial_merge_size=2, patch_size=14, temporal_patch_size=2,
                           window_size=56, fullatt_block_indexes=[1], initializer_range=0.08),
        image_token_id=base["image_token_id"],
        video_token_id=base["video_token_id"],
        vision_start_token_id=base["vision_start_token_id"],
        vision_end_token_id=base["vision_end_token_id"],
    )


def make_qwen2_vl_case(root, name="qwen2_vl"):
    from PIL import Image
    from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2VLForConditionalGeneration

    tok, processor = qwen2_vl_processor(root)
    torch.manual_seed(21)
    if name == "qwen2_vl":
        cls, config = Qwen2VLForConditionalGeneration, tiny_qwen2_vl_config(tok)
    else:
        cls, config = Qwen2_5_VLForConditionalGeneration, tiny_qwen2_5_vl_config(tok)
    model = cls(config).eval()
    out_dir = os.path.join(root, name)
    os.makedirs(out_dir, exist_ok=True)
    model.save_pretrained(out_dir)
    # A complete checkpoint directory, as on the hub: processor settings and tokenizer too.
    processor.image_processor.save_pretrained(out_dir)
    shutil.copy(os.path.join(root, "tokenizer", "tokenizer.json"), out_dir)
    model = cls.from_pretrained(out_dir, attn_implementation="sdpa").to(DEVICE).eval()
    images_dir = os.path.join(root, "images")
    image = "<|vision_start|><|image_pad|><|vision_end|>"
    cases = [
        (f"<|im_start|>user\n{image}How many circles?<|im_end|>\n<|im_start|>assistant\n",
         ["image_1_500x140.png"]),
        (f"<|im_start|>user\n{image}left {image}right: same?<|im_end|>\n<|im_start|>assistant\n",
         ["image_0_50x30.png", "image_3_97x203.png"]),
    ]
    expected = []
    with torch.no_grad():
        for text, files in cases:
            pil = [Image.open(os.path.join(images_dir, f)) for f in files]
            inputs = processor(text=[text], images=pil, return_tensors="pt").to(DEVICE)
            logits = model(**inputs).logits[0].float().cpu()
            generated = model.generate(**inputs, max_new_tokens=MAX_NEW_TOKENS,
                                       min_new_tokens=MAX_NEW_TOKENS, do_sample=False,
                                       eos_token_id=None, pad_token_id=0)
            expected.append({
                "raw_ids": tok(text)["input_ids"],
                "files": files,
                "input_ids": inputs["input_ids"][0].cpu().tolist(),
                "logits": {"shape": list(logits.shape), "data": logits.flatten().tolist()},
                "greedy": generated[0, inputs["input_ids"].shape[1]:].cpu().tolist(),
            })
    write_json(os.path.join(out_dir, "expected.json"), {"cases": expected, "max_new_tokens": MAX_NEW_TOKENS})
    print(f"fixtures: {name}")


# `config.json` of Qwen2-VL-2B-Instruct and Qwen2.5-VL-3B-Instruct as published on the hub
# (transformers 4 layout: the text model's keys at the top level, `rope_scaling` with the legacy
# `type`, `torch_dtype`, `sliding_window` set with `use_sliding_window: false`, `in_chans`).
# Every key and value is kept except the sizes, which `hub_layout_config` takes from the tiny
# model; the dtype is float32 because the tiny weights are.
HUB_VL_CONFIGS = {
    "qwen2_vl": {
        "architectures": ["Qwen2VLForConditionalGeneration"], "attention_dropout": 0.0,
        "bos_token_id": 151643, "eos_token_id": 151645, "vision_start_token_id": 151652,
        "vision_end_token_id": 151653, "vision_token_id": 151654, "image_token_id": 151655,
        "video_token_id": 151656, "hidden_act": "silu", "hidden_size": 1536,
        "initializer_range": 0.02, "intermediate_size": 8960, "max_position_embeddings": 32768,
        "max_window_layers": 28, "model_type": "qwen2_vl", "num_attention_heads": 12,
        "num_hidden_layers": 28, "num_key_value_heads": 2, "rms_norm_eps": 1e-06,
        "rope_theta": 1000000.0, "sliding_window": 32768, "tie_word_embeddings": True,
        "torch_dtype": "bfloat16", "transformers_version": "4.41.2", "use_cache": True,
        "use_sliding_window": False,
        "vision_config": {"depth": 32, "embed_dim": 1280, "mlp_ratio": 4, "num_heads": 16,
                          "in_chans": 3, "hidden_size": 1536, "patch_size": 14,
                          "spatial_merge_size": 2, "spatial_patch_size": 14,
                          "temporal_patch_size": 2},
        "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
        "vocab_size": 151936,
    },
    "qwen2_5_vl": {
        "architectures": ["Qwen2_5_VLForConditionalGeneration"], "attention_dropout": 0.0,
        "bos_token_id": 151643, "eos_token_id": 151645, "vision_start_token_id": 151652,
        "vision_end_token_id": 151653, "vision_token_id": 151654, "image_token_id": 151655,
        "video_token_id": 151656, "hidden_act": "silu", "hidden_size": 2048,
        "initializer_range": 0.02, "intermediate_size": 11008, "max_position_embeddings": 128000,
        "max_window_layers": 70, "model_type": "qwen2_5_vl", "num_attention_heads": 16,
        "num_hidden_layers": 36, "num_key_value_heads": 2, "rms_norm_eps": 1e-06,
        "rope_theta": 1000000.0, "sliding_window": 32768, "tie_word_embeddings": True,
        "torch_dtype": "bfloat16", "transformers_version": "4.41.2", "use_cache": True,
        "use_sliding_window": False,
        "vision_config": {"depth": 32, "hidden_act": "silu", "hidden_size": 1280,
                          "intermediate_size": 3420, "num_heads": 16, "in_chans": 3,
                          "out_hidden_size": 2048, "patch_size": 14, "spatial_merge_size": 2,
                          "spatial_patch_size": 14, "window_size": 112,
                          "fullatt_block_indexes": [7, 15, 23, 31], "tokens_per_second": 2,
                          "temporal_patch_size": 2},
        "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
        "vocab_size": 151936,
    },
}


def hub_layout_config(name, tiny):
    """The hub's config for `name` with the tiny model's sizes, ids and numerics."""
    text, vision = tiny["text_config"], tiny["vision_config"]
    cfg = json.loads(json.dumps(HUB_VL_CONFIGS[name]))
    for key in ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                "num_attention_heads", "num_key_value_heads", "rms_norm_eps",
                "initializer_range", "bos_token_id", "eos_token_id", "max_position_embeddings"]:
        cfg[key] = text[key]
    cfg["max_window_layers"] = text["num_hidden_layers"]
    cfg["rope_theta"] = text["rope_parameters"]["rope_theta"]
    cfg["rope_scaling"]["mrope_section"] = text["rope_parameters"]["mrope_section"]
    cfg["tie_word_embeddings"] = tiny["tie_word_embeddings"]
    cfg["torch_dtype"] = "float32"
    for key in ["image_token_id", "video_token_id", "vision_start_token_id",
                "vision_end_token_id"]:
        cfg[key] = tiny[key]
    cfg["vision_token_id"] = tiny["image_token_id"] + 100
    for key in cfg["vision_config"]:
        if key in vision:
            cfg["vision_config"][key] = vision[key]
    return cfg


def make_hub_layout_cases(root, name):
    """`<name>_hub`: the tiny model's weights under the hub's transformers-4 config layout;
    `<name>_resaved`: that directory loaded and re-saved by this transformers (which keeps the
    legacy `type` next to `rope_type`). transformers must compute the base case's logits from
    both, so the two layouts mean the same model; grlhf's tests then load both."""
    from transformers import AutoModelForImageTextToText

    base = os.path.join(root, name)
    tiny = json.load(open(os.path.join(base, "config.json")))
    expected = json.load(open(os.path.join(base, "expected.json")))["cases"][0]
    hub = os.path.join(root, f"{name}_hub")
    os.makedirs(hub)
    for f in ["model.safetensors", "preprocessor_config.json", "tokenizer.json"]:
        shutil.copy(os.path.join(base, f), hub)
    write_json(os.path.join(hub, "config.json"), hub_layout_config(name, tiny))
    tok, processor = qwen2_vl_processor(root)
    from PIL import Image
    pil = [Image.open(os.path.join(root, "images", f)) for f in expected["files"]]
    text = tok.decode(expected["raw_ids"])
    resaved = os.path.join(root, f"{name}_resaved")
    for directory in [hub, resaved]:
        if directory == resaved:
            model.save_pretrained(resaved)
            for f in ["preprocessor_config.json", "tokenizer.json"]:
                shutil.copy(os.path.join(base, f), resaved)
        model = AutoModelForImageTextToText.from_pretrained(
            directory, attn_implementation="sdpa", dtype=torch.float32).to(DEVICE).eval()
        inputs = processor(text=[text], images=pil, return_tensors="pt").to(DEVICE)
        with torch.no_grad():
            logits = model(**inputs).logits[0].float().cpu().flatten()
        gap = (logits - torch.tensor(expected["logits"]["data"])).abs().max().item()
        assert gap <= 1e-5, f"{directory}: transformers reads it as another model (max |Δ| {gap})"
    rope = json.load(open(os.path.join(resaved, "config.json")))["text_config"]["rope_parameters"]
    print(f"fixtures: {name}_hub, {name}_resaved (rope_parameters {sorted(rope)})")


def make_text_hub_layout_cases(root, name, base_case="gqa_tied_f32"):
    """`<name>_hub`: a tiny text model's weights under the hub's config for `name`, sizes shrunk;
    `<name>_resaved`: that directory loaded and re-saved by this transformers (`dtype` for
    `torch_dtype`, `rope_parameters`). Both must give the base case's logits in transformers."""
    from transformers import AutoModelForCausalLM

    base = os.path.join(root, "qwen2", base_case)
    tiny = json.load(open(os.path.join(base, "config.json")))
    expected = json.load(open(os.path.join(base, "expected.json")))
    cfg = json.loads(json.dumps(HUB_TEXT_CONFIGS[name]))
    for key in ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                "num_attention_heads", "num_key_value_heads", "rms_norm_eps",
                "initializer_range", "max_position_embeddings", "tie_word_embeddings"]:
        cfg[key] = tiny[key]
    cfg["rope_theta"] = tiny["rope_parameters"]["rope_theta"]
    cfg["max_window_layers"] = tiny["num_hidden_layers"]
    cfg["bos_token_id"] = tiny["bos_token_id"]
    cfg["eos_token_id"] = [2, 1] if isinstance(cfg["eos_token_id"], list) else 2
    cfg["torch_dtype"] = "float32"
    hub = os.path.join(root, "qwen2", f"{name}_hub")
    resaved = os.path.join(root, "qwen2", f"{name}_resaved")
    os.makedirs(hub)
    shutil.copy(os.path.join(base, "model.safetensors"), hub)
    write_json(os.path.join(hub, "config.json"), cfg)
    prompt = expected["prompts"][0]
    want = torch.tensor(expected["logits"][0]["data"])
    for directory in [hub, resaved]:
        if directory == resaved:
            model.save_pretrained(resaved)
        model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32,
                                                     attn_implementation="sdpa").to(DEVICE).eval()
        with torch.no_grad():
            logits = model(torch.tensor([prompt], device=DEVICE)).logits[0].float().cpu().flatten()
        gap = (logits - want).abs().max().item()
        assert gap <= 1e-5, f"{directory}: transformers reads it as another model (max |Δ| {gap})"
        write_json(os.path.join(directory, "expected.json"), {
            "prompt": prompt, "logits": expected["logits"][0], "base": base_case})
    saved = json.load(open(os.path.join(resaved, "config.json")))
    print(f"fixtures: qwen2/{name}_hub, qwen2/{name}_resaved ({sorted(k for k in saved if 'dtype' in k or 'rope' in k)})")


def make_mrope_case(root):
    from PIL import Image
    from transformers import (PreTrainedTokenizerFast, Qwen2VLConfig,
                              Qwen2VLForConditionalGeneration, Qwen2VLProcessor)
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    images_dir = os.path.join(root, "images")
    tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(root, "tokenizer", "tokenizer.json"))
    tok.pad_token = "<|endoftext|>"
    processor = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor.from_pretrained(images_dir),
        tokenizer=tok,
        video_processor=Qwen2VLVideoProcessor(),
    )
    image = "<|vision_start|><|image_pad|><|vision_end|>"
    rows = [
        (f"<|im_start|>user\n{image}How many circles?<|im_end|>\n", ["image_1_500x140.png"]),
        (f"<|im_start|>user\n{image}left {image}right: same?<|im_end|>\n",
         ["image_0_50x30.png", "image_3_97x203.png"]),
        ("<|im_start|>user\nNo image here.<|im_end|>\n", []),
    ]
    texts = [t for t, _ in rows]
    files = [f for _, fs in rows for f in fs]
    pil = [Image.open(os.path.join(images_dir, f)) for f in files]
    out = processor(text=texts, images=pil, padding=True, padding_side="left", return_tensors="pt")
    cfg = Qwen2VLConfig(
        text_config=dict(vocab_size=400, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=2,
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                          "mrope_section": [2, 3, 3]}),
        vision_config=dict(depth=1, embed_dim=32, hidden_size=64, num_heads=2, mlp_ratio=2,
                           spatial_merge_size=2, patch_size=14, temporal_patch_size=2),
        image_token_id=tok.convert_tokens_to_ids("<|image_pad|>"),
        vision_start_token_id=tok.convert_tokens_to_ids("<|vision_start|>"),
    )
    model = Qwen2VLForConditionalGeneration(cfg)
    positions, deltas = model.model.get_rope_index(
        out["input_ids"], out["mm_token_type_ids"], out["image_grid_thw"],
        attention_mask=out["attention_mask"],
    )
    outdir = os.path.join(root, "mrope")
    os.makedirs(outdir, exist_ok=True)
    write_json(os.path.join(outdir, "expected.json"), {
        "image_token_id": cfg.image_token_id,
        "spatial_merge_size": 2,
        "raw_ids": [tok(t)["input_ids"] for t in texts],
        "images_per_row": [fs for _, fs in rows],
        "input_ids": out["input_ids"].tolist(),
        "attention_mask": out["attention_mask"].tolist(),
        "image_grid_thw": out["image_grid_thw"].tolist(),
        "position_ids": positions.tolist(),
        "deltas": deltas.flatten().tolist(),
    })
    print("fixtures: mrope")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join("target", "fixtures"))
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    parser.add_argument("--device", default="cpu", help="where transformers computes (cpu, cuda)")
    args = parser.parse_args()
    global DEVICE
    DEVICE = torch.device(args.device)
    stamp_path = os.path.join(args.out, "STAMP")
    stamp = stamp_text() + f"device={args.device}\n"
    if not args.force and os.path.exists(stamp_path) and open(stamp_path).read() == stamp:
        return
    if os.path.exists(args.out):
        shutil.rmtree(args.out)
    os.makedirs(args.out)
    torch.set_num_threads(1)
    for name, (kv, tied, theta, dtype, sharded) in CASES.items():
        make_lm_case(args.out, name, kv, tied, theta, dtype, sharded)
    make_reward_case(args.out)
    make_repetition_penalty_case(args.out)
    make_tokenizer_case(args.out)
    make_chat_template_cases(args.out)
    make_image_case(args.out)
    make_parquet_cases(args.out)
    make_mrope_case(args.out)
    make_qwen2_vl_case(args.out)
    make_qwen2_vl_case(args.out, "qwen2_5_vl")
    make_hub_layout_cases(args.out, "qwen2_vl")
    make_hub_layout_cases(args.out, "qwen2_5_vl")
    make_text_hub_layout_cases(args.out, "qwen2_0_5b")
    make_text_hub_layout_cases(args.out, "qwen2_5_0_5b")
    with open(stamp_path, "w") as f:
        f.write(stamp)


if __name__ == "__main__":
    main()
