"""LR schedules: the paper's steps, scaled budgets, and warm-up, checked at exact steps."""

from __future__ import annotations

import pytest
import torch

from residual_lab.schedules import constant_schedule, cosine_schedule, multistep_schedule


def lrs(make, steps: list[int], **kwargs) -> list[float]:
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    sched = make(opt, **kwargs)
    out, step = [], 0
    for target in steps:
        while step < target:
            opt.step()
            sched.step()
            step += 1
        out.append(opt.param_groups[0]["lr"])
    return out


def test_paper_schedule_divides_by_10_at_32k_and_48k_of_64k():
    got = lrs(multistep_schedule, [0, 31_999, 32_000, 47_999, 48_000, 63_999], total_steps=64_000)
    assert got == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])


def test_milestones_scale_with_the_budget():
    got = lrs(multistep_schedule, [249, 250, 374, 375], total_steps=500)
    assert got == pytest.approx([0.1, 0.01, 0.01, 0.001])


def test_resnet110_warmup_runs_at_a_tenth_then_returns_to_the_base_lr():
    got = lrs(multistep_schedule, [0, 399, 400], total_steps=64_000, warmup_steps=400, warmup_factor=0.1)
    assert got == pytest.approx([0.01, 0.01, 0.1])


def test_cosine_and_constant():
    assert lrs(cosine_schedule, [0, 50, 100], total_steps=100) == pytest.approx([0.1, 0.05, 0.0])
    assert lrs(constant_schedule, [0, 5, 9], total_steps=10, warmup_steps=5) == pytest.approx([0.01, 0.1, 0.1])


def test_milestones_in_any_order_give_the_schedule_of_the_sorted_ones_as_torchs_multisteplr_does():
    # MultiStepLR counts milestones, so their order does not matter; scheduler.milestones=[0.75,0.5]
    # must not divide twice at step 250 of 500 (a bisect over unsorted bounds did).
    steps = [0, 249, 250, 300, 374, 375, 499]
    got = lrs(multistep_schedule, steps, total_steps=500, milestones=[0.75, 0.5])
    torch_lrs = lrs(lambda o, **_: torch.optim.lr_scheduler.MultiStepLR(o, milestones=[375, 250]), steps)
    assert got == pytest.approx(torch_lrs)
    assert torch_lrs == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.01, 0.001, 0.001])
