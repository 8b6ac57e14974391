"""The report on a tiny real sweep (2 depths x 2 shortcuts), a partial one, a diverged run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from residual_lab.results import Run, aggregate, find_runs, load_reference, match_reference
from residual_lab.results.plots import profile
from residual_lab.report import write_report
from residual_lab.resolvers import if_at_least, scale_steps

ROOT = Path(__file__).resolve().parent.parent
NAMES = ["plain-8", "resnet-8-identity", "plain-14", "resnet-14-identity"]
#: The sweep every test here shares: 10 steps, validation at steps 5 and 10, diagnostics at 5 and 10.
TINY = ["experiment=smoke", "trainer.max_steps=10", "trainer.val_check_interval=5",
        "trainer.check_val_every_n_epoch=null", "trainer.log_every_n_steps=5", "diagnostics.every_n_steps=5",
        "data.source.num_train=448", "data.source.num_test=128", "data.val_size=128", "data.eval_batch_size=128",
        "trainer.enable_progress_bar=false", "~callbacks.progress_bar"]


def run_sweep(sweep_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    """``python -m residual_lab.run -m ...`` in a fresh process (Hydra's global state stays clean)."""
    cmd = [sys.executable, "-m", "residual_lab.run", "-m", *TINY, *overrides, f"hydra.sweep.dir={sweep_dir}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PROJECT_ROOT": str(sweep_dir.parent)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """A finished 2x2 multirun (depth 8, 14 x shortcut none, identity) on synthetic data."""
    sweep_dir = tmp_path_factory.mktemp("sweep") / "multirun"
    run_sweep(sweep_dir, "depth=8,14", "shortcut=none,identity")
    return sweep_dir


@pytest.fixture
def copy_of(sweep, tmp_path):
    """A private copy of the shared sweep (tests that damage it)."""
    dst = tmp_path / "copy"
    shutil.copytree(sweep, dst, ignore=shutil.ignore_patterns("checkpoints"))
    return dst


def table_lines(report: str) -> list[str]:
    """The data rows of the errors table (below its header and separator)."""
    section = report.split("## Errors")[1].split("##")[0]
    return [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| net")]


def test_runs_are_found_in_job_order_with_their_scalars(sweep):
    runs = find_runs(sweep)
    assert [r.name for r in runs] == NAMES
    assert [r.status for r in runs] == ["completed"] * 4
    for run in runs:
        s = run.scalars
        assert s["train/error"][0] == [4, 9]  # Lightning logs at 0-based steps, every 5
        assert s["val/error"][0] == [4, 9]
        assert s["test/error"][0] == [10]
        assert s["val/error"][1][-1] == pytest.approx(run.summary["val_error"], abs=1e-4)
        assert s["test/error"][1][0] == pytest.approx(run.summary["test_error"], abs=1e-4)


def test_report_of_a_2x2_sweep_has_all_four_rows_and_figures(sweep):
    report = write_report(sweep).read_text()
    rows = table_lines(report)
    assert len(rows) == 4
    runs = {r.name: r for r in find_runs(sweep)}
    expected = [("plain", "8", "none", runs["plain-8"]), ("plain", "14", "none", runs["plain-14"]),
                ("ResNet", "8", "identity", runs["resnet-8-identity"]),
                ("ResNet", "14", "identity", runs["resnet-14-identity"])]
    for line, (net, depth, shortcut, run) in zip(rows, expected):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[:5] == [net, depth, shortcut, "basic", "batch"]
        assert cells[6] == "1"  # one seed
        assert cells[7] == f"{run.summary['train_error']:.2f}"
        assert cells[8] == f"{run.summary['test_error']:.2f}"
    assert "4 runs: 4 completed." in report
    assert "All runs completed." in report
    assert (sweep / "curves.png").stat().st_size > 10_000
    assert "steps (trainer.max_steps): 10; batch: 64; data: SyntheticSource" in report


def test_gradient_profiles_come_from_the_diagnostics_or_are_skipped_with_a_note(sweep):
    report = write_report(sweep).read_text()
    runs = find_runs(sweep)
    profiles = [profile(r, "grad_norm", "layers", "grad_norm") for r in runs]
    if any(profiles):
        # ResNet-8/14 with option A: stem + 2 convs per block (3n blocks) + fc weighted layers.
        assert [len(p[0]) for p in profiles] == [8, 8, 14, 14]
        assert (sweep / "profiles.png").exists() and "![profiles](profiles.png)" in report
    else:
        assert "skipped" in report and not (sweep / "profiles.png").exists()


def test_a_run_whose_summary_is_missing_is_listed_and_the_rest_reported(copy_of):
    (copy_of / "2_plain-14" / "summary.json").unlink()  # killed halfway: config and events remain
    report = write_report(copy_of).read_text()
    assert len(table_lines(report)) == 3
    assert "| plain-14 | 0 | no summary (incomplete) | – |" in report
    assert "4 runs: 3 completed, 1 no summary (incomplete)." in report


def test_a_run_deleted_outright_leaves_the_others(copy_of):
    shutil.rmtree(copy_of / "3_resnet-14-identity")
    report = write_report(copy_of).read_text()
    assert len(table_lines(report)) == 3 and "All runs completed." in report


def test_diverged_run_is_flagged_with_its_step_and_reason_not_averaged(copy_of):
    # A copy of a run directory with the summary a diverged run writes (status, steps, reason).
    src, dst = copy_of / "1_resnet-8-identity", copy_of / "4_resnet-8-identity"
    shutil.copytree(src, dst)
    summary = json.loads((dst / "summary.json").read_text())
    summary.update(status="diverged", steps=7, seed=1, reason="loss is nan at step 7", test_error=None)
    (dst / "summary.json").write_text(json.dumps(summary))
    report = write_report(copy_of).read_text()
    assert "| resnet-8-identity | 1 | diverged | 7 | loss is nan at step 7 | `4_resnet-8-identity` |" in report
    assert len(table_lines(report)) == 4  # not averaged into resnet-8's row
    resnet8 = next(r for r in aggregate(find_runs(copy_of)) if r.key["run_name"] == "resnet-8-identity")
    assert resnet8.n == 1


def test_a_really_diverged_run_is_listed_with_its_status_and_step(copy_of):
    # lr 1e6 without normalisation: the loss is non-finite within a few steps; run.py stops the
    # run, writes status `diverged` and exits 0 so a sweep would go on.
    run_sweep(copy_of / "diverged", "depth=8", "shortcut=none", "norm=none", "optimizer.lr=1e6")
    (diverged,) = find_runs(copy_of / "diverged")
    assert diverged.status == "diverged" and diverged.summary["steps"] < 10
    report = write_report(copy_of).read_text()
    assert f"| plain-8-norm_none | 0 | diverged | {diverged.summary['steps']} | training loss became" in report
    assert "5 runs: 4 completed, 1 diverged." in report and len(table_lines(report)) == 4


def test_report_on_a_single_run_directory(sweep, tmp_path):
    single = tmp_path / "single"
    shutil.copytree(sweep / "1_resnet-8-identity", single, ignore=shutil.ignore_patterns("checkpoints"))
    report = write_report(single).read_text()
    assert len(table_lines(report)) == 1 and "1 runs: 1 completed." in report


def test_report_cli_prints_the_report_and_fails_cleanly_on_a_missing_dir(sweep, tmp_path):
    out = tmp_path / "out"
    ok = subprocess.run([sys.executable, "-m", "residual_lab.report", str(sweep), "--out", str(out)],
                        capture_output=True, text=True, cwd=ROOT)
    assert ok.returncode == 0 and ok.stdout == (out / "report.md").read_text()
    bad = subprocess.run([sys.executable, "-m", "residual_lab.report", str(tmp_path / "nope")],
                         capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "no such directory" in bad.stderr


def fake_run(tmp_path: Path, seed: int, test_error: float, **fields) -> Run:
    summary = {"run_name": "resnet-56-identity", "depth": 56, "shortcut": "identity", "block": "basic",
               "width": 16, "norm": "batch", "seed": seed, "max_steps": 500, "batch_size": 128,
               "data": "ImageFolderSource", "status": "completed", "train_error": 1.0, "test_error": test_error,
               "params": 853_018, **fields}
    return Run(path=tmp_path / f"{seed}", summary=summary, fields={})


def test_seeds_are_averaged_mean_and_sample_std_against_the_paper(tmp_path):
    rows = aggregate([fake_run(tmp_path, s, e) for s, e in ((0, 7.0), (1, 8.0), (2, 9.0))])
    assert len(rows) == 1
    row = rows[0]
    assert (row.n, row.mean("test_error"), row.std("test_error")) == (3, 8.0, 1.0)
    assert row.reference["test_error"] == 6.97 and row.reference["params_m"] == 0.85
    assert row.difference == pytest.approx(8.0 - 6.97)
    from residual_lab.report import table_markdown
    line = table_lines("## Errors\n" + table_markdown(rows))[0]
    assert "| 8.00 ± 1.00 | 6.97 | +1.03 | He et al. 2015 Table 6 |" in line
    assert "| 0.85M / 0.85M | 3 |" in line


def test_reference_file_holds_the_papers_figures():
    ref = load_reference()
    table6 = {e["depth"]: (e["test_error"], e["params_m"]) for e in ref["entries"]
              if e["paper"] == "he2015"}
    assert table6 == {20: (8.75, 0.27), 32: (7.51, 0.46), 44: (7.17, 0.66), 56: (6.97, 0.85),
                      110: (6.43, 1.7), 1202: (7.93, 19.4)}
    base = {"shortcut": "identity", "norm": "batch", "width": 16}
    assert match_reference({**base, "depth": 110, "block": "basic"})["compare"] == 6.61  # the mean of 5
    assert match_reference({**base, "depth": 110, "block": "preact"})["test_error"] == 6.37
    assert match_reference({**base, "depth": 164, "block": "bottleneck"})["test_error"] == 5.93
    assert match_reference({**base, "depth": 164, "block": "preact_bottleneck"})["test_error"] == 5.46
    assert match_reference({**base, "depth": 1001, "block": "bottleneck"})["test_error"] == 7.61
    assert match_reference({**base, "depth": 1001, "block": "preact_bottleneck"})["test_error"] == 4.92
    assert match_reference({**base, "depth": 56, "block": "basic", "shortcut": "none"}) is None
    assert match_reference({**base, "depth": 56, "block": "basic", "norm": "none"}) is None
    assert match_reference({**base, "depth": 56, "block": "basic", "width": 32}) is None


def test_warmup_resolvers_scale_with_the_budget():
    assert [scale_steps(400, m, 64000) for m in (64000, 16000, 500, 40)] == [400, 100, 3, 1]
    assert scale_steps(0, 500, 64000) == 0
    assert (if_at_least(110, 110, "a", "b"), if_at_least(56, 110, "a", "b")) == ("a", "b")


def test_notebook_runs_on_a_sweep(sweep, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(ROOT / "notebooks" / "analysis.ipynb", as_version=4)
    monkeypatch.setenv("RESIDUAL_LAB_SWEEP", str(sweep))
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "runs: 4 (completed: 4)" in outputs
    assert "plain-14" in outputs and "resnet-14-identity" in outputs


def test_fig6_claims_are_checked_on_mean_training_error(tmp_path):
    from residual_lab.report import degradation_markdown

    def net(depth, shortcut, seed, train_error):
        name = f"plain-{depth}" if shortcut == "none" else f"resnet-{depth}-identity"
        return fake_run(tmp_path, seed, 50.0, run_name=name, depth=depth, shortcut=shortcut, train_error=train_error)

    rows = aggregate([net(20, "none", 0, 40.0), net(20, "none", 1, 42.0), net(56, "none", 0, 50.0),
                      net(56, "identity", 0, 30.0), net(20, "identity", 0, 45.0)])
    assert degradation_markdown(rows).splitlines() == [
        "- plain-56 train error 50.00% vs plain-20 41.00%: deeper plain net trains WORSE (degradation, as in Fig. 6).",
        "- depth 20: ResNet train error 45.00% vs plain 41.00%: ResNet NOT lower.",
        "- depth 56: ResNet train error 30.00% vs plain 50.00%: ResNet lower (as in Fig. 6).",
    ]
