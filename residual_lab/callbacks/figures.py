"""Pictures of the gradient diagnostics, logged as TensorBoard images each validation.

Reading plain-56 and resnet-56 side by side should show the difference without numbers:
the heat map's vertical gradient (input at the bottom) and the depth profiles.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import lightning as L
import matplotlib
import matplotlib.image

matplotlib.use("Agg")  # headless: no display on training machines
import numpy as np  # noqa: E402
from lightning.pytorch.loggers import TensorBoardLogger  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from residual_lab.callbacks.block_grad import BlockInputGradients  # noqa: E402
from residual_lab.callbacks.grad_norm import GradNorms  # noqa: E402
from residual_lab.gradient_figures import gradient_profiles  # noqa: E402
from residual_lab.models.layer_names import group_of  # noqa: E402


def _log10(values: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.log10(np.asarray(values, dtype=np.float64))
    out[~np.isfinite(out)] = np.nan  # zero or non-finite gradients: blank cells
    return out


#: Inches of figure height per labelled layer: a 6 pt label plus spacing, legible at 80 dpi.
ROW_INCHES = 0.12
#: Most layer labels on one heat map (ResNet-164 has 165 layers); deeper nets label every k-th.
MAX_LABELS = 400


def grad_norm_heatmap(steps: Sequence[int], layers: Sequence[str], norms: np.ndarray, title: str = "",
                      min_decades: float = 3.0) -> Figure:
    """log10 weight-gradient norm, layers (input at the bottom) x logged steps.

    Every layer is labelled: the figure grows with depth (:data:`ROW_INCHES` per layer, so
    ResNet-56's 57 and ResNet-110's 111 layers are all legible); beyond :data:`MAX_LABELS`
    layers every k-th is labelled. Lines separate the stem, the stages and the head.

    Args:
        steps: logged optimizer steps (x), length S.
        layers: layer tags in network order (y, bottom to top), length L.
        norms: array of shape (S, L).
        min_decades: smallest colour range, in decades of gradient norm.
    """
    values = _log10(norms).T
    # At least `min_decades` of colour range around the median, so a flat (residual) net
    # looks flat and a vanishing one striped, whatever its overall scale.
    mid = float(np.nanmedian(values)) if np.isfinite(values).any() else 0.0
    vmin = min(np.nanmin(values, initial=mid), mid - min_decades / 2)
    vmax = max(np.nanmax(values, initial=mid), mid + min_decades / 2)
    every = max(1, -(-len(layers) // MAX_LABELS))
    height = max(5.0, 1.6 + ROW_INCHES * len(layers) / every)
    fig = Figure(figsize=(7, height), dpi=80)
    ax = fig.add_subplot()
    image = ax.imshow(values, origin="lower", aspect="auto", interpolation="nearest", cmap="viridis",
                      vmin=vmin, vmax=vmax)
    fig.colorbar(image, ax=ax, label="log10 ||dL/dW||", fraction=0.05, shrink=min(1.0, 6 / height))
    ax.set_yticks(range(0, len(layers), every), layers[::every], fontsize=6)
    groups = [group_of(t) for t in layers]
    for i in range(1, len(layers)):
        if groups[i] != groups[i - 1]:
            ax.axhline(i - 0.5, color="white", linewidth=0.6)
    xt = np.unique(np.linspace(0, len(steps) - 1, min(len(steps), 8)).round().astype(int))
    ax.set_xticks(xt, [str(steps[i]) for i in xt], fontsize=7)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("layer (input at the bottom)")
    ax.set_title(f"{title} weight-gradient norm".strip(), fontsize=10)
    fig.tight_layout()
    return fig


def gradient_profile(grad: dict | None, block: dict | None, title: str = "") -> Figure:
    """Latest per-layer weight-gradient norms and dL/dx_l against depth (log scale).

    The same drawing as the report's (:func:`residual_lab.gradient_figures.gradient_profiles`),
    for one run.

    Args:
        grad: :attr:`GradNorms.latest` (``layers``, ``grad_norm``, ``step``) or None.
        block: :attr:`BlockInputGradients.latest` (``blocks``, ``grad_rms``) or None.
    """
    panels = [(f"{title} step {d['step']}".strip(), ylabel, [(title or None, d[names], d[values], {})])
              for d, names, values, ylabel in ((grad, "layers", "grad_norm", "||dL/dW|| per layer"),
                                               (block, "blocks", "grad_rms", "dL/dx_l at block input")) if d]
    return gradient_profiles(panels, panel_size=(4.5, 3.6))


def render(fig: Figure) -> np.ndarray:
    """RGB uint8 array (H, W, 3) of a figure."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


class DiagnosticFigures(L.Callback):
    """Heat map and depth profiles of the gradient diagnostics, each validation epoch.

    Reads what :class:`GradNorms` and :class:`BlockInputGradients` measured (a panel is
    left out when its callback is switched off), logs ``diagnostics/grad_norm_heatmap``
    and ``diagnostics/gradient_profile`` as TensorBoard images and, if ``save_dir`` is set,
    overwrites PNGs of the same names there. Work happens only at validation, never in
    training steps. Not an :class:`IntervalCallback`: it measures nothing itself.

    Args:
        save_dir: folder for the latest PNGs (None: TensorBoard only).
    """

    def __init__(self, save_dir: str | None = None) -> None:
        self.save_dir = Path(save_dir) if save_dir else None

    def figures(self, trainer: L.Trainer) -> dict[str, Figure]:
        grad = next((c for c in trainer.callbacks if isinstance(c, GradNorms)), None)
        block = next((c for c in trainer.callbacks if isinstance(c, BlockInputGradients)), None)
        title = trainer.logger.name if trainer.logger is not None else ""
        figs = {}
        if grad is not None and grad.history:
            figs["grad_norm_heatmap"] = grad_norm_heatmap(grad.history_steps, grad.layers, np.stack(grad.history), title)
        grad_latest = grad.latest if grad is not None else None
        block_latest = block.latest if block is not None else None
        if grad_latest or block_latest:
            figs["gradient_profile"] = gradient_profile(grad_latest, block_latest, title)
        return figs

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        tensorboards = [lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]
        if not tensorboards and self.save_dir is None:
            return
        for name, fig in self.figures(trainer).items():
            image = render(fig)  # drawn once: drawing, not encoding, is what a figure costs
            for lg in tensorboards:
                lg.experiment.add_image(f"diagnostics/{name}", image, trainer.global_step, dataformats="HWC")
            if self.save_dir is not None:
                self.save_dir.mkdir(parents=True, exist_ok=True)
                matplotlib.image.imsave(self.save_dir / f"{name}.png", image)
