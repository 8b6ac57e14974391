"""Checkpoints written whole or not at all."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from residual_lab.io import atomic_write


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, through a temporary file renamed over the old one.

    Lightning opens the checkpoint's own path for writing (``_atomic_save`` is atomic only in
    serialising to memory first), so a full disk or a kill mid-write leaves ``last.ckpt``
    truncated, and with it the only way to resume. Written beside it and renamed, the last good
    checkpoint stays until a whole new one replaces it.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path,
                        storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        atomic_write(path, lambda f: torch.save(checkpoint, f), mode="wb")
