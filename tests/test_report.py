"""The report on a tiny real sweep (2 depths x 2 shortcuts), a partial one, a diverged run."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import pytest

from residual_lab.results import Run, aggregate, find_runs, load_reference, match_reference
from residual_lab.results.export import export_run_record
from residual_lab.results.loading import RECORD_TAGS, load_run, load_scalars
from residual_lab.results.plots import curves_figure, profile
from residual_lab.results.stats import t_two_sided_p, welch
from residual_lab.report import PROTOCOLS, paper_steps, setup_markdown, table_markdown, verdicts_markdown, write_report
from residual_lab.report import main as report_main
from residual_lab.resolvers import if_at_least, scale_steps
from tests.helpers import multirun

ROOT = Path(__file__).resolve().parent.parent
NAMES = ["plain-8", "resnet-8-identity", "plain-14", "resnet-14-identity"]
#: The sweep every test here shares: 10 steps, validation at steps 5 and 10, diagnostics at 5 and 10,
#: on 8x8 synthetic images (the report reads what was logged, not how well it learnt; 16x fewer pixels).
TINY = ["experiment=smoke", "data.source.image_size=8", "trainer.max_steps=10", "trainer.val_check_interval=5",
        "trainer.check_val_every_n_epoch=null", "trainer.log_every_n_steps=5", "diagnostics.every_n_steps=5",
        "data.source.num_train=448", "data.source.num_test=128", "data.val_size=128", "data.eval_batch_size=128",
        "trainer.enable_progress_bar=false", "~callbacks.progress_bar", "~callbacks.diagnostic_figures"]


def run_sweep(sweep_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    return multirun(sweep_dir, *TINY, *overrides)


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
        assert s["val/error"][1][-1] == pytest.approx(run.summary["val_error"], abs=0.005)  # summary.json rounds rates to 0.01
        assert s["test/error"][1][0] == pytest.approx(run.summary["test_error"], abs=0.005)


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_report_of_a_2x2_sweep_has_all_four_rows_and_figures(sweep):
    report = write_report(sweep).read_text()
    rows = table_lines(report)
    assert len(rows) == 4
    runs = {r.name: r for r in find_runs(sweep)}
    expected = [("plain", "8", "none", runs["plain-8"]), ("plain", "14", "none", runs["plain-14"]),
                ("ResNet", "8", "identity", runs["resnet-8-identity"]),
                ("ResNet", "14", "identity", runs["resnet-14-identity"])]
    for line, (net, depth, shortcut, run) in zip(rows, expected):
        c = cells(line)
        assert c[:5] == [net, depth, shortcut, "basic", "batch"]
        # depth and shortcut have their own columns; nothing else differs within this sweep
        assert c[5:8] == ["–", "synthetic", run.get("protocol")]
        assert c[9] == f"{run.summary['train_error_full']:.2f} (n=1)"  # one seed; the registered statistic
        assert c[10] == f"{run.summary['test_error']:.2f} (n=1)"
        assert c[11] == "– (data set synthetic)"  # a synthetic run never sits beside a paper number
    assert "4 runs: 4 completed." in report
    assert "All runs completed." in report
    assert (sweep / "curves.png").stat().st_size > 10_000
    assert (sweep / "depth.png").stat().st_size > 10_000 and "![depth](depth.png)" in report  # 2 depths
    assert not (sweep / "tokens.png").exists() and "## Transformer diagnostics" not in report  # no ViT here
    assert ("steps (trainer.max_steps): 10; batch per process: 64; processes (world size): 1; global batch: 64; "
            "data source: SyntheticSource") in report
    protocol = runs["plain-8"].get("protocol")
    assert f"- **{protocol}** (4 runs" in report and PROTOCOLS[protocol] in report


def test_gradient_profiles_come_from_the_summaries_diagnostics(sweep):
    # TINY measures the diagnostics every 5 steps, so every summary must carry both profiles:
    # a run.py that stops writing `diagnostics` into summary.json fails here.
    report = write_report(sweep).read_text()
    runs = find_runs(sweep)
    weights = [profile(r, "grad_norm", "layers", "grad_norm") for r in runs]
    blocks = [profile(r, "block_grad", "blocks", "grad_rms") for r in runs]
    # plain-8, resnet-8, plain-14, resnet-14 (option A): stem + 2 convs per block (3n blocks) + fc.
    assert [len(p[0]) for p in weights] == [8, 8, 14, 14]
    assert [len(p[0]) for p in blocks] == [3, 3, 6, 6]
    assert all(v > 0 for p in weights + blocks for v in p[1])
    assert "![profiles](profiles.png)" in report and (sweep / "profiles.png").stat().st_size > 10_000


def test_runs_without_gradient_diagnostics_skip_the_profiles_with_a_note(copy_of):
    (copy_of / "profiles.png").unlink(missing_ok=True)  # the shared sweep's own report drew one
    for summary_file in copy_of.glob("*/summary.json"):
        summary = json.loads(summary_file.read_text())
        summary.pop("diagnostics")
        summary_file.write_text(json.dumps(summary))
    report = write_report(copy_of).read_text()
    assert "recorded per-layer gradient diagnostics" in report and "skipped" in report
    assert not (copy_of / "profiles.png").exists()


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
    from residual_lab.run import train
    from tests.helpers import compose_config

    cfg = compose_config(*TINY, "depth=8", "shortcut=none", "norm=none", "optimizer.lr=1e6",
                         output_dir=copy_of / "diverged" / "0_plain-8-norm_none")
    assert train(cfg)["status"] == "diverged"  # no exception: a sweep goes on (exit 0: tests/test_reliability.py)
    (diverged,) = find_runs(copy_of / "diverged")
    assert diverged.status == "diverged" and diverged.summary["steps"] < 10
    report = write_report(copy_of).read_text()
    assert f"| plain-8-norm_none (lr={diverged.summary['lr']}) | 0 | diverged | {diverged.summary['steps']} | training loss became" in report
    assert "5 runs: 4 completed, 1 diverged." in report and len(table_lines(report)) == 4


def test_report_on_a_single_run_directory(sweep, tmp_path):
    single = tmp_path / "single"
    shutil.copytree(sweep / "1_resnet-8-identity", single, ignore=shutil.ignore_patterns("checkpoints"))
    report = write_report(single).read_text()
    assert len(table_lines(report)) == 1 and "1 runs: 1 completed." in report


def report_cli(capsys, *args) -> tuple[int, str, str]:
    """``python -m residual_lab.report <args>`` in this process: (exit code, stdout, stderr)."""
    try:
        code = report_main([str(a) for a in args])
    except SystemExit as stop:  # bad input: one sentence, exit code 2 (residual_lab.errors.entry_point)
        code = stop.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_report_cli_prints_the_report_and_fails_cleanly_on_a_missing_dir(sweep, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, _ = report_cli(capsys, sweep, "--out", out)
    assert code == 0 and stdout == (out / "report.md").read_text()
    code, _, stderr = report_cli(capsys, tmp_path / "nope")
    assert code == 2 and "no such directory" in stderr


def fake_run(tmp_path: Path, seed: int, test_error: float, **fields) -> Run:
    """A completed run directory holding only summary.json (a CIFAR-10 ResNet-56 at the paper's
    protocol and length unless ``fields`` say otherwise), loaded as the report loads runs."""
    summary = {"run_name": "resnet-56-identity", "depth": 56, "shortcut": "identity", "block": "basic",
               "width": 16, "norm": "batch", "init": "kaiming_fan_in", "seed": seed, "max_steps": 64000,
               "batch_size": 128, "data": "TorchvisionCIFAR", "dataset": "cifar10", "protocol": "paper",
               "optimizer": "SGD", "lr": 0.1, "precision": "32-true", "status": "completed", "train_error": 1.0,
               "test_error": test_error, "params": 853_018, **fields}
    summary = {k: v for k, v in summary.items() if v is not None}  # None: the field is absent (old summaries)
    path = tmp_path / f"run{len(list(tmp_path.glob('run*')))}"
    path.mkdir(parents=True)
    (path / "summary.json").write_text(json.dumps(summary))
    return load_run(path)


def test_runs_that_did_not_complete_say_what_tells_them_apart(tmp_path):
    """Two diverged runs of one net (ResNet-110 without BN, two inits): each row names its init."""
    from residual_lab.report import problems_markdown

    runs = [fake_run(tmp_path, 0, None, init="kaiming_fan_in", status="diverged", steps=2),
            fake_run(tmp_path, 0, None, init="rezero", status="diverged", steps=247),
            fake_run(tmp_path, 0, 61.6, init="skipinit")]
    rows = problems_markdown(runs).splitlines()[2:]
    assert [cells(r)[:4] for r in rows] == [["resnet-56-identity (init=kaiming_fan_in)", "0", "diverged", "2"],
                                            ["resnet-56-identity (init=rezero)", "0", "diverged", "247"]]


def test_seeds_are_averaged_mean_and_sample_std_against_the_paper(tmp_path):
    rows = aggregate([fake_run(tmp_path, s, e) for s, e in ((0, 7.0), (1, 8.0), (2, 9.0))])
    assert len(rows) == 1
    row = rows[0]
    assert (row.n, row.mean("test_error"), row.std("test_error")) == (3, 8.0, 1.0)
    assert row.reference["test_error"] == 6.97 and row.reference["params_m"] == 0.85
    assert row.difference == pytest.approx(8.0 - 6.97)
    line = table_lines("## Errors\n" + table_markdown(rows))[0]
    assert "| 8.00 ± 1.00 (n=3) | 6.97 (single run) | +1.03 | He et al. 2015 Table 6 |" in line
    assert "| cifar10 | paper | 0.85M / 0.85M | 1.00 ± 0.00 (n=3) |" in line


def test_runs_that_differ_in_lr_or_dataset_are_separate_rows_labelled_by_the_difference(tmp_path):
    # The old grouping (depth/shortcut/block/width/norm/max_steps/batch/data) pooled all four
    # runs below into one row of "4 seeds".
    runs = [fake_run(tmp_path, 0, 7.0), fake_run(tmp_path, 1, 8.0),
            fake_run(tmp_path, 0, 9.0, lr=0.05), fake_run(tmp_path, 0, 30.0, dataset="cifar100")]
    rows = aggregate(runs)
    assert sorted((r.label, r.n) for r in rows) == [
        ("dataset=cifar10, lr=0.05", 1), ("dataset=cifar10, lr=0.1", 2), ("dataset=cifar100, lr=0.1", 1)]
    assert {r.label: r.mean("test_error") for r in rows}["dataset=cifar10, lr=0.1"] == 7.5


def test_a_paper_number_only_beside_the_papers_experiment(tmp_path):
    def ref(**fields):
        return aggregate([fake_run(tmp_path / str(len(list(tmp_path.iterdir()))), 0, 7.0, **fields)])[0].reference

    assert ref()["test_error"] == 6.97  # CIFAR-10, protocol paper, option A, basic, BN
    assert ref(dataset="synthetic", data="SyntheticSource") is None
    assert ref(dataset="cifar100") is None
    assert ref(protocol="heldout") is None
    assert ref(protocol=None) is None  # an old summary: heldout (every earlier run used 45k/5k)
    assert ref(shortcut="projection") is None  # He et al. 2015's 56 used option A
    jpeg = ref(dataset="cifar10-jpeg", data="ImageFolderSource")
    assert jpeg["test_error"] == 6.97 and jpeg["caveat"] == "CIFAR-10 JPEG copy: absolute errors are not the paper's"
    line = table_markdown(aggregate([fake_run(tmp_path / "jpeg", 0, 7.0, dataset="cifar10-jpeg")]))
    assert "6.97 (single run); CIFAR-10 JPEG copy: absolute errors are not the paper's" in line
    synthetic = table_markdown(aggregate([fake_run(tmp_path / "syn", 0, 7.0, dataset="synthetic")]))
    assert "6.97" not in synthetic and "– (data set synthetic)" in synthetic


def test_old_summaries_are_heldout_with_the_dataset_named_from_the_source(tmp_path):
    old = {"dataset": None, "protocol": None, "init": None}
    runs = [fake_run(tmp_path, 0, 9.0, data="ImageFolderSource", **old),
            fake_run(tmp_path, 0, 9.0, data="TorchvisionCIFAR", **old),
            fake_run(tmp_path, 0, 9.0, data="SyntheticSource", **old)]
    assert [(r.get("protocol"), r.get("dataset")) for r in runs] == [
        ("heldout", "imagefolder"), ("heldout", "cifar10 or cifar100 (not recorded)"), ("heldout", "synthetic")]
    assert all(r.derived == ("protocol", "world_size", "global_batch", "dataset") for r in runs)  # one process, too
    assert all(row.reference is None for row in aggregate(runs))
    report = write_report([r.path for r in runs], out=tmp_path / "out").read_text()
    assert "- **heldout** (3 runs; 3 of them predate summary.json's `protocol` field" in report


def test_reference_entries_are_the_papers_nets_with_their_statistic():
    # Every entry is CIFAR-10 at the paper's protocol, says which statistic its number is, and
    # its parameter count is what our code builds for that net (the papers' rounding).
    from residual_lab.models import CifarResNet

    entries = load_reference()["entries"]
    assert {(e["dataset"], e["protocol"]) for e in entries} == {("cifar10", "paper")}
    assert {e["statistic"] for e in entries} <= {"single run", "best of 5", "median of 5"}
    assert all(e["statistic"] == "median of 5" for e in entries if e["paper"] == "he2016")
    # He et al. 2016 appendix: the bottleneck nets project where the dimensions increase.
    assert {e["shortcut"] for e in entries if "bottleneck" in e["block"]} == {"projection"}
    for e in entries:
        if e["depth"] == 1001:
            continue  # 10.3M built vs the paper's 10.2M: an open item (the paper's count is not reproduced), not a reference error
        net = CifarResNet(depth=e["depth"], shortcut=e["shortcut"], block=e["block"], norm=e["norm"])
        ours = sum(p.numel() for p in net.parameters()) / 1e6
        digits = len(str(e["params_m"]).split(".")[1])
        assert round(ours, digits) == e["params_m"], (e, ours)


def test_reference_matching_uses_the_mean_where_the_paper_gives_one_and_needs_the_shortcut():
    base = {"shortcut": "identity", "norm": "batch", "width": 16, "dataset": "cifar10", "protocol": "paper",
            "max_steps": 64000}
    r110 = match_reference({**base, "depth": 110, "block": "basic"})
    assert (r110["statistic"], r110["compare"]) == ("best of 5", 6.61)  # compared with the mean of 5, not the best
    assert match_reference({**base, "depth": 110, "block": "preact"})["compare"] == 6.37
    r1001 = match_reference({**base, "depth": 1001, "block": "preact_bottleneck", "shortcut": "projection"})
    assert (r1001["statistic"], r1001["compare"]) == ("median of 5", 4.89)
    assert match_reference({**base, "depth": 164, "block": "preact_bottleneck", "shortcut": "projection"})[
        "test_error"] == 5.46
    assert match_reference({**base, "depth": 164, "block": "preact_bottleneck"}) is None  # identity: not the paper's
    assert match_reference({**base, "depth": 56, "block": "basic", "shortcut": "none"}) is None
    assert match_reference({**base, "depth": 56, "block": "basic", "norm": "none"}) is None
    assert match_reference({**base, "depth": 56, "block": "basic", "width": 32}) is None


def test_a_shorter_run_gets_no_paper_number_beside_it():
    # a 500-step run is not the paper's 64k-step experiment: no number, and the table says why
    from residual_lab.report import _no_reference

    key = {"depth": 56, "shortcut": "identity", "block": "basic", "norm": "batch", "width": 16,
           "dataset": "cifar10-jpeg", "protocol": "paper"}
    assert match_reference({**key, "max_steps": 64000})["test_error"] == 6.97
    assert match_reference({**key, "max_steps": 500}) is None
    assert match_reference(key) is None  # length not recorded: not known to be the paper's
    assert _no_reference({**key, "max_steps": 500}) == "– (500 steps; the paper's: 64000)"


def test_the_papers_step_count_is_what_budget_paper_composes(tmp_path):
    from tests.helpers import compose_config

    # the run length `budget=paper` gives a run (He et al. 2015 sec. 4.2: 64k), not a copy of it in report.py
    assert paper_steps() == compose_config("budget=paper", output_dir=tmp_path).trainer.max_steps
    assert load_reference()["schedule_steps"] == paper_steps()  # the length a paper number needs
    assert "Not the paper's schedule" not in setup_markdown([fake_run(tmp_path, 0, 7.0, max_steps=paper_steps())])
    assert f"Not the paper's schedule** ({paper_steps()} steps" in setup_markdown([fake_run(tmp_path, 1, 7.0, max_steps=500)])


def test_welch_p_values_match_the_t_tables():
    # Two-sided 5 % critical values of Student's t (any table): df 1 -> 12.706, 10 -> 2.228, 30 -> 2.042.
    for t, df in ((12.7062047, 1), (2.2281389, 10), (2.0422725, 30)):
        assert t_two_sided_p(t, df) == pytest.approx(0.05, abs=1e-6)
    assert t_two_sided_p(1.0, 1) == pytest.approx(0.5)  # Cauchy: P(|T| > 1) = 1/2
    # Welch by hand: means 2 and 16/3, variances 1 and 7/3, n = 3 each -> t = -10/3 / sqrt(10/9).
    w = welch([1.0, 2.0, 3.0], [4.0, 5.0, 7.0])
    assert w.t == pytest.approx(-3.1622777) and w.df == pytest.approx((10 / 9) ** 2 / ((1 / 9 + 49 / 81) / 2))


def net_run(tmp_path, depth, shortcut, seed, train_error, **fields):
    name = f"plain-{depth}" if shortcut == "none" else f"resnet-{depth}-identity"
    return fake_run(tmp_path, seed, 50.0, run_name=name, depth=depth, shortcut=shortcut, train_error=train_error,
                    **fields)


def test_one_seed_per_side_states_both_numbers_and_is_not_resolved(tmp_path):
    # The old report said "deeper plain net trains WORSE" and "ResNet lower" from these single seeds.
    rows = aggregate([net_run(tmp_path, 20, "none", 0, 40.0), net_run(tmp_path, 56, "none", 0, 50.0),
                      net_run(tmp_path, 56, "identity", 0, 30.0)])
    assert verdicts_markdown(rows).splitlines() == [
        "(i) plain nets train worse as they get deeper:",
        "",
        "- plain-20 40.00 (n=1) vs plain-56 50.00 (n=1): 1 seed, not resolved (a verdict needs >= 3 seeds per side).",
        "",
        "(ii) at equal depth the residual net trains better than the plain one:",
        "",
        "- ResNet-56 30.00 (n=1) vs plain-56 50.00 (n=1): 1 seed, not resolved (a verdict needs >= 3 seeds per side).",
    ]


def test_two_seeds_a_side_show_welchs_p_but_are_not_resolved(tmp_path):
    """2 seeds a side: Welch's p can be computed (here far below 0.05) and is shown, unadjusted,
    but the rule needs 3 seeds a side, so no ordering is stated and nothing enters Holm's family."""
    a, b = (30.0, 30.2), (50.0, 50.4)
    rows = aggregate([net_run(tmp_path, d, "none", seed, e) for d, errors in ((20, a), (56, b))
                      for seed, e in enumerate(errors)])
    p = welch(a, b).p
    assert p < 0.01
    assert verdicts_markdown(rows).splitlines() == [
        "(i) plain nets train worse as they get deeper:",
        "",
        f"- plain-20 30.10 ± 0.14 (n=2) vs plain-56 50.20 ± 0.28 (n=2): 2 seeds, not resolved (a verdict needs "
        f">= 3 seeds per side; Welch's t-test at these seeds: p={p:.2g}, not adjusted).",
    ]


