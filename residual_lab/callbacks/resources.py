"""Process memory at the diagnostics interval: the check that long runs do not grow."""

from __future__ import annotations

import resource
import sys

import lightning as L
import psutil

from residual_lab.callbacks.base import IntervalCallback
from residual_lab.schema import PositiveInt

_MB = 2**20


class ResourceMonitor(IntervalCallback):
    """Resident set size of this process, in MiB (``perf/rss_mb``), every ``every_n_steps``.

    The summary gives the last and the peak sampled RSS during training, and the OS
    high-water mark (``getrusage`` ``ru_maxrss``, which also counts data loading before
    training), so 200- and 2,000-step runs can be compared for growth.

    Not Lightning's ``DeviceStatsMonitor``: on the CPU it logs system-wide percentages
    (``psutil.virtual_memory().percent``, CPU and swap use), which other processes move,
    not this process's resident memory; on CUDA it logs the allocator's counters every
    logged step. Growth of one run needs this process's RSS and its peak.
    """

    summary_key = "resources"

    def __init__(self, every_n_steps: PositiveInt = 50) -> None:
        super().__init__(every_n_steps)
        self._process = psutil.Process()

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        if not self.is_logging_step(trainer):
            return
        rss = self._process.memory_info().rss / _MB
        peak = max(rss, self.latest.get("peak_rss_mb", 0.0))
        # ru_maxrss is KiB on Linux, bytes on macOS.
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (_MB if sys.platform == "darwin" else 1024)
        self.latest = {"step": trainer.global_step, "rss_mb": rss, "peak_rss_mb": peak, "os_max_rss_mb": maxrss}
        self.log_metrics(trainer, {"perf/rss_mb": rss}, trainer.global_step)
