"""Analysis outputs (``python -m residual_lab.analyze <name>``) found under the report's directories.

An analysis writes ``<name>.json`` (``{"analysis", "meta", "result"}``) and its figures
``<name>_<key>.png`` into its own output directory; committed copies may keep the JSON alone
(``experiments/analysis/signal/resnet-56-bn.json``). The report lists every record it finds,
one table per analysis, each row the probe's ``headline`` numbers and links to the figures:
so ``python -m residual_lab.report <sweep dir> <analysis dir> --out <dir>`` puts the trained
nets and what was measured inside them in one place.

An analysis output directory also holds ``.hydra/config.yaml``; :func:`is_analysis_dir`
tells it from a run directory, so the report does not list it as an incomplete run.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from residual_lab.naming import run_name
from residual_lab.summary import SUMMARY_FILE

#: Subdirectories never searched (event files, weights, Hydra's own copies of the config).
_SKIP = {"tensorboard", "checkpoints", ".hydra"}


def saved_config_has_node(path: Path, node: str) -> bool:
    """True when ``path/.hydra/config.yaml`` has the top-level ``node``: ``analyze`` for an
    analysis' output directory, ``bench`` for a bench's (read as text: no resolvers needed)."""
    cfg = path / ".hydra" / "config.yaml"
    if not cfg.is_file():
        return False
    return any(line.startswith(f"{node}:") for line in cfg.read_text().splitlines())


def is_analysis_dir(path: Path) -> bool:
    """True for a ``residual_lab.analyze`` output directory (its saved config has the ``analyze`` node)."""
    return saved_config_has_node(path, "analyze")


@dataclass(frozen=True)
class AnalysisRecord:
    """One ``<name>.json`` an analysis wrote."""

    path: Path
    name: str
    meta: dict[str, Any]
    result: dict[str, Any]

    @property
    def net(self) -> str:
        """The net's run name (``plain-56``, ``resnet-110-identity-norm_none``), as its runs are named."""
        m = self.meta
        if m.get("run_name"):
            return str(m["run_name"])
        try:
            return run_name(int(m["depth"]), str(m["shortcut"]), str(m.get("block", "basic")),
                            int(m.get("width", 16)), str(m.get("norm", "batch")))
        except (KeyError, TypeError, ValueError):
            return "?"

    @property
    def weights(self) -> str:
        """``at init`` or ``trained: <run dir name>``."""
        run_dir = self.meta.get("run_dir")
        return f"trained: {Path(run_dir).name}" if self.meta.get("trained") and run_dir else "at init"

    def figures(self) -> list[Path]:
        """The PNGs written beside the JSON (only in an analysis' own output directory)."""
        if self.path.name != f"{self.name}.json":
            return []
        return sorted(self.path.parent.glob(f"{self.name}_*.png"))


def load_analysis(path: Path) -> AnalysisRecord | None:
    """The record in ``path``, or None if the file is not an analysis' JSON."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not {"analysis", "meta", "result"} <= data.keys():
        return None
    return AnalysisRecord(path, str(data["analysis"]), dict(data["meta"]), dict(data["result"]))


def find_analyses(roots: Sequence[str | Path]) -> list[AnalysisRecord]:
    """Every analysis record under ``roots`` (files or directories), each file once, in path order."""
    found: dict[Path, AnalysisRecord] = {}
    for root in map(Path, roots):
        files = [root] if root.is_file() else sorted(
            p for p in root.rglob("*.json")
            if p.name != SUMMARY_FILE and not _SKIP & set(p.relative_to(root).parts[:-1]))
        for f in files:
            if f.resolve() not in found and (rec := load_analysis(f)) is not None:
                found[f.resolve()] = rec
    return sorted(found.values(), key=lambda r: (r.name, str(r.path)))


def _cell(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool) or isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def analyses_markdown(records: Sequence[AnalysisRecord], out: Path) -> str:
    """One table per analysis: the net, its init and weights, the probe's headline numbers, figures.

    Figure links are relative to ``out`` (where report.md is written).
    """
    from residual_lab.probes import PROBES  # measuring code, needed only to summarise a result

    parts = []
    by_name: dict[str, list[AnalysisRecord]] = {}
    for rec in records:
        by_name.setdefault(rec.name, []).append(rec)
    for name, recs in by_name.items():
        probe = PROBES.get(name)
        if probe is None:
            parts += [f"### `{name}`: not an analysis this version knows ({len(recs)} records skipped)", ""]
            continue
        heads = [probe.headline(r.result) for r in recs]
        keys = list(dict.fromkeys(k for h in heads for k in h))
        summary = (probe.__doc__ or name).strip().split("\n\n")[0].replace("\n", " ")
        parts += [f"### `{name}`", "", summary, "",
                  "| net | init | weights | seed | " + " | ".join(keys) + " | figures | record |",
                  "|---" * (len(keys) + 6) + "|"]
        for rec, head in zip(recs, heads):
            figs = ", ".join(f"[{p.stem.removeprefix(name + '_')}]({os.path.relpath(p, out)})"
                             for p in rec.figures()) or "–"
            parts.append(f"| {rec.net} | {_cell(rec.meta.get('init'))} | {rec.weights} | {_cell(rec.meta.get('seed'))} | "
                         + " | ".join(_cell(head.get(k)) for k in keys)
                         + f" | {figs} | `{os.path.relpath(rec.path, out)}` |")
        parts.append("")
    return "\n".join(parts).rstrip()
