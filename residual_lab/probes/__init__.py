"""Measurements of a network (fresh or trained), one per file, run by ``python -m residual_lab.analyze``.

Reading finished runs and sweeps for the report is :mod:`residual_lab.results`; this package
measures nets. Every probe module has the same functions and one dataclass:

- ``Options``: the types and ranges of the keys of its conf/analyze/<name>.yaml (which holds
  their values), checked before it measures, so a value no measurement can use
  (``analyze.lanczos_steps=0``) is refused in one sentence, not met as a traceback or an empty
  record.

- ``analyze(net, datamodule, options, trained) -> dict``: the measurement, JSON-able; it is
  written as ``<name>.json`` in the analysis' output directory (schema in each module's
  docstring).
- ``figures(result) -> dict[str, Figure]``: PNGs ``<name>_<key>.png``.
- ``scalars(result) -> dict[str, list[float]]``: TensorBoard series, one step per entry.
- ``headline(result) -> dict[str, float]``: the few numbers ``python -m residual_lab.report``
  puts in its row for the analysis (the rest stays in the JSON and the figures).

They work on any net that lists its blocks with ``named_blocks()`` and whose blocks expose
``residual`` and ``shortcut`` (None for plain), the block protocol of
:mod:`residual_lab.models`, or whose blocks :func:`residual_lab.models.external.named_blocks`
finds by tracing (model=external). A probe that needs more of the net names the methods in
``REQUIRES``; ``analyze`` refuses it in one sentence on a net without them.
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

#: One line per analysis, listed by ``python -m residual_lab.analyze`` without a (valid) name.
DESCRIPTIONS: dict[str, str] = {
    "signal": "signal propagation plots: per-block activation and gradient statistics (Brock et al. 2021)",
    "responses": "std of every 3x3 layer's response, sorted and in network order (He et al. 2015 fig. 7)",
    "lesion": "test error with blocks removed or reordered (Veit et al. 2016)",
    "landscape": "training loss along filter-normalised random directions (Li et al. 2018)",
    "shatter": "autocorrelation of input gradients of plain vs residual nets (Balduzzi et al. 2017)",
    "hessian": "top Hessian eigenvalues, trace and spectral density of the training loss (Yao et al. 2020)",
    "jacobian": "singular values of the input-output and per-block Jacobians (Pennington et al. 2017)",
    "gradient_noise": "gradient noise scale B_simple and SNR, whole net, per block and layer (McCandlish et al. 2018)",
}
