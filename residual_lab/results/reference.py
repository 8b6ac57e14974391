"""The papers' CIFAR-10 figures (``residual_lab/reference/he2015.yaml``) and matching runs to them.

A paper number is set beside a run only when the run is the paper's experiment: the same
net (depth, block, shortcut, norm, width 16), the same data set (CIFAR-10, or our JPEG copy
of it), the same protocol (``paper``: 50k training images, fixed schedule, final weights
tested) and the same run length (64k steps). A synthetic, CIFAR-100, 45k/5k (``heldout``) or
shorter (``budget=cpu``) run never gets one.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

#: The keys that must agree between a run and a reference entry.
MATCH_KEYS = ("depth", "shortcut", "block", "norm", "protocol")
#: Our data set names that are the paper's CIFAR-10, with the caveat the report prints beside them.
CIFAR10_NAMES = {
    "cifar10": None,
    "cifar10-jpeg": "CIFAR-10 JPEG copy: absolute errors are not the paper's",
}


@lru_cache(maxsize=None)
def load_reference(name: str = "he2015.yaml") -> dict[str, Any]:
    """The reference file shipped with the package: ``{"papers": {...}, "entries": [...]}``."""
    text = resources.files("residual_lab").joinpath("reference", name).read_text()
    return yaml.safe_load(text)


def _same_dataset(entry: dict[str, Any], dataset: Any) -> bool:
    return entry["dataset"] == "cifar10" and str(dataset) in CIFAR10_NAMES


def match_reference(fields: dict[str, Any], reference: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The first reference entry for a run's fields, or None.

    Matched on :data:`MATCH_KEYS`, the data set (:data:`CIFAR10_NAMES`), width 16 and
    ``max_steps`` equal to the papers' ``schedule_steps``.
    ``fields`` must carry ``dataset`` and ``protocol`` (:func:`~residual_lab.results.loading.
    derived_fields` supplies them for old summaries); a missing one matches nothing.
    In the result, ``compare`` is the figure to set beside a mean over seeds (the paper's own
    mean where it gives one, else its single figure) and ``caveat`` is what the report must
    say beside it (None for real CIFAR-10).
    """
    reference = reference or load_reference()
    if int(fields.get("width") or 16) != 16 or str(fields.get("max_steps")) != str(reference["schedule_steps"]):
        return None
    for entry in reference["entries"]:
        if all(str(entry[k]) == str(fields.get(k)) for k in MATCH_KEYS) and _same_dataset(entry, fields.get("dataset")):
            return {**entry, "compare": entry.get("test_error_mean", entry["test_error"]),
                    "caveat": CIFAR10_NAMES.get(str(fields.get("dataset")))}
    return None


def describe(entry: dict[str, Any]) -> str:
    """The paper's figure with its statistic: ``6.43 (best of 5; mean 6.61 ± 0.16)``, ``8.75 (single run)``."""
    text = f"{entry['test_error']:.2f} ({entry['statistic']}"
    if entry.get("test_error_mean") is not None:
        text += f"; mean {entry['test_error_mean']:.2f} ± {entry['test_error_std']:.2f}"
    return text + ")"
