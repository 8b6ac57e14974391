"""Run names that say what a run is: ``plain-56``, ``resnet-56-identity``, ...

Registered as the OmegaConf resolver ``run_name`` so the config, the output directory and
the TensorBoard run all use the same name.
"""

from __future__ import annotations

from omegaconf import OmegaConf


def run_name(depth: int, shortcut: str, block: str = "basic", width: int = 16, norm: str = "batch") -> str:
    """``plain-<depth>`` or ``resnet-<depth>-<shortcut>``, plus block/width/norm when not default."""
    name = f"plain-{depth}" if shortcut == "none" else f"resnet-{depth}-{shortcut}"
    if block != "basic":
        name += f"-{block}"
    if int(width) != 16:
        name += f"-w{width}"
    if norm != "batch":
        name += f"-norm_{norm}"
    return name


def register_resolvers() -> None:
    """Idempotent: Hydra apps, tests and notebooks may all call it."""
    if not OmegaConf.has_resolver("run_name"):
        OmegaConf.register_new_resolver("run_name", run_name)
