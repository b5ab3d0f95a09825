"""Muon for the hidden matrices, the warm-up-stable-decay schedule, and epochs over a smaller training split."""

import json
import math
from pathlib import Path

import pytest
import torch

import tinyllm
from tinyllm import GPT, GPTConfig
from tinyllm.config import TrainConfig
from tinyllm.errors import ConfigError
from tinyllm.optim import (
    POLAR_EXPRESS,
    QUINTIC,
    Muon,
    make_optimizers,
    muon_params,
    normalize_rows,
    orthogonalize,
)
from tinyllm.training import Trainer

from .conftest import SHAKESPEARE_EXCERPT, TINY_MODEL, TINY_TRAIN, Regression, regression_batches


def test_muon_gets_the_hidden_matrices_and_adamw_the_rest_with_the_tied_embedding_once():
    model = GPT(GPTConfig(vocab_size=20, block_size=8, n_layer=2, n_head=2, n_embd=16))
    hidden, rest = muon_params(model)
    names = {id(p): n for n, p in model.named_parameters()}  # named_parameters lists a tied tensor once
    assert sorted(names[id(p)] for p in hidden) == sorted(
        f"transformer.h.{i}.{m}.weight"
        for i in range(2)
        for m in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
    )
    assert "transformer.wte.weight" in {names[id(p)] for p in rest} and "transformer.wpe.weight" in {
        names[id(p)] for p in rest
    }
    assert model.lm_head.weight is model.transformer.wte.weight  # tying intact
    everything = hidden + rest
    assert len({id(p) for p in everything}) == len(everything) == len(list(model.parameters()))
    adamw, muon = make_optimizers(model, TrainConfig(optimizer="muon"), torch.device("cpu"))
    assert isinstance(muon, Muon) and isinstance(adamw, torch.optim.AdamW)
    assert {id(p) for p in muon.param_groups[0]["params"]} == {id(p) for p in hidden}
    assert {id(p) for g in adamw.param_groups for p in g["params"]} == {id(p) for p in rest}
    (only,) = make_optimizers(model, TrainConfig(), torch.device("cpu"))
    assert isinstance(only, torch.optim.AdamW)


@pytest.mark.skipif(not hasattr(torch.optim, "Muon"), reason="PyTorch has no torch.optim.Muon (before 2.9)")
def test_our_float32_muon_with_pytorchs_polynomial_is_pytorchs_update():
    """With one quintic and no row sizes, the same steps as torch.optim.Muon, which computes its
    Newton-Schulz in bfloat16: equal to that precision."""
    torch.manual_seed(0)
    ours_w, theirs_w = torch.randn(48, 144), None
    theirs_w = ours_w.clone()
    ours = Muon([ours_w], lr=0.01, weight_decay=0.1, polynomials=QUINTIC, row_beta=None)
    theirs = torch.optim.Muon([theirs_w], lr=0.01, weight_decay=0.1, adjust_lr_fn="match_rms_adamw")
    start = ours_w.clone()
    for _ in range(3):
        gradient = torch.randn(48, 144)
        ours_w.grad, theirs_w.grad = gradient.clone(), gradient.clone()
        ours.step()
        theirs.step()
    moved = (theirs_w - start).norm()
    assert (ours_w - theirs_w).norm() < 0.01 * moved  # the same update, to bfloat16's precision
    singular = torch.linalg.svdvals(orthogonalize(torch.randn(40, 90)))
    assert singular.min() > 0.5 and singular.max() < 1.3  # about orthogonal: every direction moves alike


