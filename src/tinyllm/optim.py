"""The optimizers: AdamW, or Muon for the hidden matrices with AdamW for the rest.

**AdamW** (the default): weight decay only on matrices (2-D weights: linear layers and
embeddings); biases and LayerNorm gains are not decayed -- shrinking them towards zero only hurts.

**Muon** (`--optimizer muon`; Jordan et al. 2024): for the 2-D weight matrices inside the blocks
(attention and MLP), the momentum update is orthogonalised by a few Newton-Schulz iterations before
it is applied, so every direction of the matrix moves by about the same amount instead of a few
dominant ones. It is defined for matrices only, and meant for the hidden ones: the token and
position embeddings, the output layer (tied to the token embedding, so the same tensor) and every
1-D parameter stay with AdamW. Each step is scaled to AdamW's size (0.2 x sqrt(the larger side),
Moonshot's recipe), so one `--lr` and one schedule drive both. GPT-2's fused query-key-value
matrix is three matrices to Muon, each orthogonalised on its own (`fused_pieces`).

`Muon` below is PyTorch's `torch.optim.Muon` update (the same momentum and Nesterov look-ahead,
`adjust_lr_fn="match_rms_adamw"`) with two changes from later work, chosen by benchmark (docs/log.md,
"Muon's polynomials and rows"): each of the five Newton-Schulz iterations has a polynomial of its
own (`POLAR_EXPRESS`, Amsel et al. 2025) instead of one quintic five times, and every row of the
orthogonalised update is rescaled by a running average of its own size (`normalize_rows`, NorMuon,
Li et al. 2025). `Muon(polynomials=QUINTIC, row_beta=None)` is PyTorch's update (tested). Also:
fused matrices in their parts and a rate of its own (`--muon-lr-scale`). The Newton-Schulz products
run in float32 (`ns_dtype`); PyTorch's run in bfloat16, which `speed/muon_precision.py` chooses
where the CPU multiplies bfloat16 natively.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import torch
import torch.nn as nn

from .config import TrainConfig

NEWTON_SCHULZ = (3.4445, -4.7750, 2.0315)  # the quintic's coefficients (Jordan et al.; PyTorch's defaults)


@dataclass(frozen=True)
class Polynomials:
    """The odd polynomials x <- a x + b (x x^T) x + c (x x^T)^2 x of the Newton-Schulz iterations: one
    (a, b, c) per iteration (the last repeats if there are more iterations), and the margin by which
    the input is shrunk first (the polynomials' safety factor: singular values must start <= 1)."""

    coefficients: tuple[tuple[float, float, float], ...]
    margin: float = 1.0


QUINTIC = Polynomials((NEWTON_SCHULZ,))  # one polynomial, five times: Jordan's Muon, PyTorch's
# Amsel et al. 2025, "The Polar Express": each iteration's polynomial the best (minimax) for where the
# singular values are by then, so they reach ~1 faster (computed for 5 iterations, safety factor
# 2e-2, cushion 2; the coefficients nanochat and modded-nanogpt use)
POLAR_EXPRESS = Polynomials(
    (
        (8.156554524902461, -22.48329292557795, 15.878769915207462),
        (4.042929935166739, -2.808917465908714, 0.5000178451051316),
        (3.8916678022926607, -2.772484153217685, 0.5060648178503393),
        (3.285753657755655, -2.3681294933425376, 0.46449024233003106),
        (2.3465413258596377, -1.7097828382687081, 0.42323551169305323),
    ),
    margin=1.02,
)


def orthogonalize(
    g: torch.Tensor,
    steps: int = 5,
    eps: float = 1e-7,
    dtype: torch.dtype = torch.float32,
    polynomials: Polynomials = POLAR_EXPRESS,
) -> torch.Tensor:
    """About U V^T for g = U S V^T: the nearest matrix whose singular values are all ~1, by `steps`
    Newton-Schulz iterations of x <- a x + (b x x^T + c (x x^T)^2) x on the normalised g.

    `g` is one matrix or a stack of matrices of one shape (k, m, n), orthogonalised each on its own
    but in one batched product per term: on a CPU, these small products cost about as much as
    the model's own forward and backward, and batching them saves a quarter to a third. `dtype`:
    the precision of the products (the result comes back in g's own).
    """
    x = g.to(dtype) if g.dim() == 3 else g.to(dtype).unsqueeze(0)
    transposed = x.shape[-2] > x.shape[-1]  # iterate on the wide side: x x^T is the smaller square
    if transposed:
        x = x.mT
    # singular values <= 1, where the polynomials converge
    x = x / (x.norm(dim=(-2, -1), keepdim=True) * polynomials.margin).clamp(min=eps)
    for i in range(steps):
        a, b, c = polynomials.coefficients[min(i, len(polynomials.coefficients) - 1)]
        gram = x @ x.mT
        poly = torch.baddbmm(gram, gram, gram, beta=b, alpha=c)  # b gram + c gram^2, in one call
        x = torch.baddbmm(x, poly, x, beta=a)  # a x + poly x
    x = x.mT if transposed else x
    return (x if g.dim() == 3 else x.squeeze(0)).to(g.dtype)


def row_shape(rows: int, cols: int) -> tuple[int, int]:
    """The shape of one matrix's row sizes in `normalize_rows`: one per row of the longer side."""
    return (rows, 1) if rows >= cols else (1, cols)


def normalize_rows(updates: torch.Tensor, averages: torch.Tensor, beta: float) -> torch.Tensor:
    """NorMuon's step (Li et al. 2025) on a stack of orthogonalised updates (k, m, n): each row along
    the longer side divided by the root of a running average of its mean square (`averages`, (k, m,
    1) or (k, 1, n), updated in place), then the whole matrix scaled back to its own norm. An
    orthogonal update moves every direction equally, but its rows (one per neuron) can still differ
    in size from step to step; this evens them out over time, like Adam's second moment does for
    single weights, and leaves Muon's step size as it was."""
    dim = -1 if updates.shape[-2] >= updates.shape[-1] else -2  # average over the shorter side
    averages.lerp_(updates.square().mean(dim=dim, keepdim=True), 1 - beta)
    scaled = updates * averages.clamp(min=1e-10).rsqrt()
    norms = updates.norm(dim=(-2, -1), keepdim=True) / scaled.norm(dim=(-2, -1), keepdim=True).clamp(min=1e-10)
    return scaled * norms


class Muon(torch.optim.Optimizer):
    """Momentum, orthogonalised: for 2-D parameters only (see the module docstring)."""

    def __init__(
        self,
        params,
        lr: float,
        weight_decay: float = 0.1,
        momentum: float = 0.95,
        ns_steps: int = 5,
        ns_dtype: torch.dtype = torch.float32,
        pieces: dict[nn.Parameter, int] | None = None,
        lr_scale: float = 1.0,
        polynomials: Polynomials = POLAR_EXPRESS,
        row_beta: float | None = 0.95,
    ):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, momentum=momentum, ns_steps=ns_steps))
        self.ns_dtype = ns_dtype  # the Newton-Schulz products' precision (not saved: speed/ chooses it again)
        self.polynomials = polynomials
        self.row_beta = row_beta  # NorMuon's running average of row sizes (None: not used)
        # parameters that are several matrices stacked row-wise, and how many (GPT-2's fused query, key and
        # value matrix is 3): each part is orthogonalised and scaled as a matrix of its own
        self.pieces = pieces or {}
        self.lr_scale = lr_scale  # Muon's rate as a multiple of the group's (the schedule's) rate

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            lr, momentum = group["lr"] * self.lr_scale, group["momentum"]
            by_shape: dict[torch.Size, list[tuple[torch.Tensor, ...]]] = defaultdict(list)
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                n = self.pieces.get(p, 1)  # a fused matrix in its parts (views: updating them updates p)
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                if self.row_beta is not None and "row_sizes" not in state:
                    state["row_sizes"] = p.new_zeros(n, *row_shape(p.shape[0] // n, p.shape[1]))
                buffer = state["momentum_buffer"]
                buffer.lerp_(p.grad, 1 - momentum)  # 1) the running average of gradients
                update = p.grad.lerp(buffer, momentum)  # 2) Nesterov: look ahead along it
                rows = state["row_sizes"] if self.row_beta is not None else [None] * n
                for part, part_update, part_rows in zip(p.chunk(n), update.chunk(n), rows, strict=True):
                    by_shape[part.shape].append((part, part_update, part_rows))  # 3) by shape
            for triples in by_shape.values():  # 4) every direction the same size: one stack per shape
                parts, updates, rows = zip(*triples, strict=True)
                updates = orthogonalize(
                    torch.stack(updates), group["ns_steps"], dtype=self.ns_dtype, polynomials=self.polynomials
                )
                if self.row_beta is not None:  # 5) every row of the same size, on average over steps
                    averages = torch.stack(rows)
                    updates = normalize_rows(updates, averages, self.row_beta)
                    for kept, new in zip(rows, averages, strict=True):
                        kept.copy_(new)
                for p, update in zip(parts, updates, strict=True):
                    p.mul_(1 - lr * group["weight_decay"])  # 6) decoupled weight decay, as AdamW's
                    p.add_(update, alpha=-lr * 0.2 * math.sqrt(max(p.shape)))  # 7) a step of AdamW's size
        return None


def make_optimizer(model: nn.Module, config: TrainConfig, device: torch.device, params=None) -> torch.optim.AdamW:
    """AdamW with two parameter groups: matrices are decayed, vectors (biases, LayerNorm) are not."""
    params = [p for p in (model.parameters() if params is None else params) if p.requires_grad]  # tied: once
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    # the fused kernel updates every parameter in one go; it exists for CPU and CUDA tensors
    fused = device.type in ("cpu", "cuda")
    return torch.optim.AdamW(groups, lr=config.lr, betas=(config.beta1, config.beta2), fused=fused)


def muon_params(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(the hidden 2-D matrices, for Muon; everything else, for AdamW). A tied tensor appears once."""
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    hidden, rest = [], []
    for p in model.parameters():  # parameters() yields a shared (tied) tensor only once
        if not p.requires_grad:
            continue
        (hidden if p.dim() == 2 and id(p) not in embeddings else rest).append(p)
    return hidden, rest


def fused_pieces(model: nn.Module) -> dict[nn.Parameter, int]:
    """GPT-2's `c_attn` computes queries, keys and values with one matrix, three stacked: Muon treats
    them as the three matrices they are. Orthogonalised as one stack, the three share one budget of
    directions, so the part with the largest gradient takes most of the step; each on its own, every
    part gets a full step of its own size. It learns more per step (docs/log.md: after 1,500 steps, 1.641
    and 1.635 instead of 1.648 and 1.657; modded-nanogpt splits them too)."""
    return {m.weight: 3 for name, m in model.named_modules() if name.endswith("c_attn") and isinstance(m, nn.Linear)}


def make_optimizers(model: nn.Module, config: TrainConfig, device: torch.device) -> list[torch.optim.Optimizer]:
    """The optimizers `config.optimizer` asks for: [AdamW], or [AdamW for the rest, Muon for the hidden matrices]."""
    if config.optimizer == "adamw":
        return [make_optimizer(model, config, device)]
    hidden, rest = muon_params(model)
    if not hidden:  # no hidden matrix (a model of embeddings and vectors only): nothing for Muon to do
        return [make_optimizer(model, config, device)]
    muon = Muon(
        hidden,
        lr=config.lr,
        weight_decay=config.weight_decay,
        pieces=fused_pieces(model),
        lr_scale=config.muon_lr_scale,
    )
    return [make_optimizer(model, config, device, params=rest), muon]
