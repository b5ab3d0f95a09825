"""Decoding speed: tinyllm with and without its KV cache, against Hugging Face transformers.

    python benchmarks/sample_speed.py            # prints one JSON object

Hugging Face's `GPT2LMHeadModel` gets *the same weights* (tinyllm.hf.to_hf_gpt2); the script first
checks that both models give the same logits, so the comparison is like for like. All runs sample
(temperature 1, no top-k) from a 1-token prompt; each figure is the median of `--repeats` runs
after a warm-up, with the contenders alternated so that machine noise hits them alike.

tinyllm runs twice: eager, and with its decode step through torch.compile (`compile=True`); the
warm-up pays the compile, whose time is reported apart. Hugging Face runs its default generate
(eager, dynamic cache), as the issue asks; the no-cache reference is tinyllm's eager path.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from tinyllm import GPT, GPTConfig
from tinyllm.hf import to_hf_gpt2
from tinyllm.sampling import SamplingParams, generate

CONFIG = GPTConfig(vocab_size=65, block_size=256, n_layer=3, n_head=4, n_embd=128)


def time_tinyllm(model, batch, new_tokens, use_cache, compile=False):
    idx = torch.zeros(batch, 1, dtype=torch.long)
    gen = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    out = generate(model, idx, new_tokens, SamplingParams(), use_cache=use_cache, generator=gen, compile=compile)
    dt = time.perf_counter() - t0
    assert out.shape == (batch, 1 + new_tokens)
    return batch * new_tokens / dt


def time_hf(hf, batch, new_tokens):
    idx = torch.zeros(batch, 1, dtype=torch.long)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = hf.generate(
            idx,
            attention_mask=torch.ones_like(idx),
            do_sample=True,
            top_k=0,
            top_p=1.0,
            temperature=1.0,
            max_new_tokens=new_tokens,
            use_cache=True,
        )
    dt = time.perf_counter() - t0
    assert out.shape == (batch, 1 + new_tokens)
    return batch * new_tokens / dt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import transformers

    torch.manual_seed(0)
    model = GPT(CONFIG).eval()
    hf = to_hf_gpt2(model)
    hf.generation_config.eos_token_id = None  # no end token: always exactly new_tokens, like ours
    hf.generation_config.pad_token_id = 0
    x = torch.randint(CONFIG.vocab_size, (2, CONFIG.block_size))
    with torch.no_grad():
        max_diff = (model(x) - hf(x).logits).abs().max().item()
    assert max_diff < 1e-4, f"the models disagree (max logit difference {max_diff})"

    contenders = {
        "tinyllm_cache_b1_255": lambda: time_tinyllm(model, 1, 255, True),
        "tinyllm_compiled_b1_255": lambda: time_tinyllm(model, 1, 255, True, compile=True),
        "hf_cache_b1_255": lambda: time_hf(hf, 1, 255),
        "tinyllm_cache_b16_255": lambda: time_tinyllm(model, 16, 255, True),
        "tinyllm_compiled_b16_255": lambda: time_tinyllm(model, 16, 255, True, compile=True),
        "hf_cache_b16_255": lambda: time_hf(hf, 16, 255),
        "tinyllm_cache_b1_500": lambda: time_tinyllm(model, 1, 500, True),
        "tinyllm_compiled_b1_500": lambda: time_tinyllm(model, 1, 500, True, compile=True),
        "tinyllm_nocache_b1_500": lambda: time_tinyllm(model, 1, 500, False),
    }
    compile_s = {}
    for name, run in contenders.items():  # warm-up (and the compiles)
        t0 = time.perf_counter()
        run()
        if "compiled" in name:
            compile_s[name] = round(time.perf_counter() - t0, 1)
    samples = {name: [] for name in contenders}
    for _ in range(args.repeats):
        for name, run in contenders.items():
            samples[name].append(run())
    tps = {name: statistics.median(values) for name, values in samples.items()}

    def ratio(a: str, b: str) -> float:
        return round(tps[a] / tps[b], 2)

    print(
        json.dumps(
            {
                "benchmark": "sample_speed",
                "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
                "torch": torch.__version__,
                "transformers": transformers.__version__,
                "config": CONFIG.to_dict(),
                "max_logit_difference_vs_hf": max_diff,
                "repeats": args.repeats,
                "tokens_per_s": {k: round(v, 1) for k, v in tps.items()},
                "first_call_s_with_compile": compile_s,
                "ratios": {
                    "cache_vs_hf_b1": ratio("tinyllm_cache_b1_255", "hf_cache_b1_255"),
                    "cache_vs_hf_b16": ratio("tinyllm_cache_b16_255", "hf_cache_b16_255"),
                    "cache_vs_nocache_500": ratio("tinyllm_cache_b1_500", "tinyllm_nocache_b1_500"),
                    "compiled_vs_hf_b1": ratio("tinyllm_compiled_b1_255", "hf_cache_b1_255"),
                    "compiled_vs_hf_b16": ratio("tinyllm_compiled_b16_255", "hf_cache_b16_255"),
                    "compiled_vs_nocache_500": ratio("tinyllm_compiled_b1_500", "tinyllm_nocache_b1_500"),
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
