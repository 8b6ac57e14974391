"""Read a run or a sweep without opening TensorBoard: ``report.md`` and PNG figures.

    python -m residual_lab.report logs/multiruns/2026-11-23/10-36-00
    python -m residual_lab.report <sweep dir, seed 0> <sweep dir, seeds 1-2> --out experiments/fig6
    python -m residual_lab.report experiments/fig6/runs --out experiments/fig6

Writes, next to the runs (or into ``--out``): ``report.md`` with a table like He et al.
2015 Table 6 (mean +- std and n over seeds, the protocol, the paper's figure with its
statistic where the run is the paper's experiment), Fig. 6's orderings with a significance
verdict each, the runs that did not complete with their step and reason, and the figures
``curves.png`` (Fig. 6-style, mean +- band over seeds) and ``profiles.png`` (per-layer
gradient profiles), and a table per analysis (``python -m residual_lab.analyze``) whose
records it finds under the same directories. Several directories (sweeps run on different days, committed run
records) merge into one report. Works on a sweep still running: it reports what exists
and lists the rest as incomplete.
"""

from __future__ import annotations

import argparse
import io
import sys
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Sequence

from omegaconf import OmegaConf

from residual_lab.conf_dir import CONFIG_DIR
from residual_lab.console import program
from residual_lab.errors import UserFacingError, entry_point
from residual_lab.io import atomic_write
from residual_lab.results import Row, aggregate, find_runs, load_reference
from residual_lab.results.analyses import analyses_markdown, find_analyses
from residual_lab.results.curvature_verdicts import twin_markdown, twin_orderings
from residual_lab.results.loading import Run
from residual_lab.results.plots import (budget_figure, curves_figure, depth_figure, numbers_first, profiles_figure,
                                       token_stats_figure)
from residual_lab.results.reference import CIFAR10_NAMES, describe
from residual_lab.results.stats import ADJUSTMENT, ALPHA, MIN_SEEDS, REGISTERED, TEST_NAME, WINDOW
from residual_lab.results.tables import (NET_FIELDS, Ordering, adjust, budget_gap, budget_ladders, compare, trend,
                                        varying_fields)

CURVES_PNG, PROFILES_PNG, DEPTH_PNG, BUDGET_PNG, TOKENS_PNG, REPORT_MD = (
    "curves.png", "profiles.png", "depth.png", "budget.png", "tokens.png", "report.md")
#: What each protocol's test error is (summary.json ``protocol``: what ran,
#: :func:`residual_lab.summary.protocol_of`); the split sizes are the records' own (:func:`split_text`).
PROTOCOLS = {
    "paper": "the paper's: every training image trains, fixed schedule, test error of the final weights "
             "(He et al. 2015 sec. 4.2)",
    "heldout": "training images split into train/val, test error of the checkpoint with the best validation error",
    "heldout-final": "training images split into train/val, yet test error of the final weights (no "
                     "best-validation checkpoint was tested)",
}


@lru_cache(maxsize=None)
def paper_steps() -> int:
    """The paper's run length, from ``conf/budget/paper.yaml`` (He et al. 2015 sec. 4.2: 64k steps)."""
    return int(OmegaConf.load(Path(CONFIG_DIR) / "budget" / "paper.yaml").trainer.max_steps)


