"""Training speed: tinyllm against Hugging Face transformers, on the same model, batch and optimizer.

    python benchmarks/train_speed.py                       # CPU: both configs + time-to-quality
    python benchmarks/train_speed.py --device cuda --dtype bfloat16 --compile --configs gpt2-small

Prints one JSON object. For each config: training tokens/s (forward + backward + AdamW step, after
warm-up, median of several windows, tinyllm and Hugging Face windows alternated), the achieved
FLOP/s as a fraction of this machine's own float32 (or bf16) matmul peak measured here, and peak
memory. `GPT2LMHeadModel` gets the same weights (tinyllm.hf) and the same fused AdamW with the same
parameter groups; both compute the same cross-entropy on the same batches.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from tinyllm import GPT, GPTConfig, speed
from tinyllm.config import TrainConfig
from tinyllm.speed.onednn import onednn_available
from tinyllm.training import make_optimizer

sys.path.insert(0, str(Path(__file__).parent))
from common import cpu_name, run_main, run_quietly  # noqa: E402

CONFIGS = {
    # nanoGPT's well-known CPU config ("baby GPT")
    "baby": dict(model=dict(n_layer=4, n_head=4, n_embd=128, block_size=64, vocab_size=65), batch=12),
    # tinyllm's Shakespeare default
    "shakespeare": dict(model=dict(n_layer=3, n_head=4, n_embd=96, block_size=256, vocab_size=65), batch=8),
    # for a GPU: GPT-2 small
    "gpt2-small": dict(model=dict(n_layer=12, n_head=12, n_embd=768, block_size=1024, vocab_size=50304), batch=16),
}


# Datasheet dense bf16/fp16 tensor-core peaks (no sparsity), for MFU the way papers report it
DATASHEET_PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "RTX 4090": 165e12}


def datasheet_peak(device_name: str) -> float | None:
    return next((v for k, v in DATASHEET_PEAK_FLOPS.items() if k in device_name), None)


def matmul_peak_flops(device: torch.device, dtype: torch.dtype, n: int = 1024, repeats: int = 20) -> float:
    """This machine's dense matmul throughput (FLOP/s): the ceiling for any model's training.

    On the CPU, the faster of PyTorch's default float32 path (MKL) and oneDNN, which tinyllm uses
    where it is faster (see tinyllm/speed/onednn.py): the ceiling is the best this machine can do.
    """
    if device.type == "cuda":
        n = 8192
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    products = {"default": lambda: a @ b}
    if device.type == "cpu" and dtype == torch.float32 and onednn_available():
        products["onednn"] = lambda: torch.ops.mkldnn._linear_pointwise(a, b, None, "none", [], "")
    best = 0.0
    for product in products.values():
        times = []
        for _ in range(repeats):
            sync(device)
            t0 = time.perf_counter()
            product()
            sync(device)
            times.append(time.perf_counter() - t0)
        best = max(best, 2 * n**3 / statistics.median(times[2:]))
    return best


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def flops_per_token(cfg: GPTConfig) -> float:
    """6 x parameters (forward + backward) plus attention's T-dependent part (PaLM appendix B)."""
    params = 12 * cfg.n_layer * cfg.n_embd**2 + cfg.vocab_size * cfg.n_embd  # blocks + (tied) output layer
    return 6 * params + 12 * cfg.n_layer * cfg.n_embd * cfg.block_size


def make_step(name: str, cfg: GPTConfig, batch: int, device, dtype, compile_model: bool):
    torch.manual_seed(0)
    gpt = GPT(cfg).to(device)
    if name == "hf":
        from tinyllm.hf import to_hf_gpt2

        model = to_hf_gpt2(gpt).to(device).train()
        forward = lambda x: model(x).logits  # noqa: E731
    else:
        model = gpt.train()
        forward = model
    optimizer = make_optimizer(model, TrainConfig(), device)
    if name != "hf":  # what tinyllm's runtime does when it places a model: speed/ (GELU, oneDNN, malloc)
        precision = str(dtype).removeprefix("torch.")
        speed.apply(model, [optimizer], device, dtype=precision, compile=compile_model, rows=batch * cfg.block_size)
    if compile_model:
        forward = torch.compile(forward)
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)

    def step(x, y):
        with autocast:
            logits = forward(x)
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def measure(cfg_name: str, batch: int, device, dtype, compile_model: bool, windows: int, steps: int) -> dict:
    spec = CONFIGS[cfg_name]
    cfg = GPTConfig(**spec["model"])
    B, T = batch, cfg.block_size
    x = torch.randint(cfg.vocab_size, (B, T), device=device)
    y = torch.randint(cfg.vocab_size, (B, T), device=device)
    steps_fn = {name: make_step(name, cfg, B, device, dtype, compile_model) for name in ("tinyllm", "hf")}
    for fn in steps_fn.values():  # warm-up (and compilation)
        for _ in range(3 if not compile_model else 5):
            fn(x, y)
    rates = {name: [] for name in steps_fn}
    for _ in range(windows):
        for name, fn in steps_fn.items():  # alternate, so noise hits both alike
            sync(device)
            t0 = time.perf_counter()
            for _ in range(steps):
                fn(x, y)
            sync(device)
            rates[name].append(B * T * steps / (time.perf_counter() - t0))
    return {name: statistics.median(r) for name, r in rates.items()}, flops_per_token(cfg)