def test_newton_schulz_in_bfloat16_is_pytorchs_muon_and_stays_near_float32():
    """`ns_dtype=torch.bfloat16` computes the products as torch.optim.Muon does; the parameters and
    their momentum stay float32, and the result differs from float32's only at bfloat16's precision."""
    torch.manual_seed(0)
    g = torch.randn(40, 90)
    in_bf16 = orthogonalize(g, dtype=torch.bfloat16)
    assert in_bf16.dtype == torch.float32  # handed back in the gradient's precision
    in_f32 = orthogonalize(g)
    assert 0 < (in_bf16 - in_f32).norm() < 0.05 * in_f32.norm()  # really computed otherwise, and close
    ours_w = torch.randn(48, 144)
    theirs_w = ours_w.clone()
    ours = Muon([ours_w], lr=0.01, weight_decay=0.1, ns_dtype=torch.bfloat16, polynomials=QUINTIC, row_beta=None)
    theirs = torch.optim.Muon([theirs_w], lr=0.01, weight_decay=0.1, adjust_lr_fn="match_rms_adamw")
    start = ours_w.clone()
    for _ in range(3):
        ours_w.grad = torch.randn(48, 144)
        theirs_w.grad = ours_w.grad.clone()
        ours.step()
        theirs.step()
    assert ours_w.dtype == torch.float32 and ours.state[ours_w]["momentum_buffer"].dtype == torch.float32
    assert (ours_w - theirs_w).norm() < 0.01 * (theirs_w - start).norm()


def test_the_polar_express_polynomials_orthogonalise_closer_than_one_quintic():
    """Five iterations of Polar Express leave the singular values nearer 1 than five of the quintic,
    most of all the small ones, which the quintic lifts slowly (a gradient's are spread widely)."""
    torch.manual_seed(0)
    u, _, v = torch.linalg.svd(torch.randn(64, 160), full_matrices=False)
    g = u @ torch.diag(torch.logspace(-3, 0, 64)) @ v  # singular values from 0.001 to 1
    quintic = torch.linalg.svdvals(orthogonalize(g, polynomials=QUINTIC))
    polar = torch.linalg.svdvals(orthogonalize(g, polynomials=POLAR_EXPRESS))
    assert (polar - 1).abs().max() < (quintic - 1).abs().max()
    assert polar.min() > quintic.min()
    assert polar.max() < 1.3  # none overshoots far: the polynomials' safety margin


def test_normalize_rows_evens_out_the_rows_and_keeps_the_matrix_norm():
    """NorMuon: rows that were large on average shrink, small ones grow, the norm of each matrix stays,
    and the running average (one value per row of the longer side) is updated in place."""
    torch.manual_seed(0)
    updates = torch.randn(2, 32, 8)  # tall: one value per row (32)
    updates[:, :4] *= 5.0  # four rows far larger than the rest
    averages = torch.zeros(2, 32, 1)
    out = normalize_rows(updates, averages, beta=0.95)
    torch.testing.assert_close(out.norm(dim=(-2, -1)), updates.norm(dim=(-2, -1)))
    rows_in, rows_out = updates.norm(dim=-1), out.norm(dim=-1)
    assert rows_out.max() / rows_out.min() < rows_in.max() / rows_in.min() / 3
    torch.testing.assert_close(averages, 0.05 * updates.square().mean(dim=-1, keepdim=True))
    wide = normalize_rows(torch.randn(3, 8, 32), torch.zeros(3, 1, 32), beta=0.95)  # wide: one per column
    assert wide.shape == (3, 8, 32)


def test_muon_keeps_its_row_sizes_in_its_state_for_resuming():
    """The running row sizes are optimizer state (in state_dict: a resume is exact), one set per part
    of a fused matrix; a Muon without them keeps none."""
    torch.manual_seed(0)
    fused, square = torch.randn(36, 12), torch.randn(12, 12)
    muon = Muon([fused, square], lr=0.02, pieces={fused: 3})
    for p in (fused, square):
        p.grad = torch.randn_like(p)
    muon.step()
    assert muon.state[fused]["row_sizes"].shape == (3, 12, 1)
    assert muon.state[square]["row_sizes"].shape == (1, 12, 1)
    assert (muon.state[fused]["row_sizes"] > 0).all()
    copy = Muon([fused.clone(), square.clone()], lr=0.02, pieces={})
    copy.load_state_dict(muon.state_dict())
    torch.testing.assert_close(
        copy.state[copy.param_groups[0]["params"][0]]["row_sizes"], muon.state[fused]["row_sizes"]
    )
    plain = Muon([w := torch.randn(12, 12)], lr=0.02, row_beta=None)
    w.grad = torch.randn_like(w)
    plain.step()
    assert "row_sizes" not in plain.state[w]


