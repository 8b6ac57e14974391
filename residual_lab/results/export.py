"""Run records: a finished run's summary.json and curves, small enough to commit.

    python -m residual_lab.results.export logs/multiruns/2026-11-23/10-36-00 --out experiments/fig6/runs
    python -m residual_lab.report experiments/fig6/runs --out experiments/fig6

A record is a directory ``<run name>-seed<k>/`` holding the run's ``summary.json`` as written
and ``curves.csv``: one row per logged step, columns ``step`` and one per scalar of
:data:`~residual_lab.results.loading.RECORD_TAGS` (``train_loss``, ``train_error``,
``val_loss``, ``val_error``, ``test_loss``, ``test_error``; ``/`` becomes ``_``), an empty cell
where that scalar was not logged at that step. Read from the run's TensorBoard events with
TensorBoard's own reader: every session of a resumed run adds its own event file. Not written
during training by Lightning's ``CSVLogger``: a run resumed into its directory starts a writer
that deletes the first session's ``metrics.csv`` (tests/test_library_pieces.py). No checkpoints, no images: a record is a few kB and the report,
the notebook and the README figures regenerate from it (:func:`~residual_lab.results.loading.find_runs`
reads records like run directories).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import sys
from pathlib import Path

from residual_lab.console import program
from residual_lab.errors import entry_point
from residual_lab.io import atomic_write
from residual_lab.results.loading import CURVES_CSV, IDENTITY_FIELDS, RECORD_TAGS, find_runs, load_scalars
from residual_lab.summary import SUMMARY_FILE


def curves_csv(scalars: dict[str, tuple[list[int], list[float]]]) -> str:
    """The text of ``curves.csv`` for ``{tag: (steps, values)}`` (tags of :data:`RECORD_TAGS`, in that order)."""
    tags = [t for t in RECORD_TAGS if t in scalars]
    by_step: dict[int, dict[str, float]] = {}
    for tag in tags:
        for step, value in zip(*scalars[tag]):
            by_step.setdefault(step, {})[tag] = value
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["step", *(t.replace("/", "_") for t in tags)])
    for step in sorted(by_step):
        writer.writerow([step, *(repr(by_step[step][t]) if t in by_step[step] else "" for t in tags)])
    return buf.getvalue()


def export_run_record(run_dir: str | Path, dest_dir: str | Path) -> Path:
    """Write the record of the run in ``run_dir`` into ``dest_dir`` (created); return ``dest_dir``.

    Copies summary.json byte for byte and writes ``curves.csv`` from the TensorBoard events
    (every logged step of :data:`RECORD_TAGS`). Nothing else: no checkpoints, no images.

    Raises:
        FileNotFoundError: the run has no summary.json (still running, or killed: nothing to keep).
    """
    run_dir, dest_dir = Path(run_dir), Path(dest_dir)
    summary = run_dir / SUMMARY_FILE
    if not summary.is_file():
        raise FileNotFoundError(f"{run_dir} has no {SUMMARY_FILE}: not finished, nothing to export")
    dest_dir.mkdir(parents=True, exist_ok=True)
    text = curves_csv(load_scalars(run_dir, RECORD_TAGS))
    atomic_write(dest_dir / CURVES_CSV, lambda f: f.write(text))
    data = summary.read_bytes()
    atomic_write(dest_dir / SUMMARY_FILE, lambda f: f.write(data), mode="wb")
    return dest_dir


def _identity(summary_file: Path) -> dict:
    summary = json.loads(summary_file.read_text())
    return {k: summary.get(k) for k in IDENTITY_FIELDS}


#: A record's directory name, from the run's identifying fields (:data:`IDENTITY_FIELDS`).
NAME = "{run_name}-seed{seed}"


def record_name(summary_file: Path, out: Path, template: str = NAME) -> Path:
    """``out/<run name>-seed<k>`` (or ``template`` filled from the identifying fields: the budget
    ladder's ``{run_name}-steps{max_steps}-seed{seed}``); when that name holds another
    experiment's record (e.g. the same net at another lr), ``-<8 hex digits of the identifying
    fields>`` is added rather than overwrite it."""
    ident = _identity(summary_file)
    dest = out / template.format(**ident)
    existing = dest / SUMMARY_FILE
    if existing.is_file() and _identity(existing) != ident:
        digest = hashlib.sha1(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:8]
        dest = out / f"{dest.name}-{digest}"
    return dest


@entry_point
def main(argv: list[str] | None = None) -> int:
    """A file that cannot be written ends in one sentence and exit code 2, as every command
    (:func:`residual_lab.errors.entry_point`)."""
    parser = argparse.ArgumentParser(prog=program("residual_lab.results.export"),
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("roots", nargs="+", metavar="dir", help="run or sweep (multirun) directories")
    parser.add_argument("--out", required=True, help="the records' directory, e.g. experiments/<preset>/runs")
    parser.add_argument("--name", default=NAME, help=f"each record's directory name, from the summary's identifying "
                        f"fields (default {NAME}; the budget ladder's: {{run_name}}-steps{{max_steps}}-seed{{seed}})")
    args = parser.parse_args(argv)
    out = Path(args.out)
    try:
        args.name.format(**dict.fromkeys(IDENTITY_FIELDS))
    except (KeyError, IndexError, ValueError) as err:
        print(f"residual_lab.results.export: --name {args.name!r} names a field a summary does not identify a run "
              f"by ({err}); fields: {', '.join(IDENTITY_FIELDS)}", file=sys.stderr)
        return 2
    try:
        runs = find_runs(args.roots)
    except FileNotFoundError as err:
        print(f"residual_lab.results.export: {err}", file=sys.stderr)
        return 2
    for run in runs:
        if run.summary is None:
            print(f"skipped {run.path}: no {SUMMARY_FILE} (still running or killed)")
            continue
        if run.path.resolve().is_relative_to(out.resolve()):
            continue  # already a record here
        dest = record_name(run.path / SUMMARY_FILE, out, args.name)
        export_run_record(run.path, dest)
        size = sum(p.stat().st_size for p in dest.iterdir())
        print(f"{run.path} -> {dest} ({run.status}, {size / 1e3:.1f} kB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