def test_three_seeds_a_side_state_an_ordering_only_beyond_the_spread(tmp_path):
    runs = [net_run(tmp_path, d, s, seed, e) for d, s, errors in (
        (20, "none", (30.0, 31.0, 32.0)), (32, "none", (40.0, 41.0, 42.5)),   # clearly apart
        (20, "identity", (25.0, 35.0, 29.0)), (32, "identity", (30.0, 24.0, 33.0)))  # overlapping
        for seed, e in enumerate(errors)]
    lines = verdicts_markdown(aggregate(runs)).splitlines()
    p_plain = welch([30.0, 31.0, 32.0], [40.0, 41.0, 42.5]).p
    p_res = welch([30.0, 24.0, 33.0], [25.0, 35.0, 29.0]).p
    p_ii = sorted([welch([25.0, 35.0, 29.0], [30.0, 31.0, 32.0]).p, welch([30.0, 24.0, 33.0], [40.0, 41.0, 42.5]).p])
    assert p_plain < 0.001 and p_res > 0.5 and p_plain < p_ii[0]
    # Holm over the report's 4 tests: the smallest p is multiplied by 4, the largest (p_res) by 1
    # but never below the adjusted p before it.
    assert (f"- plain-20 31.00 ± 1.00 (n=3) vs plain-32 41.17 ± 1.26 (n=3): plain-20 lower "
            f"(Welch's t-test, p={p_plain:.2g}, Holm-adjusted p={4 * p_plain:.2g} over 4 tests, alpha 0.05); "
            f"as in Fig. 6 (i).") in lines
    assert (f"- ResNet-32 29.00 ± 4.58 (n=3) vs ResNet-20 29.67 ± 5.03 (n=3): not resolved "
            f"(Welch's t-test, p={p_res:.2g}, Holm-adjusted p={max(p_res, min(1.0, 2 * p_ii[1])):.2g} over 4 tests).") in lines
    # (ii) at depth 20 and 32: 29.67 vs 31 and 29 vs 41.17
    assert sum(line.startswith("- ResNet-") and " vs plain-" in line for line in lines) == 2


