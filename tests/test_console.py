"""The console filters drop exactly the library lines they name, nothing else."""

from __future__ import annotations

import logging
import warnings

from lightning.pytorch.utilities.rank_zero import rank_zero_info

from residual_lab.console import quiet_library_noise


class Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_only_the_named_lightning_lines_are_dropped():
    quiet_library_noise()
    logger, kept = logging.getLogger("lightning.pytorch.utilities.rank_zero"), Kept()
    logger.addHandler(kept)
    try:
        for line in ("GPU available: False, used: False", "TPU available: False, using: 0 TPU cores",
                     "GPU available: True (cuda), used: False", "TPU available: True, using: 0 TPU cores",
                     "💡 Tip: For seamless cloud logging and experiment tracking, try installing [litlogger](x)"):
            rank_zero_info(line)
    finally:
        logger.removeHandler(kept)
    assert kept.lines == ["GPU available: True (cuda), used: False", "TPU available: True, using: 0 TPU cores"]


def test_only_the_named_warnings_are_dropped():
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        quiet_library_noise(resuming=True)
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use ...", FutureWarning)
        warnings.warn("Checkpoint directory /x/checkpoints exists and is not empty.", UserWarning)
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use ...", UserWarning)  # another category
        warnings.warn("some other library is deprecated", FutureWarning)
    assert [(w.category, str(w.message)[:20]) for w in seen] == [
        (UserWarning, "`isinstance(treespec"), (FutureWarning, "some other library i")]


def test_a_fresh_run_keeps_lightnings_non_empty_checkpoint_dir_warning():
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        quiet_library_noise()
        warnings.warn("Checkpoint directory /x/checkpoints exists and is not empty.", UserWarning)
    assert len(seen) == 1
