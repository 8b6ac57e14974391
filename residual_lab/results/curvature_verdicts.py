"""The report's registered test on ``analyze hessian`` records: a residual net's curvature
against its plain twin's (docs/reproducing.md, "How the report decides", 6.).

Yao et al. 2020 (PyHessian) report that removing the skips of a ResNet raises the top Hessian
eigenvalue and the trace. Each pair here is a residual net and the plain net of the same depth,
width, block, norm and init, measured with the same analysis options on weights of the same kind
(fresh, or trained for the same ``trainer.max_steps``), one record per seed. The statistics are
log10 of ``result.top[0]`` and ``result.trace`` (curvature spans orders of magnitude between nets,
and the claim is a ratio); each is Welch's test through :func:`~residual_lab.results.tables.compare_samples`,
and the report adjusts them in its one Holm family with its training-error tests.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Callable, Sequence

from residual_lab.results.analyses import AnalysisRecord
from residual_lab.results.tables import Ordering, compare_samples

#: Per analysis, the registered statistics: their name in the report and how a result gives them.
REGISTERED: dict[str, dict[str, Callable[[dict], float]]] = {
    "hessian": {"λ max": lambda result: float(result["top"][0]), "trace": lambda result: float(result["trace"])},
}
#: What a verdict means against the paper: lower curvature with the skips is what Yao et al. report.
VERDICTS = {"lower": "as Yao et al. 2020 report", "higher": "the opposite of Yao et al. 2020"}


def _context(rec: AnalysisRecord) -> tuple:
    """Everything two records must share to be compared, but the shortcut and the seed."""
    m = rec.meta
    steps = f"for {m['max_steps']} steps" if m.get("max_steps") else "(budget not recorded)"
    kind = f"trained {steps}" if m.get("trained") else "at initialisation"
    root = Path(str(m["data_root"])).name if m.get("data_root") else None
    return (rec.name, kind, m.get("depth"), m.get("width"), m.get("block"), m.get("norm"), m.get("init"),
            m.get("data"), root, json.dumps(m.get("options"), sort_keys=True, default=str))


def _values(records: Sequence[AnalysisRecord], get: Callable[[dict], float]) -> dict[int, float]:
    """``{seed: value}``, the first record of each seed (the same net measured twice is one seed)."""
    out: dict[int, float] = {}
    for rec in records:
        seed = rec.meta.get("seed")
        if seed is not None and seed not in out:
            out[int(seed)] = get(rec.result)
    return out


def _shown(values: dict[int, float]) -> str:
    logs = [math.log10(v) for v in values.values()]
    spread = f" ± {statistics.stdev(logs):.3f}" if len(logs) > 1 else ""
    return f"{', '.join(f'{v:.4g}' for v in values.values())} (log10 {statistics.fmean(logs):.3f}{spread}, n={len(logs)})"


def twin_orderings(records: Sequence[AnalysisRecord]) -> list[tuple[str, Ordering]]:
    """``(the pair's heading, ordering)`` for every registered statistic of every residual net
    with a plain twin among ``records``; the orderings wait for the report's ``adjust``."""
    groups: dict[tuple, dict[str, list[AnalysisRecord]]] = {}
    for rec in records:
        if rec.name in REGISTERED:
            groups.setdefault(_context(rec), {}).setdefault(str(rec.meta.get("shortcut")), []).append(rec)
    options = [json.loads(ctx[-1]) or {} for ctx in groups]
    differ = sorted({k for o in options for k in o if len({json.dumps(p.get(k)) for p in options}) > 1})
    out = []
    for ctx in sorted(groups, key=str):
        plain = groups[ctx].get("none")
        if not plain:
            continue
        name, kind, depth = ctx[0], ctx[1], ctx[2]
        for shortcut in sorted(s for s in groups[ctx] if s != "none"):
            residual = groups[ctx][shortcut]
            net = f"ResNet-{depth}" + (f" ({shortcut})" if shortcut != "identity" else "")
            shown = "".join(f", {k}={(json.loads(ctx[-1]) or {}).get(k)}" for k in differ)
            heading = f"`{name}`, {kind}, norm={ctx[5]}{shown}: {net} against plain-{depth}"
            for stat, get in REGISTERED[name].items():
                va, vb = _values(residual, get), _values(plain, get)
                if min([*va.values(), *vb.values()]) <= 0:  # a stochastic trace estimate can fall below 0
                    shown = f"{stat}: {net} {', '.join(map(str, va.values()))} vs plain-{depth} " \
                            f"{', '.join(map(str, vb.values()))}"
                    out.append((heading, Ordering(numbers=shown, reason="an estimate <= 0 has no log10")))
                    continue
                numbers = f"{stat}: {net} {_shown(va)} vs plain-{depth} {_shown(vb)}"
                out.append((heading, compare_samples([math.log10(v) for v in va.values()],
                                                     [math.log10(v) for v in vb.values()], numbers,
                                                     f"{net}'s {stat}")))
    return out


def twin_markdown(pairs: Sequence[tuple[str, Ordering]]) -> str:
    """The pairs' verdicts, once the report's family is adjusted; empty without pairs."""
    lines: list[str] = []
    last = None
    for heading, o in pairs:
        if heading != last:
            lines += ([""] if lines else []) + [f"**{heading}**", ""]
            last = heading
        verdict = VERDICTS.get(o.outcome)
        lines.append(f"- {o.text}" + (f"; {verdict}." if verdict else "."))
    return "\n".join(lines)
