"""The report's registered curvature test (docs/reproducing.md, rule 6): log10 of ``hessian``'s
top eigenvalue and trace, a residual net against its plain twin, Welch, in the report's one
Holm family with the training-error tests."""

from __future__ import annotations

import json
import math
from pathlib import Path

from scipy import stats

from residual_lab.report import write_report
from residual_lab.results.stats import holm
from tests.test_report import net_run

OPTIONS = {"name": "hessian", "images": 64, "lanczos_steps": 16, "trace_probes": 16, "seed": 0}


def hessian_record(folder: Path, shortcut: str, seed: int, top: float, trace: float, depth: int = 20,
                   max_steps: int | None = 3000, **options) -> Path:
    """An ``analyze hessian`` record as the analysis writes it, of a net trained for ``max_steps``."""
    name = f"plain-{depth}" if shortcut == "none" else f"resnet-{depth}-identity"
    meta = {"run_name": name, "depth": depth, "shortcut": shortcut, "block": "basic", "width": 16,
            "norm": "batch", "init": "kaiming_fan_in", "seed": seed, "data": "ImageFolderSource",
            "data_root": "/somewhere/cifar10-jpeg", "trained": True, "max_steps": max_steps,
            "options": {**OPTIONS, **options}}
    path = folder / f"{name}-steps{max_steps}-seed{seed}.json"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"analysis": "hessian", "meta": meta,
                                "result": {"top": [top, top / 2], "trace": trace, "trace_stderr": 1.0,
                                           "loss": 1.0, "images": 64}}))
    return path


def twin_lines(report: str) -> list[str]:
    return [line for line in report.splitlines() if line.startswith("- λ max") or line.startswith("- trace")]


def welch_log10(a, b) -> float:
    return stats.ttest_ind([math.log10(v) for v in a], [math.log10(v) for v in b], equal_var=False).pvalue


def test_residual_against_plain_twin_is_welch_on_log10_adjusted_by_holm(tmp_path):
    res_top, plain_top = (140.0, 150.0, 145.0), (400.0, 380.0, 420.0)   # clearly apart
    res_trace, plain_trace = (800.0, 600.0, 700.0), (650.0, 820.0, 700.0)  # overlapping
    for seed in range(3):
        hessian_record(tmp_path / "a", "identity", seed, res_top[seed], res_trace[seed])
        hessian_record(tmp_path / "a", "none", seed, plain_top[seed], plain_trace[seed])
    report = write_report(tmp_path / "a", out=tmp_path / "out").read_text()
    p_top, p_trace = welch_log10(res_top, plain_top), welch_log10(res_trace, plain_trace)
    adj_top, adj_trace = holm([p_top, p_trace])
    assert p_top < 0.01 < 0.5 < p_trace and adj_top == 2 * p_top and adj_trace == p_trace
    assert "**`hessian`, trained for 3000 steps, norm=batch: ResNet-20 against plain-20**" in report
    logs = [math.log10(v) for v in res_top]
    mean, sd = sum(logs) / 3, math.sqrt(sum((x - sum(logs) / 3) ** 2 for x in logs) / 2)
    assert twin_lines(report) == [
        f"- λ max: ResNet-20 140, 150, 145 (log10 {mean:.3f} ± {sd:.3f}, n=3) vs plain-20 400, 380, 420 "
        f"(log10 {sum(math.log10(v) for v in plain_top) / 3:.3f} ± "
        f"{__import__('statistics').stdev([math.log10(v) for v in plain_top]):.3f}, n=3): ResNet-20's λ max lower "
        f"(Welch's t-test, p={p_top:.2g}, Holm-adjusted p={adj_top:.2g} over 2 tests, alpha 0.05); as Yao et al. "
        f"2020 report.",
        next(line for line in twin_lines(report) if line.startswith("- trace")),
    ]
    assert twin_lines(report)[1].endswith(f"not resolved (Welch's t-test, p={p_trace:.2g}, Holm-adjusted "
                                          f"p={adj_trace:.2g} over 2 tests).")


def test_two_seeds_a_side_or_other_budgets_or_options_are_not_pooled_into_a_verdict(tmp_path):
    for seed in range(2):
        hessian_record(tmp_path, "identity", seed, 100.0 + seed, 500.0 + 3 * seed)
        hessian_record(tmp_path, "none", seed, 400.0 + seed, 900.0 + seed)
    # a third seed of each, but trained for another budget or measured on other images: not the same experiment
    hessian_record(tmp_path, "identity", 2, 102.0, 500.0, max_steps=1500)
    hessian_record(tmp_path, "none", 2, 402.0, 902.0, max_steps=1500)
    hessian_record(tmp_path, "identity", 3, 103.0, 509.0, images=16)
    hessian_record(tmp_path, "none", 3, 403.0, 903.0, images=16)
    report = write_report(tmp_path, out=tmp_path / "out").read_text()
    lines = [line for line in twin_lines(report) if "2 seeds" in line]
    assert len(twin_lines(report)) == 6 and len(lines) == 2 and all(": 2 seeds, not resolved (a verdict needs >= 3 seeds per side; Welch's t-test "
                                   "at these seeds: p=" in line for line in lines)
    assert "Holm-adjusted p=" not in report


def test_the_curvature_tests_join_the_training_error_family(tmp_path):
    """One report, runs and analyses: the plain-20 vs plain-32 ordering (p = 0.042 alone) and
    the two curvature tests are one Holm family of 3."""
    a, b = (30.0, 32.0, 34.0), (35.0, 37.0, 39.5)
    for d, errors in ((20, a), (32, b)):
        for seed, e in enumerate(errors):
            net_run(tmp_path / "runs", d, "none", seed, e, train_error_full=e)
    res_top, plain_top = (140.0, 150.0, 145.0), (400.0, 380.0, 420.0)
    for seed in range(3):
        hessian_record(tmp_path / "analyses", "identity", seed, res_top[seed], 700.0 + seed)
        hessian_record(tmp_path / "analyses", "none", seed, plain_top[seed], 710.0 - seed)
    report = write_report([tmp_path / "runs", tmp_path / "analyses"], out=tmp_path / "out").read_text()
    p_runs = stats.ttest_ind(a, b, equal_var=False).pvalue
    p_top = welch_log10(res_top, plain_top)
    p_trace = welch_log10([700.0, 701.0, 702.0], [710.0, 709.0, 708.0])
    adjusted = holm([p_runs, p_top, p_trace])
    ordering = next(line for line in report.splitlines() if line.startswith("- plain-20"))
    assert f"Holm-adjusted p={adjusted[0]:.2g} over 3 tests" in ordering
    assert all("over 3 tests" in line for line in twin_lines(report))
    assert f"Holm-adjusted p={adjusted[1]:.2g} over 3 tests" in twin_lines(report)[0]