def save_figure(fig, path: Path, dpi: int = 90) -> Path:
    """Atomically write a matplotlib figure as PNG (small: dpi 90)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return atomic_write(path, lambda f: f.write(buf.getvalue()), mode="wb")


def _no_reference(key: dict) -> str:
    """Why a row has no paper number (never the number itself: it is not the paper's experiment)."""
    if str(key.get("dataset")) not in CIFAR10_NAMES:
        return f"– (data set {key.get('dataset')})"
    if key.get("protocol") != "paper":
        return f"– ({key.get('protocol')} protocol)"
    steps = load_reference()["schedule_steps"]
    if str(key.get("max_steps")) != str(steps):
        return f"– ({key.get('max_steps')} steps; the paper's: {steps})"
    if key["shortcut"] == "none" and key["norm"] == "batch":
        return "– (Fig. 6 curves only)"
    return "–"


def table_markdown(rows: list[Row], statistic: str | None = None) -> str:
    """The Table-6-like comparison, one row per experiment (errors in %, mean ± sample std (n));
    the train error column is the report's registered statistic (:func:`registered_statistic`)."""
    papers = load_reference()["papers"]
    statistic = statistic or registered_statistic(rows)
    lines = ["| net | depth | shortcut | block | norm | differs within the sweep | dataset | protocol "
             f"| params (ours / paper) | train error % (`{statistic}`) | test error % | paper test error % (statistic) "
             "| difference (pp) | paper source |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        k, ref = row.key, row.reference
        params = f"{row.params / 1e6:.2f}M" if row.params else "–"
        if ref:
            params += f" / {ref['params_m']}M" if ref.get("params_m") is not None else ""
            paper = describe(ref) + (f"; {ref['caveat']}" if ref.get("caveat") else "")
            source = f"{ref['paper'].replace('he', 'He et al. ')} {ref['source']}"
        else:
            paper, source = _no_reference(k), "–"
        diff = row.difference
        lines.append(
            f"| {row.net.split('-')[0]} | {k['depth']} | {k['shortcut']} | {k['block']} | {k['norm']} | {row.label} "
            f"| {k['dataset']} | {k['protocol']} | {params} | {row.cell(statistic)} | {row.cell('test_error')} "
            f"| {paper} | {'–' if diff is None else f'{diff:+.2f}'} | {source} |")
    cited = sorted({row.reference["paper"] for row in rows if row.reference})
    lines += [""] + [f"{papers[key]}.  " for key in cited]
    return "\n".join(lines)


#: The fields that tell the nets of one Fig. 6 comparison apart; every other field is shared.
_NET = ("run_name", "depth", "shortcut")


def heading(lines: list[str], text: str) -> None:
    """A paragraph before a list, blank lines around it (else Markdown folds it into the list above)."""
    lines += [*([""] if lines else []), text, ""]


def _context(row: Row) -> tuple:
    return tuple((k, v) for k, v in row.key.items() if k not in _NET)


def unmeasured(rows: Sequence[Row]) -> list[Run]:
    """Runs whose record postdates ``train_error_full`` but lacks it: summaries rebuilt from a
    damaged one where the run's data could not be read to evaluate the final weights
    (:mod:`residual_lab.summary_repair`, ``not_rebuilt``). They do not decide the statistic."""
    return [r for row in rows for r in row.runs if r.summary.get(REGISTERED) is None and r.summary.get("not_rebuilt")]


def registered_statistic(rows: Sequence[Row]) -> str:
    """The report's training-error statistic, decided by the rule, not by the data:
    ``train_error_full`` (final weights, eval mode, whole training split) unless a record
    predates it (summary_version < 3: only the last-window ``train_error``, which was those
    experiments' registered statistic), so a report of such records uses that and says so
    (docs/reproducing.md, "How the report decides"). A rebuilt summary that could not measure
    it (:func:`unmeasured`) is left out of the statistic's cells, named, and changes nothing."""
    runs = [r for row in rows for r in row.runs]
    missing = {id(r) for r in unmeasured(rows)}
    return REGISTERED if runs and all(r.summary.get(REGISTERED) is not None or id(r) in missing
                                      for r in runs) else WINDOW


STATISTIC_TEXT = {
    REGISTERED: "`train_error_full`: the final weights' training error in eval mode on the whole, "
                "unaugmented training split",
    WINDOW: "`train_error`: the mean training error over the last logging window (train mode, augmented "
            "batches; these records predate `train_error_full`, and this was their registered statistic)",
}


def verdicts_markdown(rows: list[Row], metric: str | None = None, extra: Sequence[Ordering] = ()) -> str:
    """He et al. 2015 Fig. 6's orderings, each adjacent pair with its verdict:

    (i) plain nets train worse as they get deeper (plain-20 < plain-32 < plain-44 < plain-56);
    (ii) at equal depth the residual net trains better (ResNet-d < plain-d);
    (iii) residual nets do not degrade (ResNet-56 <= ResNet-44 <= ResNet-32 <= ResNet-20);

    plus, where a net family has 3 or more depths, the trend of the statistic over depth (its
    least-squares slope), and (iv) where the same nets ran at several budgets, whether the
    deepest-minus-shallowest gap shrinks or grows with the budget (:func:`_budget_gaps`). Compared only between rows that agree on every other field (data set,
    protocol, lr, budget, ...). Every test of the report is one family for Holm's adjustment
    (:mod:`residual_lab.results.stats`); an ordering is stated only when its adjusted p is below
    alpha with >= 3 seeds a side. Empty if no pair exists. ``extra``: the report's other tests
    (:mod:`~residual_lab.results.curvature_verdicts`), adjusted in the same family, shown elsewhere.
    """
    metric = metric or registered_statistic(rows)
    contexts: dict[tuple, list[Row]] = {}
    for row in rows:
        contexts.setdefault(_context(row), []).append(row)
    differ = {k for ctx in contexts for k, _ in ctx if len({dict(c).get(k) for c in contexts}) > 1}
    out: list = []  # strings, and (ordering, verdicts) pairs rendered once the family is adjusted
    tests: list[Ordering] = list(extra)

    def add(lines: list, o: Ordering, verdicts: dict[str, str]) -> None:
        tests.append(o)
        lines.append((o, verdicts))

    for ctx, ctx_rows in contexts.items():
        plain = {int(r.key["depth"]): r for r in ctx_rows if r.key["shortcut"] == "none"}
        residual: dict[str, dict[int, Row]] = {}
        for r in ctx_rows:
            if r.key["shortcut"] != "none":
                residual.setdefault(str(r.key["shortcut"]), {})[int(r.key["depth"])] = r
        tag = (lambda s: f" ({s})") if len(residual) > 1 else (lambda s: "")
        lines: list = []
        depths = sorted(plain)
        if len(depths) >= 2:
            heading(lines, "(i) plain nets train worse as they get deeper:")
            for lo, hi in zip(depths, depths[1:]):
                add(lines, compare(plain[lo], plain[hi], metric, (f"plain-{lo}", f"plain-{hi}")),
                    {"lower": "as in Fig. 6 (i)", "higher": "the opposite of Fig. 6 (i)"})
            if len(depths) >= 3:
                add(lines, trend([plain[d] for d in depths], metric, "trend: plain nets"),
                    {"higher": "as in Fig. 6 (i)", "lower": "the opposite of Fig. 6 (i)"})
        for shortcut, res in residual.items():
            both = sorted(set(plain) & set(res))
            if both:
                heading(lines, f"(ii) at equal depth the residual net{tag(shortcut)} trains better than the plain one:")
            for d in both:
                add(lines, compare(res[d], plain[d], metric, (f"ResNet-{d}{tag(shortcut)}", f"plain-{d}")),
                    {"lower": "as in Fig. 6 (ii)", "higher": "the opposite of Fig. 6 (ii)"})
            rd = sorted(res)
            if len(rd) >= 2:
                heading(lines, f"(iii) residual nets{tag(shortcut)} do not degrade with depth (deeper <= shallower):")
            for lo, hi in zip(rd, rd[1:]):
                add(lines, compare(res[hi], res[lo], metric, (f"ResNet-{hi}{tag(shortcut)}", f"ResNet-{lo}{tag(shortcut)}")),
                    {"lower": "as in Fig. 6 (iii)", "higher": "the deeper ResNet degrades, unlike Fig. 6 (iii)"})
            if len(rd) >= 3:
                add(lines, trend([res[d] for d in rd], metric, f"trend: residual nets{tag(shortcut)}"),
                    {"lower": "as in Fig. 6 (iii)", "higher": "deeper ResNets degrade, unlike Fig. 6 (iii)"})
        if lines:
            # what tells this group from the others (norm=none, block=postln), else the row's label
            label = ", ".join(f"{k}={v}" for k, v in ctx if k in differ) or ctx_rows[0].label
            if len(contexts) > 1 or label != "–":
                out += [f"**{label}**", ""]
            out += lines + [""]
    out += _budget_gaps(rows, metric, add)
    adjust(tests)
    text = []
    for item in out:
        if isinstance(item, str):
            text.append(item)
            continue
        o, verdicts = item
        verdict = verdicts.get(o.outcome)
        text.append(f"- {o.text}" + (f"; {verdict}." if verdict else "."))
    return "\n".join(text).rstrip()


#: What a change of the deeper-minus-shallower gap with the budget means, plain and residual.
_BUDGET_VERDICTS = {
    "none": {"lower": "the deeper plain net catches up as training lengthens (degradation fades)",
             "higher": "the deeper plain net falls further behind as training lengthens (degradation grows)"},
    "residual": {"lower": "the deeper ResNet gains on the shallower one as training lengthens",
                 "higher": "the deeper ResNet falls further behind as training lengthens"},
}


def _budget_gaps(rows: Sequence[Row], metric: str, add) -> list:
    """(iv), for rows that ran at several budgets (``trainer.max_steps``) and agree on every
    other field (:func:`~residual_lab.results.tables.budget_ladders`): does the
    deepest-minus-shallowest gap of each net family shrink or grow with the budget
    (:func:`~residual_lab.results.tables.budget_gap`)? The budget ladder's question
    (experiments/ladder/), decided in the report's one Holm family with its other tests."""
    ladders = budget_ladders(rows)
    out: list = []
    for rest, nets in ladders.items():
        lines: list = []
        for shortcut in sorted({s for s, _ in nets}, key=lambda s: (s != "none", s)):
            depths = sorted(d for s, d in nets if s == shortcut)
            deep, shallow = nets[(shortcut, depths[-1])], nets[(shortcut, depths[0])]
            if len(depths) < 2 or len(set(deep) & set(shallow)) < 2:
                continue
            if not lines:
                heading(lines, "(iv) the deeper-minus-shallower gap against the budget (trainer.max_steps):")
            name = (f"plain-{depths[-1]} minus plain-{depths[0]}" if shortcut == "none"
                    else f"ResNet-{depths[-1]} minus ResNet-{depths[0]}" + (f" ({shortcut})" if shortcut != "identity" else ""))
            add(lines, budget_gap(deep, shallow, metric, name),
                _BUDGET_VERDICTS["none" if shortcut == "none" else "residual"])
        if lines:
            label = ", ".join(f"{k}={v}" for k, v in rest if len({dict(r).get(k) for r in ladders}) > 1)
            out += ([f"**{label}, all budgets**", ""] if label else ["**all budgets**", ""]) + lines + [""]
    return out


def problems_markdown(runs: list[Run]) -> str:
    """Runs that did not complete: status, the step they reached and why (never dropped)."""
    bad = [r for r in runs if r.status != "completed" or r.damaged]
    if not bad:
        return "All runs completed."
    # What tells runs of the same net apart (init, lr, ...), as the errors table's label does.
    differ = [k for k in varying_fields(runs, completed_only=False) if k not in NET_FIELDS]
    lines = ["| run | seed | status | step | reason | directory |", "|---|---|---|---|---|---|"]
    for r in bad:
        name = r.name + (f" ({', '.join(f'{k}={r.get(k)}' for k in differ)})" if differ and r.summary else "")
        if r.damaged and r.summary is None:
            status, step, reason = "damaged", "–", (f"summary.json unreadable ({r.damaged}) and no finished "
                                                    "checkpoint to rebuild it from")
        elif r.damaged:
            status, step = f"{r.status} (summary rebuilt)", r.summary.get("steps", "–")
            reason = "summary.json was damaged; read from checkpoints/last.ckpt and the TensorBoard events"
        elif r.summary is None:
            status, step, reason = "no summary (incomplete)", "–", "no summary.json: killed or still running"
        else:
            status = r.status
            step = r.summary.get("steps", "–")
            reason = r.summary.get("reason") or r.summary.get("error") or "–"  # run.py writes `reason`
        reason = str(reason).replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {name} | {r.get('seed', '–')} | {status} | {step} | {reason} | `{r.path.name}` |")
    return "\n".join(lines)


def setup_markdown(runs: list[Run]) -> str:
    """What the numbers are: protocol, data, steps, batch, precision, as the summaries state them."""
    done = [r for r in runs if r.summary]
    if not done:
        return "No run has finished yet."

    def values(key: str) -> str:
        counts = Counter(r.get(key) for r in done)  # 500 before 1500, in whatever order the folders came
        return ", ".join(f"{v}" if len(counts) == 1 else f"{v} ({n} runs)"
                         for v, n in sorted(counts.items(), key=lambda vn: numbers_first(vn[0])))

    lines = ["Protocol of the test errors:"]
    for protocol, n in sorted(Counter(str(r.get("protocol")) for r in done).items()):
        runs_of = [r for r in done if str(r.get("protocol")) == protocol]
        old = sum(1 for r in runs_of if "protocol" in r.derived)
        note = (f"; {old} of them predate summary.json's `protocol` field and are taken as heldout "
                "(every earlier run held out part of the training images)") if old else ""
        what = PROTOCOLS.get(protocol, "not a protocol this report knows")
        lines.append(f"- **{protocol}** ({n} runs{note}): {what}; {split_text(runs_of)}.")
    old_data = sum(1 for r in done if "dataset" in r.derived)
    named = f" ({old_data} named from the old `data` field)" if old_data else ""
    lines += ["", f"dataset: {values('dataset')}{named}; steps (trainer.max_steps): {values('max_steps')}; "
              f"batch per process: {values('batch_size')}; processes (world size): {values('world_size')}; "
              f"global batch: {values('global_batch')}; data source: {values('data')}; "
              f"optimizer: {values('optimizer')} lr {values('lr')}; "
              f"init: {values('init')}; precision (as run): {values('precision')}."]
    if old_world := sum(1 for r in done if "world_size" in r.derived):
        lines[-1] += (f" {old_world} runs predate summary.json's `world_size` (summary_version < 4) and are taken as "
                      "1 process; their precision is the one they asked for.")
    apart = [name for key, name in (("world_size", "numbers of processes"), ("precision", "precisions"))
             if len({str(r.get(key)) for r in done}) > 1]
    if apart:
        lines.append(f"  \n**Runs on different {' and '.join(apart)} are kept apart**: never pooled as seeds of one "
                     "experiment nor compared with each other; each has its own rows below (the column *differs "
                     "within the sweep* names the value).")
    if requested := [r for r in done if (r.summary or {}).get("requested")]:
        asked = Counter(", ".join(f"{k} {v} ran as {r.summary.get(k)}" for k, v in r.summary["requested"].items())
                        for r in requested)
        lines.append("  \n**Ran otherwise than configured** (summary.json `requested`): "
                     + "; ".join(f"{text} ({n} runs)" for text, n in asked.items()) + ".")
    steps = paper_steps()
    if any(r.summary.get("max_steps") != steps for r in done):
        lines.append(f"  \n**Not the paper's schedule** ({steps} steps, conf/budget/paper.yaml): differences from "
                     "the paper's figures measure the shorter budget, not the implementation.")
    return "\n".join(lines)


def split_text(runs: Sequence[Run]) -> str:
    """The split sizes the records state (``train/val/test images 1792/256/512 (4 runs)``), or
    that they predate them (summary_version < 4 recorded none)."""
    sizes = Counter("/".join(f"{r.get(f'{k}_images'):,}" for k in ("train", "val", "test"))
                    for r in runs if all(r.get(f"{k}_images") is not None for k in ("train", "val", "test")))
    unknown = len(runs) - sum(sizes.values())
    parts = [f"{v}" if len(sizes) == 1 and not unknown else f"{v} ({n} runs)" for v, n in sizes.items()]
    if unknown:
        parts.append(f"not recorded ({unknown} runs before summary_version 4)")
    return "train/val/test images " + ", ".join(parts)


def duplicates_markdown(rows: list[Row]) -> str:
    """Runs found twice (same fields and seed), e.g. a sweep given beside its exported records."""
    dups = [(row, d) for row in rows for d in row.duplicates]
    if not dups:
        return ""
    return "\n".join([f"Not counted, same fields and seed as a run already in the table ({len(dups)}):"]
                     + [f"- `{d.path}` (seed {d.get('seed')}, {row.net})" for row, d in dups])


def runs_markdown(runs: list[Run], out: Path, extra: Sequence[Ordering] = ()) -> list[str]:
    """The report's run sections (setup, Table-6 layout, orderings, failures, curves, profiles);
    writes the figures into ``out``. ``extra``: the analyses' tests, adjusted with the runs'."""
    rows = aggregate(runs)
    statistic = registered_statistic(rows)
    parts = [
        setup_markdown(runs),
        "",
        f"**Registered statistic** (docs/reproducing.md, fixed before the data): {STATISTIC_TEXT[statistic]}. "
        f"Orderings: {TEST_NAME}, two-sided, >= {MIN_SEEDS} seeds a side; trends: least-squares slope of the "
        f"statistic on depth; all tests of this report adjusted together by {ADJUSTMENT}'s method "
        f"(family-wise alpha {ALPHA}). Anything else is *not resolved*, with its numbers.",
        "",
        "## Errors (He et al. 2015 Table 6 layout)",
        "",
        "Completed runs only. A row holds the seeds of one experiment: runs that differ in any other "
        "field (data set, protocol, lr, budget, precision, init, batch, ...) are separate rows, and the "
        "column *differs within the sweep* names the values that tell them apart. Each cell: mean ± "
        "sample std (n - 1) over seeds, and n. Train error: the registered statistic (above). "
        "Test error: as the row's protocol says (above). "
        "A paper figure appears only where the data set (CIFAR-10), block, shortcut, norm and protocol "
        "(`paper`) are the paper's; it is labelled with the statistic the paper reports (single run, "
        "best of 5, median of 5). Difference: our mean minus the paper's (its mean where it gives one), "
        "percentage points.",
        "",
        table_markdown(rows, statistic) if rows else "No completed runs yet.",
        "",
    ]
    if dups := duplicates_markdown(rows):
        parts += [dups, ""]
    if missing := unmeasured(rows):
        parts += [f"Without `{REGISTERED}`, so left out of its cells and comparisons ({len(missing)}): summaries "
                  "rebuilt from a damaged one whose data could not be read to evaluate the final weights:"]
        parts += [f"- `{r.path}` ({r.name}, seed {r.get('seed')})" for r in missing] + [""]
    if check := verdicts_markdown(rows, statistic, extra):
        parts += [f"### Fig. 6's orderings (`{statistic}`, %)", "",
                  f"Each adjacent pair, the trend over depth where a net family has >= 3 depths, and (iv), where "
                  f"the same nets ran at several budgets, the change of the deepest-minus-shallowest gap per "
                  f"doubling of the budget (the difference of the two nets' least-squares slopes on log2(steps)); an ordering "
                  f"is stated only when {TEST_NAME} (two-sided, >= {MIN_SEEDS} seeds per side) rejects equal means "
                  f"at {ADJUSTMENT}-adjusted p < {ALPHA}, the adjustment taken over every test below; otherwise "
                  "the numbers and *not resolved*. Only rows that agree on every field but depth and shortcut are "
                  "compared.", "", check, ""]
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
                  "Bold: validation error (`val/error`, the images held out of the training set under the "
                  "heldout protocol; the paper's Fig. 6 plots test error, which we evaluate only once, at the "
                  "end: the star, `test/error`). One row per experiment (a folder's runs that share the training "
                  "setup), plain nets left, residual nets right; one colour per depth "
                  "(and per value of any other field that varies, e.g. norm), shared by a plain net and its twin. "
                  "Where an experiment has several seeds: the mean over seeds, the band ± one sample std."]
    else:
        parts.append("No TensorBoard scalars or run-record curves found.")
    if (fig := depth_figure(runs)) is not None:
        save_figure(fig, out / DEPTH_PNG)
        parts += ["", "## Final training loss against depth", "", f"![depth]({DEPTH_PNG})", "",
                  "summary.json `train_loss` (mean over the last logging window) of every completed run, one "
                  "panel per model family: dashed plain, solid residual; mean ± one sample std over seeds, n in "
                  "the legend. An x at the top: no seed of that net completed at that depth (see above)."]
    if (fig := budget_figure(runs, statistic)) is not None:
        save_figure(fig, out / BUDGET_PNG)
        parts += ["", "## Training error against budget", "", f"![budget]({BUDGET_PNG})", "",
                  f"The registered statistic of every net that ran at two budgets (`trainer.max_steps`) or more, "
                  "other fields equal: left, each seed (dots) and the mean (line), dashed plain, solid residual; "
                  "right, the deepest minus the shallowest net of each family at each budget, with the 95 % Welch "
                  "interval of the difference of means. The verdict on the gap's change is (iv) above."]
    if (fig := token_stats_figure(runs)) is not None:
        save_figure(fig, out / TOKENS_PNG)
        parts += ["", "## Transformer diagnostics against depth", "", f"![tokens]({TOKENS_PNG})", "",
                  "summary.json `diagnostics.token_stats` (callbacks.TokenStats, on one training batch): the "
                  "branch's share Var[F(x)] / Var[x + F(x)] of each residual sub-block (Liu et al. 2020), "
                  "averaged over the net's sub-blocks and, right, per sub-block of the deepest net; and the "
                  "rank-collapse measure ||X - 1 x^T|| / ||X|| of the last block's output tokens (Dong et al. "
                  "2021), at init (open, dotted) and at the last measurement (filled); means over seeds."]
    parts += ["", "## Per-layer gradient profiles (last measurement)", ""]
    fig = profiles_figure(runs)
    if fig is not None:
        save_figure(fig, out / PROFILES_PNG)
        parts += [f"![profiles]({PROFILES_PNG})", "",
                  "From summary.json `diagnostics.grad_norm` (weight-gradient norm per conv/linear layer) and "
                  "`diagnostics.block_grad` (gradient dL/dx at each block input), at the last measured step, "
                  "against relative depth; one row per experiment, one line per net (the geometric mean over its "
                  "seeds), dotted for plain nets."]
    else:
        parts.append("No run recorded per-layer gradient diagnostics (summary.json `diagnostics.grad_norm` / "
                     "`diagnostics.block_grad` absent or empty): skipped.")
    return parts


def write_report(roots: str | Path | Sequence[str | Path], out: str | Path | None = None) -> Path:
    """Build the report of every run under ``roots`` (one directory or several, merged); return report.md's path.

    Several directories (seeds of one sweep run on different days, committed run records)
    are merged into one table; ``out`` is then required.
    """
    roots = [Path(roots)] if isinstance(roots, (str, Path)) else [Path(r) for r in roots]
    if out is None and len(roots) != 1:
        raise ValueError("several directories need --out (where to write the merged report)")
    out = Path(out) if out else roots[0]
    runs = find_runs(roots)
    analyses = find_analyses(roots)
    if not runs and not analyses:
        raise UserFacingError(f"no runs or analyses under {', '.join(map(str, roots))} (no summary.json, "
                              f".hydra/ or analysis record in it); point report at a run or sweep directory")
    statuses = Counter("no summary (incomplete)" if r.summary is None and not r.damaged else r.status for r in runs)
    parts = [
        "# Report: " + ", ".join(f"`{r}`" for r in roots),
        "",
        f"{len(runs)} runs" + (": " if runs else "") + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())) + ".  ",
    ]
    pairs = twin_orderings(analyses)
    if runs or not analyses:  # a directory of analyses alone gets their tables, not empty run sections
        parts += runs_markdown(runs, out, [o for _, o in pairs])
    else:
        adjust([o for _, o in pairs])
    if analyses:
        parts += ["", "## Analyses (`python -m residual_lab.analyze`)", ""]
        if pairs:
            parts += ["### Curvature against the plain twin (registered: docs/reproducing.md, rule 6)", "",
                      f"log10 of `hessian`'s top eigenvalue and trace, {TEST_NAME} (two-sided, >= {MIN_SEEDS} "
                      f"seeds a side), {ADJUSTMENT}-adjusted with every other test of this report; each value "
                      "shown is one seed's.", "", twin_markdown(pairs), ""]
        parts += [f"{len(analyses)} analysis records found under the same directories; each row a "
                  "probe's headline numbers (the whole measurement is in the record, the figures beside it). "
                  "`weights`: a fresh net (at init) or the trained run it was loaded from.", "",
                  analyses_markdown(analyses, out)]
    text = "\n".join(parts) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    return atomic_write(out / REPORT_MD, lambda f: f.write(text))


@entry_point
def main(argv: list[str] | None = None) -> int:
    """``python -m residual_lab.report <dir>...``: bad paths and unwritable outputs end in one
    sentence and exit code 2 (:func:`residual_lab.errors.entry_point`)."""
    parser = argparse.ArgumentParser(prog=program("residual_lab.report"),
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("roots", nargs="+", metavar="dir",
                        help="run, multirun (sweep) or run-record directories; several are merged into one report")
    parser.add_argument("--out", help="where to write report.md and the figures (default: the one dir; "
                                      "required with several)")
    args = parser.parse_args(argv)
    try:
        path = write_report(args.roots, args.out)
    except (FileNotFoundError, ValueError) as err:
        if isinstance(err, FileNotFoundError) and err.filename is not None:
            raise  # a file that went missing while the report read it: entry_point names it
        raise UserFacingError(str(err)) from None
    print(path.read_text(), end="")
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