def test_holm_adjustment_against_a_hand_computation():
    from residual_lab.results.stats import holm

    # m = 4: sorted 0.01, 0.02, 0.03, 0.04 -> 4 x 0.01, 3 x 0.02, 2 x 0.03, 1 x 0.04, kept monotone.
    assert holm([0.03, 0.01, 0.04, 0.02]) == pytest.approx([0.06, 0.04, 0.06, 0.06])
    # monotone: sorted 0.001 x 3 = 0.003; 0.015 x 2 = 0.03; 0.02 x 1 = 0.02 -> raised to 0.03
    assert holm([0.02, 0.001, 0.015]) == pytest.approx([0.03, 0.003, 0.03])
    assert holm([0.5, 0.9]) == [1.0, 1.0]  # 2 x 0.5 capped at 1; 0.9 kept monotone
    assert holm([]) == []


def test_an_ordering_significant_alone_is_not_resolved_after_holm(tmp_path):
    from residual_lab.results.stats import holm

    # plain-20 vs plain-32 alone: p = 0.042 < 0.05. Beside three more tests of the report it is
    # adjusted (Holm, checked by hand above) to 0.15: "not resolved", not "lower".
    a, b = (30.0, 32.0, 34.0), (35.0, 37.0, 39.5)
    runs = [net_run(tmp_path, d, "none", seed, e) for d, errors in ((20, a), (32, b)) for seed, e in enumerate(errors)]
    p = welch(a, b).p
    assert 0.01 < p < 0.05
    alone = verdicts_markdown(aggregate(runs)).splitlines()
    assert (f"- plain-20 32.00 ± 2.00 (n=3) vs plain-32 37.17 ± 2.25 (n=3): plain-20 lower (Welch's t-test, "
            f"p={p:.2g}, Holm-adjusted p={p:.2g} over 1 test, alpha 0.05); as in Fig. 6 (i).") in alone
    far = [net_run(tmp_path, d, "identity", seed, e) for d, errors in ((20, (31.0, 33.0, 35.0)), (32, (36.0, 38.0, 40.0)))
           for seed, e in enumerate(errors)]
    lines = verdicts_markdown(aggregate(runs + far)).splitlines()
    line = next(x for x in lines if x.startswith("- plain-20"))
    assert line.startswith("- plain-20 32.00 ± 2.00 (n=3) vs plain-32 37.17 ± 2.25 (n=3): not resolved "
                           f"(Welch's t-test, p={p:.2g}, Holm-adjusted p=0.15 over 4 tests).")
    others = [welch((31.0, 33.0, 35.0), a).p, welch((36.0, 38.0, 40.0), b).p, welch((36.0, 38.0, 40.0), (31.0, 33.0, 35.0)).p]
    assert f"{holm([p, *others])[0]:.2g}" == "0.15"


