"""The optimizers: AdamW, or Muon for the hidden matrices with AdamW for the rest.

**AdamW** (the default): weight decay only on matrices (2-D weights: linear layers and
embeddings); biases and LayerNorm gains are not decayed -- shrinking them towards zero only hurts.

**Muon** (`--optimizer muon`; Jordan et al. 2024, PyTorch's `torch.optim.Muon`): for the 2-D weight
matrices inside the blocks (attention and MLP), the momentum update is orthogonalised by a few
Newton-Schulz iterations before it is applied, so every direction of the matrix moves by about the
same amount instead of a few dominant ones. It is defined for matrices only, and meant for the
hidden ones: the token and position embeddings, the output layer (tied to the token embedding, so
the same tensor) and every 1-D parameter stay with AdamW. `adjust_lr_fn="match_rms_adamw"` scales
Muon's step to AdamW's size (Moonshot's recipe), so one `--lr` and one schedule drive both.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .config import TrainConfig
from .errors import ConfigError


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


def make_optimizers(model: nn.Module, config: TrainConfig, device: torch.device) -> list[torch.optim.Optimizer]:
    """The optimizers `config.optimizer` asks for: [AdamW], or [AdamW for the rest, Muon for the hidden matrices]."""
    if config.optimizer == "adamw":
        return [make_optimizer(model, config, device)]
    if not hasattr(torch.optim, "Muon"):
        raise ConfigError(f"--optimizer muon needs PyTorch 2.9 or newer (this is {torch.__version__})")
    hidden, rest = muon_params(model)
    if not hidden:  # no hidden matrix (a model of embeddings and vectors only): nothing for Muon to do
        return [make_optimizer(model, config, device)]
    muon = torch.optim.Muon(
        hidden, lr=config.lr, weight_decay=config.weight_decay, momentum=0.95, adjust_lr_fn="match_rms_adamw"
    )
    return [make_optimizer(model, config, device, params=rest), muon]
