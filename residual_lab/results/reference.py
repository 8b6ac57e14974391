"""The papers' CIFAR-10 figures (``residual_lab/reference/he2015.yaml``) and matching runs to them."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

#: The keys that must agree between a run and a reference entry.
MATCH_KEYS = ("depth", "shortcut", "block", "norm")


@lru_cache(maxsize=None)
def load_reference(name: str = "he2015.yaml") -> dict[str, Any]:
    """The reference file shipped with the package: ``{"papers": {...}, "entries": [...]}``."""
    text = resources.files("residual_lab").joinpath("reference", name).read_text()
    return yaml.safe_load(text)


def match_reference(fields: dict[str, Any], reference: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The first reference entry for a net (matched on depth, shortcut, block and norm), or None.

    Only CIFAR-10 widths (16) match. ``compare`` in the result is the figure to set beside a
    mean over seeds: the paper's own mean where it gives one (ResNet-110), else its single
    figure.
    """
    if int(fields.get("width", 16)) != 16:
        return None
    for entry in (reference or load_reference())["entries"]:
        if all(str(entry[k]) == str(fields.get(k)) for k in MATCH_KEYS):
            return {**entry, "compare": entry.get("test_error_mean", entry["test_error"])}
    return None