def test_the_registered_statistic_is_the_full_split_error_where_every_run_has_it(tmp_path):
    from residual_lab.report import registered_statistic

    old = [net_run(tmp_path, 20, "none", s, 40.0 + s) for s in range(3)]
    new = [net_run(tmp_path, 32, "none", s, 40.0 + s, train_error_full=10.0 + s) for s in range(3)]
    assert registered_statistic(aggregate(new)) == "train_error_full"
    assert registered_statistic(aggregate(old + new)) == "train_error"  # one record without it: the window
    text = verdicts_markdown(aggregate(new + [net_run(tmp_path, 56, "none", s, 90.0, train_error_full=30.0 + s)
                                              for s in range(3)]))
    assert "- plain-32 11.00 ± 1.00 (n=3) vs plain-56 31.00 ± 1.00 (n=3)" in text


def test_three_depths_add_a_trend_over_depth_to_the_family(tmp_path):
    from scipy.stats import linregress

    errors = {20: (30.0, 31.0, 32.0), 32: (33.0, 34.0, 36.0), 44: (35.0, 38.0, 37.0)}
    runs = [net_run(tmp_path, d, "none", s, e) for d, es in errors.items() for s, e in enumerate(es)]
    lines = verdicts_markdown(aggregate(runs)).splitlines()
    fit = linregress([d for d, es in errors.items() for _ in es], [e for es in errors.values() for e in es])
    line = next(x for x in lines if x.startswith("- trend"))
    assert line.startswith(f"- trend: plain nets, depth 20-44 (3 depths, 9 runs): {fit.slope * 10:+.2f} points per "
                           f"10 layers: deeper higher (least-squares slope on depth, p={fit.pvalue:.2g}, ")
    assert "over 3 tests" in line and line.endswith("as in Fig. 6 (i).")