def test_a_stack_of_matrices_is_orthogonalised_each_on_its_own():
    """Muon batches the matrices of one shape: the same result as one at a time, tall or wide."""
    torch.manual_seed(0)
    for shape in ((3, 24, 64), (4, 64, 24)):
        stack = torch.randn(shape)
        one_by_one = torch.stack([orthogonalize(g) for g in stack])
        torch.testing.assert_close(orthogonalize(stack), one_by_one, atol=1e-5, rtol=1e-4)
    # and each step moves the parameters of a batch exactly as a Muon of that parameter alone
    params = [torch.randn(16, 48) for _ in range(3)]
    alone = [p.clone() for p in params]
    together, separate = Muon(params, lr=0.02), [Muon([p], lr=0.02) for p in alone]
    for _ in range(2):
        for p, q in zip(params, alone, strict=True):
            p.grad = torch.randn_like(p)
            q.grad = p.grad.clone()
        together.step()
        for optimizer in separate:
            optimizer.step()
    for p, q in zip(params, alone, strict=True):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5)


def test_the_fused_query_key_value_matrix_is_three_matrices_to_muon():
    """GPT-2's c_attn stacks the query, key and value matrices: Muon moves each as a Muon of that
    matrix alone would, not the stack as one (which would differ: the three would share directions)."""
    model = GPT(GPTConfig(vocab_size=20, block_size=8, n_layer=2, n_head=2, n_embd=16))
    _, muon = make_optimizers(model, TrainConfig(optimizer="muon"), torch.device("cpu"))
    assert muon.pieces == {block.attn.c_attn.weight: 3 for block in model.transformer.h}
    torch.manual_seed(0)
    fused = torch.randn(3 * 16, 16)
    parts = [part.clone() for part in fused.chunk(3)]
    start = fused.clone()
    as_three = Muon([fused], lr=0.02, pieces={fused: 3})
    as_one = Muon([stacked := fused.clone()], lr=0.02)
    alone = [Muon([part], lr=0.02) for part in parts]
    for _ in range(2):
        fused.grad = torch.randn_like(fused)
        stacked.grad = fused.grad.clone()
        for part, grad in zip(parts, fused.grad.chunk(3), strict=True):
            part.grad = grad.clone()
        for optimizer in (as_three, as_one, *alone):
            optimizer.step()
    torch.testing.assert_close(fused, torch.cat(parts), atol=1e-6, rtol=1e-5)
    assert (stacked - fused).norm() > 0.1 * (fused - start).norm()  # as one stack it would have moved otherwise
    assert muon.state_dict()["param_groups"][0].keys() == as_one.state_dict()["param_groups"][0].keys()


def test_muon_lr_scale_moves_the_hidden_matrices_faster_and_leaves_adamw_alone():
    """--muon-lr-scale multiplies Muon's rate (the schedule's rate x the scale); AdamW keeps --lr."""
    model = GPT(GPTConfig(vocab_size=20, block_size=8, n_layer=1, n_head=2, n_embd=16))
    adamw, muon = make_optimizers(model, TrainConfig(optimizer="muon", muon_lr_scale=1.5), torch.device("cpu"))
    assert muon.lr_scale == 1.5 and adamw.param_groups[0]["lr"] == muon.param_groups[0]["lr"]
    torch.manual_seed(0)
    scaled_w = torch.randn(16, 48)
    faster_w = scaled_w.clone()
    scaled, faster = Muon([scaled_w], lr=0.02, lr_scale=1.5), Muon([faster_w], lr=0.03)
    for _ in range(2):
        scaled_w.grad = torch.randn_like(scaled_w)
        faster_w.grad = scaled_w.grad.clone()
        scaled.step()
        faster.step()
    torch.testing.assert_close(scaled_w, faster_w)  # the same as Muon at 1.5x the rate