def resident_mb(field: str = "VmRSS") -> float:
    """This process's resident memory from /proc (Linux); ru_maxrss elsewhere.

    (ru_maxrss is no good in a child process on Linux: it carries over the parent's peak.)
    """
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) / 1024 for line in f if line.startswith(field + ":"))
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 * (1024 if sys.platform == "darwin" else 1))


def peak_resident_mb() -> float:
    return resident_mb("VmHWM")


def peak_memory_mb(cfg_name: str, contender: str, args) -> float:
    """Peak memory of a few training steps, in a fresh process so contenders don't mix.

    On CUDA: the allocator's peak (weights, gradients, optimizer state, activations). On the CPU:
    the peak resident memory of the process minus what it held before building the model (the
    Python/PyTorch runtime), i.e. what the model, its optimizer and its activations took.
    """
    cmd = [
        sys.executable,
        __file__,
        "--memory-probe",
        cfg_name,
        contender,
        "--device",
        args.device,
        "--dtype",
        args.dtype,
        "--batch",
        str(batch_size(cfg_name, args)),
    ] + (["--compile"] if args.compile else [])
    out = run_quietly(cmd)
    return float(out.strip().splitlines()[-1])


def batch_size(cfg_name: str, args) -> int:
    return args.batch or CONFIGS[cfg_name]["batch"]


QUALITY_RECIPES = {  # the baby shape's time-to-quality recipes: (optimizer, schedule, peak learning rate, batch[, muon dtype])
    "adamw-cosine": ("adamw", "cosine", 4e-3, 12),  # nanoGPT's kind of recipe, tinyllm's default until issue 15
    "muon-wsd": ("muon", "wsd", 4e-3, 12),  # the shakespeare task's default now
    "muon-wsd-lr8e-3": ("muon", "wsd", 8e-3, 12),
    # Muon's Newton-Schulz products cost the same at any batch: a bigger batch spreads them over more tokens
    "muon-wsd-batch24": ("muon", "wsd", 4e-3, 24),
    "muon-wsd-batch24-lr6e-3": ("muon", "wsd", 6e-3, 24),
    "muon-wsd-batch24-lr8e-3": ("muon", "wsd", 8e-3, 24),
    "muon-wsd-batch32-lr8e-3": ("muon", "wsd", 8e-3, 32),
    # the same with Muon's Newton-Schulz in float32 where `auto` picks bfloat16 (CPUs with bfloat16 instructions)
    "muon-wsd-batch24-lr6e-3-float32": ("muon", "wsd", 6e-3, 24, "float32"),
}