def test_orderings_compare_only_rows_that_agree_on_everything_else(tmp_path):
    # plain-20 at lr 0.1 and plain-56 at lr 0.05 are not a depth comparison.
    rows = aggregate([net_run(tmp_path, 20, "none", s, 40.0 + s) for s in range(2)]
                     + [net_run(tmp_path, 56, "none", s, 50.0 + s, lr=0.05) for s in range(2)])
    assert verdicts_markdown(rows) == ""


def copy_with_seed(sweep: Path, dst: Path, seed: int, shift: float) -> Path:
    """The sweep as if re-run with another seed on another day (train error shifted by ``shift``)."""
    shutil.copytree(sweep, dst, ignore=shutil.ignore_patterns("checkpoints", "*.png", "report.md"))
    for summary_file in dst.glob("*/summary.json"):
        summary = json.loads(summary_file.read_text())
        summary.update(seed=seed, train_error=summary["train_error"] + shift,
                       train_error_full=summary["train_error_full"] + shift)
        summary_file.write_text(json.dumps(summary))
    return dst


def test_several_sweep_dirs_merge_into_one_report(sweep, tmp_path, capsys):
    second = copy_with_seed(sweep, tmp_path / "day2", seed=1, shift=1.0)
    out = tmp_path / "merged"
    code, _, stderr = report_cli(capsys, sweep, second, "--out", out)
    assert code == 0, stderr
    report = (out / "report.md").read_text()
    assert f"# Report: `{sweep}`, `{second}`" in report and "8 runs: 8 completed." in report
    rows = table_lines(report)
    assert len(rows) == 4 and all(cells(line)[9].endswith("(n=2)") for line in rows)
    first = {r.name: r.summary["train_error_full"] for r in find_runs(sweep)}
    plain8 = next(cells(line) for line in rows if cells(line)[:2] == ["plain", "8"])
    assert plain8[9] == f"{first['plain-8'] + 0.5:.2f} ± {2 ** -0.5:.2f} (n=2)"
    # the same runs given twice are not extra seeds
    twice = write_report([sweep, second, sweep / "0_plain-8"], out=tmp_path / "twice").read_text()
    assert "Not counted, same fields and seed as a run already in the table (1):" not in twice  # same path: once
    copy = shutil.copytree(sweep / "0_plain-8", tmp_path / "again" / "0_plain-8")
    again = write_report([sweep, copy], out=tmp_path / "again_out").read_text()
    assert "Not counted, same fields and seed as a run already in the table (1):" in again
    assert all(cells(line)[9].endswith("(n=1)") for line in table_lines(again))
    # several seeds: the curves are drawn as mean and band
    from matplotlib.collections import PolyCollection

    fig = curves_figure(find_runs([sweep, second]))
    bands = [c for ax in fig.axes for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(bands) == 4 * 2  # train and val error bands of 4 experiments
    code, _, stderr = report_cli(capsys, sweep, second)
    assert code == 2 and "need --out" in stderr


def test_run_records_round_trip(sweep, tmp_path):
    from residual_lab.results.export import main as export_main

    out = tmp_path / "runs"
    assert export_main([str(sweep), "--out", str(out)]) == 0  # python -m residual_lab.results.export
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{n}-seed0" for n in NAMES)
    for run in find_runs(sweep):
        record = out / f"{run.name}-seed0"
        assert sorted(p.name for p in record.iterdir()) == ["curves.csv", "summary.json"]  # no checkpoints, images
        assert sum(p.stat().st_size for p in record.iterdir()) < 30_000
        assert (record / "summary.json").read_bytes() == (run.path / "summary.json").read_bytes()
        back = load_scalars(record, RECORD_TAGS)
        events = load_scalars(run.path, RECORD_TAGS)
        assert set(back) == set(events) >= {"train/loss", "train/error", "val/loss", "val/error", "test/error"}
        for tag, (steps, values) in events.items():
            assert back[tag][0] == steps and back[tag][1] == pytest.approx(values, rel=1e-7)
    # the report of the records is the report of the sweep
    assert table_lines(write_report(out, tmp_path / "r1").read_text()) == table_lines(
        write_report(sweep, tmp_path / "r2").read_text())
    # a record written by the function, directly, reads back as the same run
    one = export_run_record(sweep / "0_plain-8", tmp_path / "one")
    assert find_runs(one)[0].summary == find_runs(sweep)[0].summary
    assert (tmp_path / "r1" / "curves.png").stat().st_size > 10_000


def test_records_named_by_a_template_of_their_identifying_fields(sweep, tmp_path, capsys):
    """The budget ladder's records carry their budget in the name, so rungs do not collide."""
    from residual_lab.results.export import main as export_main

    out = tmp_path / "runs"
    assert export_main([str(sweep), "--out", str(out), "--name", "{run_name}-steps{max_steps}-seed{seed}"]) == 0
    (steps,) = {r.summary["max_steps"] for r in find_runs(sweep)}
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{n}-steps{steps}-seed0" for n in NAMES)
    assert export_main([str(sweep), "--out", str(out), "--name", "{run_name}-{budget}"]) == 2
    assert capsys.readouterr().err.startswith("residual_lab.results.export: --name '{run_name}-{budget}' names a "
                                              "field a summary does not identify a run by ('budget'); fields: run_name,")


def test_warmup_resolvers_scale_with_the_budget():
    assert [scale_steps(400, m, 64000) for m in (64000, 16000, 500, 40)] == [400, 100, 3, 1]
    assert scale_steps(0, 500, 64000) == 0
    assert (if_at_least(110, 110, "a", "b"), if_at_least(56, 110, "a", "b")) == ("a", "b")


@pytest.mark.slow  # the default suite runs the notebook twice in tests/test_notebook.py (records, a sweep dir)
def test_notebook_runs_on_a_sweep(sweep, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(ROOT / "notebooks" / "analysis.ipynb", as_version=4)
    monkeypatch.setenv("RESIDUAL_LAB_SWEEP", str(sweep))
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "runs: 4 (completed: 4)" in outputs
    assert "plain-14" in outputs and "resnet-14-identity" in outputs


def test_orderings_of_each_block_are_headed_by_the_block(tmp_path):
    """Pre-LN and post-LN ViTs in one sweep: both groups were headed "the rest"."""
    runs = [fake_run(tmp_path, seed, 60.0 + depth / 10 + (20 if shortcut == "none" else 0), depth=depth,
                     shortcut=shortcut, block=block, run_name=f"{shortcut}-{depth}-{block}")
            for block in ("preln", "postln") for depth in (2, 4) for shortcut in ("none", "identity")
            for seed in (0, 1, 2)]
    text = verdicts_markdown(aggregate(runs))
    assert [line for line in text.splitlines() if line.startswith("**")] == ["**block=postln**", "**block=preln**"]


def test_slope_difference_is_the_interaction_term_of_one_least_squares_fit():
    """Hand route: y ~ 1 + a + x + a*x by lstsq on the full design matrix; the a*x coefficient,
    its standard error s^2 (X'X)^-1 and the t-test on n - 4 df must equal slope_difference's."""
    import numpy as np
    from scipy import stats as sps

    from residual_lab.results.stats import slope_difference

    x = [np.log2(s) for s in (500, 1500, 3000, 6000) for _ in range(3)]
    deep = [80.1, 78.0, 83.2, 70.5, 68.8, 71.9, 66.0, 63.1, 64.4, 60.2, 58.8, 61.7]
    shallow = [50.0, 49.1, 51.3, 33.0, 32.2, 34.9, 28.1, 27.0, 29.5, 24.3, 23.9, 26.0]
    X = np.array([[1, a, xi, a * xi] for a, ys in ((1, deep), (0, shallow)) for xi, _ in zip(x, ys)])
    y = np.array(deep + shallow)
    beta, rss, *_ = np.linalg.lstsq(X, y, rcond=None)
    n, k = X.shape
    se = np.sqrt(rss[0] / (n - k) * np.linalg.inv(X.T @ X)[3, 3])
    p = 2 * sps.t.sf(abs(beta[3] / se), n - k)
    fit = slope_difference(x, deep, x, shallow)
    assert fit.difference == pytest.approx(beta[3], rel=1e-12)
    assert fit.p == pytest.approx(p, rel=1e-9)
    assert fit.n == 24
    with pytest.raises(ValueError, match="needs >= 2 budgets per net"):
        slope_difference([9.0, 9.0, 9.0], [1.0, 2.0, 3.0], x, shallow)


def ladder_runs(tmp_path, errors: dict, seeds: int = 3):
    """plain-20/56 at each budget of ``errors`` ({steps: (plain-20 mean, plain-56 mean)}), seeds
    spread by -1, 0, +1 points around the mean."""
    return [net_run(tmp_path, depth, "none", s, 50.0, max_steps=steps, train_error_full=mean + s - 1)
            for steps, means in errors.items() for depth, mean in zip((20, 56), means) for s in range(seeds)]


def test_a_gap_that_grows_with_the_budget_is_stated_with_the_budget_test(tmp_path):
    from residual_lab.results.stats import slope_difference

    errors = {500: (50.0, 80.0), 1500: (33.0, 70.0), 6000: (24.0, 68.0)}
    text = verdicts_markdown(aggregate(ladder_runs(tmp_path, errors)))
    line = next(x for x in text.splitlines() if x.startswith("- plain-56 minus plain-20"))
    x = [math.log2(s) for s in errors for _ in range(3)]
    fit = slope_difference(x, [m[1] + s - 1 for m in errors.values() for s in range(3)],
                           x, [m[0] + s - 1 for m in errors.values() for s in range(3)])
    assert line.startswith(f"- plain-56 minus plain-20, 3 budgets, 18 runs: gap +30.00 at 500, +37.00 at 1500, "
                           f"+44.00 at 6000 steps: {fit.difference:+.2f} points per doubling of the budget: the gap "
                           f"grows (difference of least-squares slopes on log2(steps), p={fit.p:.2g}, Holm-adjusted p=")
    assert line.endswith("the deeper plain net falls further behind as training lengthens (degradation grows).")
    assert "(iv) the deeper-minus-shallower gap against the budget" in text
    # in the same Holm family as the three per-budget comparisons (plain-20 vs plain-56 at each budget)
    assert "over 4 tests" in line


def test_a_budget_with_2_seeds_is_left_out_of_the_gap_test_and_named(tmp_path):
    """A rung still running (2 seeds of both nets at 1500 steps) neither enters the slope fit nor
    erases the verdict of the complete rungs: the fit is the one over 500 and 6000 steps alone."""
    from residual_lab.results.stats import slope_difference

    runs = ladder_runs(tmp_path / "a", {500: (50.0, 80.0), 6000: (24.0, 68.0)})
    runs += ladder_runs(tmp_path / "b", {1500: (33.0, 70.0)}, seeds=2)
    line = next(x for x in verdicts_markdown(aggregate(runs)).splitlines() if x.startswith("- plain-56 minus"))
    x = [math.log2(s) for s in (500, 6000) for _ in range(3)]
    fit = slope_difference(x, [m + s - 1 for m in (80.0, 68.0) for s in range(3)],
                           x, [m + s - 1 for m in (50.0, 24.0) for s in range(3)])
    assert line.startswith("- plain-56 minus plain-20, 2 budgets, 12 runs: gap +30.00 at 500, +44.00 at 6000 steps "
                           "(not in the fit until both nets have 3 seeds there: +37.00 at 1500, fewest seeds 2): "
                           f"{fit.difference:+.2f} points per doubling of the budget: the gap grows (difference of "
                           f"least-squares slopes on log2(steps), p={fit.p:.2g}, Holm-adjusted p=")


def test_a_gap_against_budget_with_one_complete_budget_is_not_resolved(tmp_path):
    runs = ladder_runs(tmp_path / "a", {500: (50.0, 80.0)})
    runs += ladder_runs(tmp_path / "b", {1500: (33.0, 70.0), 6000: (24.0, 68.0)}, seeds=2)
    line = next(x for x in verdicts_markdown(aggregate(runs)).splitlines() if x.startswith("- plain-56 minus"))
    assert line == ("- plain-56 minus plain-20, 3 budgets, 14 runs: gap +30.00 at 500, +37.00 at 1500, +44.00 at "
                    "6000 steps: not resolved (a gap against budget needs >= 2 budgets with >= 3 seeds of both nets; "
                    "here 1 of 3 budget(s), fewest seeds 2).")


def test_the_setup_lists_the_budgets_in_numeric_order_whatever_order_the_folders_come_in(tmp_path):
    # the ladder's report reads its 1500/3000-step folder before fig6's 500-step records
    runs = [fake_run(tmp_path, 0, 7.0, max_steps=1500), fake_run(tmp_path, 1, 7.0, max_steps=3000),
            fake_run(tmp_path, 2, 7.0, max_steps=500)]
    assert "steps (trainer.max_steps): 500 (1 runs), 1500 (1 runs), 3000 (1 runs);" in setup_markdown(runs)


def test_slope_difference_hc3_is_the_sandwich_estimator_of_the_whole_design():
    """Hand route: the HC3 sandwich (X'X)^-1 X' diag(e^2/(1-h)^2) X (X'X)^-1 of the full 4-column
    design (leverages from the hat matrix), against the package's per-fit closed form."""
    import numpy as np
    from scipy import stats as sps

    from residual_lab.results.stats import slope_difference, slope_difference_hc3

    x = [np.log2(s) for s in (500, 1500, 3000) for _ in range(3)]
    deep = [74.1, 82.9, 82.3, 68.8, 67.3, 65.7, 61.7, 59.2, 57.6]  # wide at the first budget
    shallow = [51.4, 49.4, 49.1, 32.9, 32.4, 33.4, 23.1, 22.9, 22.8]
    X = np.array([[1, a, xi, a * xi] for a, ys in ((1, deep), (0, shallow)) for xi, _ in zip(x, ys)])
    y = np.array(deep + shallow)
    inverse = np.linalg.inv(X.T @ X)
    beta = inverse @ X.T @ y
    e, h = y - X @ beta, np.diag(X @ inverse @ X.T)
    se = np.sqrt((inverse @ X.T @ np.diag(e**2 / (1 - h) ** 2) @ X @ inverse)[3, 3])
    fit = slope_difference_hc3(x, deep, x, shallow)
    assert fit.difference == pytest.approx(beta[3], rel=1e-12)
    assert fit.p == pytest.approx(2 * sps.t.sf(abs(beta[3] / se), len(y) - 4), rel=1e-9)
    assert fit.p != pytest.approx(slope_difference(x, deep, x, shallow).p, rel=0.1)  # not the pooled test
    with pytest.raises(ValueError, match="needs >= 3 budgets per net"):
        slope_difference_hc3(x[3:], deep[3:], x, shallow)
