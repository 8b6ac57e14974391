"""Read a run or a sweep without opening TensorBoard: ``report.md`` and PNG figures.

    python -m residual_lab.report logs/multiruns/2026-11-23/10-36-00
    python -m residual_lab.report /work/runs/fig6_cpu --out experiments/fig6

Writes, next to the runs (or into ``--out``): ``report.md`` with a table like He et al.
2015 Table 6 (mean +- std over seeds, the paper's figure and the difference), the runs that
did not complete with their step and reason, and the figures ``curves.png`` (Fig. 6-style)
and ``profiles.png`` (per-layer gradient profiles). Works on a sweep still running: it
reports what exists and lists the rest as incomplete.
"""

from __future__ import annotations

import argparse
import io
import sys
from collections import Counter
from pathlib import Path

from residual_lab.results import Row, aggregate, find_runs, load_reference
from residual_lab.results.loading import Run
from residual_lab.results.plots import curves_figure, profiles_figure
from residual_lab.results.tables import fmt_mean_std
from residual_lab.io import atomic_write

CURVES_PNG, PROFILES_PNG, REPORT_MD = "curves.png", "profiles.png", "report.md"
PAPER_STEPS = 64000  # He et al. 2015 sec. 4.2 (conf/budget/paper.yaml)


def save_figure(fig, path: Path, dpi: int = 90) -> Path:
    """Atomically write a matplotlib figure as PNG (small: dpi 90)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return atomic_write(path, lambda f: f.write(buf.getvalue()), mode="wb")


def _net(shortcut: str) -> str:
    return "plain" if shortcut == "none" else "ResNet"


def table_markdown(rows: list[Row]) -> str:
    """The Table-6-like comparison, one row per net (errors in %, mean ± sample std over seeds)."""
    papers = load_reference()["papers"]
    lines = ["| net | depth | shortcut | block | norm | params (ours / paper) | seeds | train error % "
             "| test error % | paper test error % | difference (pp) | paper source |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        k, ref = row.key, row.reference
        params = f"{row.params / 1e6:.2f}M" if row.params else "–"
        if ref:
            params += f" / {ref['params_m']}M" if ref.get("params_m") is not None else ""
            paper = f"{ref['test_error']:.2f}"
            if ref.get("test_error_mean") is not None:
                paper += f" (best of {ref.get('runs', '?')}; mean {ref['test_error_mean']:.2f} ± {ref['test_error_std']:.2f})"
            source = f"{ref['paper'].replace('he', 'He et al. ')} {ref['source']}"
        else:
            paper = "– (Fig. 6 curves only)" if k["shortcut"] == "none" and k["norm"] == "batch" else "–"
            source = "–"
        diff = row.difference
        lines.append(
            f"| {_net(k['shortcut'])} | {k['depth']} | {k['shortcut']} | {k['block']} | {k['norm']} "
            f"| {params} | {row.n} | {fmt_mean_std(row.mean('train_error'), row.std('train_error'))} "
            f"| {fmt_mean_std(row.mean('test_error'), row.std('test_error'))} | {paper} "
            f"| {'–' if diff is None else f'{diff:+.2f}'} | {source} |")
    cited = sorted({row.reference["paper"] for row in rows if row.reference})
    lines += [""] + [f"{papers[key]}.  " for key in cited]
    return "\n".join(lines)


def degradation_markdown(rows: list[Row]) -> str:
    """He et al. 2015 Fig. 6's two claims, checked on our final training errors (mean over seeds):
    the deepest plain net trains worse than the shallowest, and at each depth the residual
    net (identity shortcuts) trains better than the plain one. Empty if the sweep has no plain nets."""
    base = [r for r in rows if r.key["block"] == "basic" and r.key["norm"] == "batch" and int(r.key["width"]) == 16]
    plain = {int(r.key["depth"]): r for r in base if r.key["shortcut"] == "none"}
    resnet = {int(r.key["depth"]): r for r in base if r.key["shortcut"] == "identity"}
    lines = []
    if len(plain) >= 2:
        lo, hi = plain[min(plain)], plain[max(plain)]
        a, b = lo.mean("train_error"), hi.mean("train_error")
        lines.append(f"- plain-{max(plain)} train error {b:.2f}% vs plain-{min(plain)} {a:.2f}%: deeper plain net "
                     f"{'trains WORSE (degradation, as in Fig. 6)' if b > a else 'trains better (no degradation seen)'}.")
    for depth in sorted(set(plain) & set(resnet)):
        p, r = plain[depth].mean("train_error"), resnet[depth].mean("train_error")
        lines.append(f"- depth {depth}: ResNet train error {r:.2f}% vs plain {p:.2f}%: ResNet "
                     f"{'lower (as in Fig. 6)' if r < p else 'NOT lower'}.")
    return "\n".join(lines)


def problems_markdown(runs: list[Run]) -> str:
    """Runs that did not complete: status, the step they reached and why (never dropped)."""
    bad = [r for r in runs if r.status != "completed"]
    if not bad:
        return "All runs completed."
    lines = ["| run | seed | status | step | reason | directory |", "|---|---|---|---|---|---|"]
    for r in bad:
        if r.summary is None:
            status, step, reason = "no summary (incomplete)", "–", "no summary.json: killed or still running"
        else:
            status = r.status
            step = r.summary.get("steps", "–")
            reason = r.summary.get("reason") or r.summary.get("error") or "–"  # run.py writes `reason`
        reason = str(reason).replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {r.name} | {r.get('seed', '–')} | {status} | {step} | {reason} | `{r.path.name}` |")
    return "\n".join(lines)


def setup_markdown(runs: list[Run]) -> str:
    """What the numbers are: steps, batch, data, precision, as they appear in the summaries."""
    done = [r for r in runs if r.summary]
    if not done:
        return "No run has finished yet."

    def values(key: str) -> str:
        counts = Counter(str(r.summary.get(key)) for r in done)
        return ", ".join(f"{v}" if len(counts) == 1 else f"{v} ({n} runs)" for v, n in counts.items())

    text = (f"steps (trainer.max_steps): {values('max_steps')}; batch: {values('batch_size')}; "
            f"data: {values('data')}; optimizer: {values('optimizer')} lr {values('lr')}; "
            f"precision: {values('precision')}.")
    if any(r.summary.get("max_steps") != PAPER_STEPS for r in done):
        text += (f"  \n**Not the paper's schedule** ({PAPER_STEPS} steps): differences from the paper's "
                 "figures measure the shorter budget, not the implementation.")
    return text


def write_report(root: str | Path, out: str | Path | None = None) -> Path:
    """Build the report of every run under ``root``; return the path of report.md."""
    root = Path(root)
    out = Path(out) if out else root
    runs = find_runs(root)
    rows = aggregate(runs)
    statuses = Counter("no summary (incomplete)" if r.summary is None else r.status for r in runs)
    parts = [
        f"# Report: `{root}`",
        "",
        f"{len(runs)} runs: " + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())) + ".  ",
        setup_markdown(runs),
        "",
        "## Errors (He et al. 2015 Table 6 layout)",
        "",
        "Completed runs only, grouped over seeds: mean ± sample std (n - 1) when there are several. "
        "Train error: mean over the last logging window of training (`trainer.log_every_n_steps` steps). "
        "Test error: the data set's test split, with the checkpoint of best validation error. "
        "Difference: our mean minus the paper's figure (its mean where it gives one), percentage points.",
        "",
        table_markdown(rows) if rows else "No completed runs yet.",
        "",
    ]
    if check := degradation_markdown(rows):
        parts += ["### Fig. 6 in numbers (final training error, mean over seeds)", "", check, ""]
    parts += [
        "## Runs that did not complete",
        "",
        problems_markdown(runs),
        "",
        "## Curves (He et al. 2015 Fig. 6 style)",
        "",
    ]
    if any(r.scalars for r in runs):
        save_figure(curves_figure(runs), out / CURVES_PNG)
        parts += [f"![curves]({CURVES_PNG})", "",
                  "Dashed, thin: training error (TensorBoard `train/error`, mean over the logging window). "
                  "Bold: validation error (`val/error`, the 5k images held out of the training set; the paper's "
                  "Fig. 6 plots test error, which we evaluate only once, at the end: the star, `test/error`). "
                  "Left: plain nets; right: residual nets; one colour per depth."]
    else:
        parts.append("No TensorBoard scalars found.")
    parts += ["", "## Per-layer gradient profiles (last measurement)", ""]
    fig = profiles_figure(runs)
    if fig is not None:
        save_figure(fig, out / PROFILES_PNG)
        parts += [f"![profiles]({PROFILES_PNG})", "",
                  "From summary.json `diagnostics.grad_norm` (weight-gradient norm per conv/linear layer) and "
                  "`diagnostics.block_grad` (norm of dL/dx at each block input), at the last measured step, "
                  "against relative depth; one line per run, dotted for plain nets."]
    else:
        parts.append("No run recorded per-layer gradient diagnostics (summary.json `diagnostics.grad_norm` / "
                     "`diagnostics.block_grad` absent or empty): skipped.")
    text = "\n".join(parts) + "\n"
    return atomic_write(out / REPORT_MD, lambda f: f.write(text))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", help="a run directory or a multirun (sweep) directory")
    parser.add_argument("--out", help="where to write report.md and the figures (default: root)")
    args = parser.parse_args(argv)
    try:
        path = write_report(args.root, args.out)
    except FileNotFoundError as err:
        print(f"residual_lab.report: {err}", file=sys.stderr)
        return 2
    print(path.read_text(), end="")
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