def time_to_quality(
    target: float,
    max_time: float,
    recipe: str,
    data: str | None = None,
    max_iters: int | None = None,
    eval_interval: int = 50,
) -> dict:
    """Baby config on cased tiny Shakespeare: wall time until the test loss reaches `target`.

    The schedule is fitted to `max_time`, or to `max_iters` steps when given (then the evaluations,
    however frequent, do not move the schedule); the run stops at the first evaluation, every
    `eval_interval` steps, at or below `target`.
    """
    from tinyllm.tasks import get_task
    from tinyllm.training import Trainer

    optimizer, schedule, lr, batch, *muon_dtype = QUALITY_RECIPES[recipe]
    task = get_task("shakespeare")(lowercase=False)
    task.prepare(data)  # a local copy, else TINYLLM_DATA_DIR or the download cache
    cfg = GPTConfig(n_layer=4, n_head=4, n_embd=128, block_size=64, vocab_size=task.tokenizer.vocab_size)
    train_cfg = TrainConfig(
        batch_size=batch,
        lr=lr,
        min_lr=lr / 10,
        warmup_iters=50,
        schedule=schedule,
        optimizer=optimizer,
        max_iters=max_iters,
        max_time=None if max_iters else max_time,
        eval_interval=eval_interval,
        eval_iters=50,
        device="cpu",
        seed=1337,
    )
    torch.manual_seed(train_cfg.seed)
    model = task.build_model(cfg)
    from tinyllm.runtime import Runtime

    runtime = Runtime(train_cfg, speed_settings=speed.SpeedSettings(muon_dtype=muon_dtype[0] if muon_dtype else "auto"))
    trainer = Trainer(model, lambda split, g: task.get_batch(split, batch, 64, g), train_cfg, runtime=runtime)
    reached, evaluating, best = {}, {"seconds": 0.0}, {"test_loss": float("inf")}

    def check(trainer, record):
        best["test_loss"] = min(best["test_loss"], round(record["test_loss"], 4))
        if record["test_loss"] <= target and not reached:
            reached.update(
                iter=record["iter"],
                elapsed_s=round(record["elapsed_s"], 1),  # wall clock, the evaluations before it included
                training_s=round(record["elapsed_s"] - evaluating["seconds"], 1),  # the steps alone
                test_loss=round(record["test_loss"], 4),
            )
            trainer.interrupted = True
        evaluating["seconds"] += trainer.elapsed - record["elapsed_s"]  # this evaluation's time

    trainer.add_callback("eval", check)
    trainer.run(progress_bar=False)
    budget = f"{max_iters} steps" if max_iters else f"{max_time:.0f}s"
    return {
        "recipe": recipe,
        "target_test_loss": target,
        "reached": bool(reached),
        **reached,
        "best_test_loss": best["test_loss"],  # of the evaluations made (the run stops at the target)
        "schedule": f"lr {lr:g} {schedule} over {budget}, batch {batch}, {optimizer}, evaluated every {eval_interval} steps",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="training tokens/s: tinyllm vs Hugging Face")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    parser.add_argument("--compile", action="store_true")
    parser.add_argument(
        "--configs",
        nargs="*",
        default=["baby", "shakespeare"],
        choices=list(CONFIGS),
        help="none: time-to-quality only",
    )
    parser.add_argument("--batch", type=int, help="override the config's batch size")
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10, help="steps per timed window")
    parser.add_argument("--quality", type=float, default=1.90, help="time-to-quality target (0 to skip)")
    parser.add_argument("--quality-max-time", type=float, default=90.0)
    parser.add_argument(
        "--quality-max-iters", type=int, help="fit the schedule to this many steps instead of --quality-max-time"
    )
    parser.add_argument("--quality-eval-interval", type=int, default=50, help="steps between evaluations")
    parser.add_argument("--quality-recipes", nargs="+", default=list(QUALITY_RECIPES), choices=list(QUALITY_RECIPES))
    parser.add_argument("--data", help="tiny Shakespeare input.txt for the time-to-quality run (no download)")
    parser.add_argument("--memory-probe", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if (args.quality_max_iters is not None and args.quality_max_iters < 1) or args.quality_eval_interval < 1:
        parser.error("--quality-max-iters and --quality-eval-interval take a positive number of steps")
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)

    if args.memory_probe:
        cfg_name, contender = args.memory_probe
        spec = CONFIGS[cfg_name]
        cfg = GPTConfig(**spec["model"])
        import transformers  # noqa: F401  (loaded before the baseline: its import is not the model's memory)

        runtime_mb = resident_mb()
        step = make_step(contender, cfg, batch_size(cfg_name, args), device, dtype, args.compile)
        x = torch.randint(cfg.vocab_size, (batch_size(cfg_name, args), cfg.block_size), device=device)
        for _ in range(3):
            step(x, x)
        if device.type == "cuda":
            print(torch.cuda.max_memory_allocated() / 2**20)
        else:
            print(peak_resident_mb() - runtime_mb)
        return

    import transformers

    peak = matmul_peak_flops(device, dtype if dtype != torch.float16 or device.type == "cuda" else torch.float32)
    result = {
        "benchmark": "train_speed",
        "cpu": cpu_name(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads"
        + (f", {torch.cuda.get_device_name()}" if device.type == "cuda" else ""),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "device": args.device,
        "dtype": args.dtype,
        "compile": args.compile,
        "matmul_peak_gflops": round(peak / 1e9, 1),
        "configs": {},
    }
    sheet = datasheet_peak(torch.cuda.get_device_name()) if device.type == "cuda" else None
    if sheet:
        result["datasheet_peak_gflops"] = round(sheet / 1e9)
    for name in args.configs:
        B = batch_size(name, args)
        tps, fpt = measure(name, B, device, dtype, args.compile, args.windows, args.steps)
        entry = {
            "batch": B,
            "tokens_per_s": {k: round(v) for k, v in tps.items()},
            "speedup_vs_hf": round(tps["tinyllm"] / tps["hf"], 2),
            "flops_per_token": round(fpt),
            "mfu": {k: round(v * fpt / peak, 3) for k, v in tps.items()},  # vs the matmul measured here
        }
        if sheet:
            entry["mfu_vs_datasheet"] = {k: round(v * fpt / sheet, 3) for k, v in tps.items()}
        key = "peak_cuda_memory_mb" if device.type == "cuda" else "peak_rss_over_runtime_mb"
        entry[key] = {c: round(peak_memory_mb(name, c, args)) for c in ("tinyllm", "hf")}
        result["configs"][name] = entry
    if args.quality and device.type == "cpu":
        result["time_to_quality"] = [
            time_to_quality(
                args.quality,
                args.quality_max_time,
                recipe,
                args.data,
                args.quality_max_iters,
                args.quality_eval_interval,
            )
            for recipe in args.quality_recipes
        ]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    run_main(main)