def test_muon_trains_a_tiny_gpt(tmp_path):
    result = tinyllm.train(
        "shakespeare",
        data_path=SHAKESPEARE_EXCERPT,
        out_dir=tmp_path / "r",
        model_overrides=TINY_MODEL,
        train_overrides={**TINY_TRAIN, "max_iters": 40, "optimizer": "muon", "lr": 1e-2},
        progress_bar=False,
        log=lambda *a: None,
    )
    assert result.test_loss < math.log(39) - 0.7  # well below guessing among the 39 characters
    state = tinyllm.load(result.run_dir).model
    assert state.lm_head.weight is state.transformer.wte.weight


def test_wsd_warms_up_stays_then_decays_to_the_floor():
    config = TrainConfig(
        lr=1e-3, min_lr=1e-4, warmup_iters=10, max_iters=100, schedule="wsd", decay_fraction=0.2, device="cpu"
    )
    trainer = Trainer(Regression(), regression_batches, config)
    lrs = [trainer.lr_at(i, 0.0) for i in range(101)]
    assert lrs[0] < lrs[5] < lrs[9] <= 1e-3  # warm-up
    assert all(math.isclose(lr, 1e-3) for lr in lrs[10:81])  # stable until the last 20%
    assert all(a > b for a, b in zip(lrs[80:100], lrs[81:101], strict=True))  # then straight down
    assert math.isclose(lrs[90], 5.5e-4) and math.isclose(lrs[100], 1e-4)  # to the floor at the end
    timed = Trainer(
        Regression(),
        regression_batches,
        TrainConfig(lr=1e-3, min_lr=0.0, warmup_iters=0, max_iters=None, max_time=100, schedule="wsd", device="cpu"),
    )
    assert (
        math.isclose(timed.lr_at(5, 70.0), 1e-3)
        and math.isclose(timed.lr_at(5, 90.0), 5e-4)
        and timed.lr_at(5, 100.0) == 0
    )


@pytest.mark.parametrize(
    "kw",
    [
        {"optimizer": "sgd"},
        {"schedule": "linear"},
        {"decay_fraction": 0},
        {"decay_fraction": 1.5},
        {"muon_lr_scale": 0},
        {"muon_lr_scale": -1.5},
    ],
)
def test_bad_values_are_clear_errors(kw):
    with pytest.raises(ConfigError, match=next(iter(kw))):
        TrainConfig(**kw)


def test_resuming_with_another_optimizer_is_refused(tmp_path):
    settings = dict(model_overrides=TINY_MODEL, progress_bar=False, log=lambda *a: None)
    first = {**TINY_TRAIN, "max_iters": 4, "optimizer": "adamw"}
    tinyllm.train(
        "shakespeare", data_path=SHAKESPEARE_EXCERPT, out_dir=tmp_path / "r", train_overrides=first, **settings
    )
    with pytest.raises(tinyllm.TinyLLMError, match="optimizer"):
        tinyllm.train(
            "shakespeare",
            data_path=SHAKESPEARE_EXCERPT,
            out_dir=tmp_path / "r",
            resume=True,
            train_overrides={"max_iters": 8, "optimizer": "muon"},
            **settings,
        )


def test_a_smaller_training_split_counts_epochs(tmp_path):
    result = tinyllm.train(
        "shakespeare",
        data_path=SHAKESPEARE_EXCERPT,
        out_dir=tmp_path / "r",
        task_options={"train_fraction": 0.01},
        model_overrides=TINY_MODEL,
        train_overrides=TINY_TRAIN,
        progress_bar=False,
        log=lambda *a: None,
    )
    records = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    characters = len(Path(SHAKESPEARE_EXCERPT).read_text(encoding="utf-8"))
    train_tokens = int(int(characters * 0.9) * 0.01)  # the first 1% of the training split
    per_step = TINY_TRAIN["batch_size"] * TINY_MODEL["block_size"]
    assert [r["epoch"] for r in records] == [round(r["iter"] * per_step / train_tokens, 4) for r in records]
    assert records[-1]["epoch"] > 1  # several passes over the small split in 20 steps
    assert json.loads((result.run_dir / "config.json").read_text())["task_options"]["train_fraction"] == 0.01
