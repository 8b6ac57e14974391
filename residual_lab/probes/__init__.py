"""Measurements of a network (fresh or trained), one per file, run by ``python -m residual_lab.analyze``.

Reading finished runs and sweeps for the report is :mod:`residual_lab.results`; this package
measures nets. Every probe module has the same three functions:

- ``analyze(net, datamodule, options, trained) -> dict``: the measurement, JSON-able; it is
  written as ``<name>.json`` in the analysis' output directory (schema in each module's
  docstring).
- ``figures(result) -> dict[str, Figure]``: PNGs ``<name>_<key>.png``.
- ``scalars(result) -> dict[str, list[float]]``: TensorBoard series, one step per entry.
- ``headline(result) -> dict[str, float]``: the few numbers ``python -m residual_lab.report``
  puts in its row for the analysis (the rest stays in the JSON and the figures).

They work on any net that lists its blocks with ``named_blocks()`` and whose blocks expose
``residual`` and ``shortcut`` (None for plain), the block protocol of
:mod:`residual_lab.models`.
"""

from __future__ import annotations

from types import ModuleType

from residual_lab.probes import gradient_noise, hessian, jacobian, landscape, lesion, responses, shatter, signal

#: ``python -m residual_lab.analyze <name>``: the valid names.
PROBES: dict[str, ModuleType] = {
    "signal": signal,
    "responses": responses,
    "lesion": lesion,
    "landscape": landscape,
    "shatter": shatter,
    "hessian": hessian,
    "jacobian": jacobian,
    "gradient_noise": gradient_noise,
}
