"""Training throughput: a typical hand-written CIFAR loop against residual_lab's own pipeline.

    python -m residual_lab.bench depth=56 shortcut=identity data=imagefolder data.root=<copy>
    python -m residual_lab.bench ... trainer.precision=bf16-mixed --peak-gflops 400

Three variants, measured in one process and interleaved round by round (order rotated), so
machine noise hits all of them alike:

(a) ``reference``: what most CIFAR ResNet repositories do. torchvision's per-sample PIL
    transforms (RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor, Normalize) in a
    DataLoader with one worker per core, NCHW, fp32, SGD, same net and batch size.
(b) ``full``: :func:`residual_lab.run.build`'s module, data module and default callbacks
    (diagnostics included), in a Lightning fit, at the config's precision.
(c) ``no_diagnostics``: (b) without the :class:`~residual_lab.callbacks.IntervalCallback`
    diagnostics.

Every window runs ``bench.warmup_steps`` untimed steps, then ``bench.steps`` timed ones
(default: one diagnostic interval, so each window holds exactly one measuring step and the
median carries the diagnostics' amortised cost). Each Lightning variant's module, data module
and trainer are built once; a window is one more ``trainer.fit`` of them (weights and
``global_step`` carry over, as in one long run) with validation off: throughput is
training only, as :class:`~residual_lab.callbacks.TrainSpeed` measures it.

FLOPs are counted by Lightning's ``measure_flops`` (forward, and forward + backward of the
cross-entropy), the peak comes from Lightning's ``get_available_flops`` table or
``--peak-gflops``. Only the variants and the table are residual_lab's.
"""

from __future__ import annotations

import logging
import os
import platform
import statistics
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Callable, List, Optional

import hydra
import lightning as L
import numpy as np
import psutil
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from lightning.fabric.utilities.throughput import get_available_flops, measure_flops
from omegaconf import DictConfig, OmegaConf
from torch import nn

from residual_lab.callbacks import IntervalCallback
from residual_lab.console import quiet_library_noise
from residual_lab.io import write_json
from residual_lab.conf_dir import hydra_config_dir
from residual_lab.errors import entry_point, single_run_job
from residual_lab.run import build
from residual_lab.schema import POSITIVE, PositiveInt, Range, at_least
from residual_lab.validation import validate_config

log = logging.getLogger(__name__)

VARIANT_LABELS = {
    "reference": "(a) reference: torchvision transforms + DataLoader, NCHW fp32",
    "full": "(b) residual_lab: full pipeline, diagnostics on",
    "no_diagnostics": "(c) residual_lab: diagnostics off",
}

#: ``bench.variants``: at least one, each of :data:`VARIANT_LABELS` (a module constant: a lambda
#: written inside an annotation would not see module names when typing resolves it).
KNOWN_VARIANTS = Range(lambda v: len(v) > 0 and set(v) <= set(VARIANT_LABELS),
                       f"a list of {', '.join(VARIANT_LABELS)}")


@dataclass
class Options:
    """conf/bench.yaml's ``bench`` keys with their types and ranges (the values and their meaning
    are there), checked before the first window: a bad one used to surface mid-bench."""

    warmup_steps: Annotated[int, at_least(0)]
    steps: PositiveInt
    reference_steps: Annotated[Optional[int], at_least(1)]
    rounds: PositiveInt
    variants: Annotated[List[str], KNOWN_VARIANTS]
    reference_workers: Annotated[Optional[int], at_least(0)]
    peak_gflops: Annotated[Optional[float], POSITIVE]
    output: str


def _sync(device: torch.device) -> None:
    """Wait for queued kernels, so a clock reading means what it says (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _memory_mb(device: torch.device) -> float:
    """Peak allocated accelerator memory since the last reset, or the process RSS on CPU, MB (10^6 B)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 1e6
    return psutil.Process().memory_info().rss / 1e6


def _reset_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def flops_per_image(cfg: DictConfig, image_shape: tuple[int, ...]) -> tuple[float, float]:
    """(forward, training) FLOPs per image of ``cfg.model``, a multiply-add counting 2.

    Lightning's ``measure_flops`` (``torch.utils.flop_counter``: convolutions and matmuls, all
    but a fraction of a percent of a ResNet's arithmetic) on a meta-device copy, so nothing
    is computed. Training is forward + backward of the cross-entropy as autograd runs it:
    about 3 x forward, less the input gradient of the first conv, which nothing needs.
    """
    with torch.device("meta"):
        net = instantiate(cfg.model)
        x, y = torch.zeros(2, *image_shape), torch.zeros(2, dtype=torch.long)
    forward = measure_flops(net, lambda: net(x))
    training = measure_flops(net, lambda: net(x), lambda out: F.cross_entropy(out, y))
    return forward / len(x), training / len(x)


class StepClock(L.Callback):
    """Times ``steps`` training steps after ``warmup`` untimed ones, then stops the fit.

    Reads the clock at the end of steps ``warmup`` and ``warmup + steps`` (synchronising the
    device only there), so the window covers whole steps: data, forward, backward, update and
    every callback. Samples memory at every step end (a host-side read, no sync).

    On the CPU, where every step finishes before the host goes on, it also keeps each timed
    step's duration and marks the diagnostics' measuring steps (``every_n_steps``), for the
    step-level overhead estimate of :func:`step_level_overhead`. On an accelerator host-side
    step times only show how fast kernels are queued, so they are not kept.
    """

    def __init__(self, warmup: int, steps: int, every_n_steps: int | None = None) -> None:
        self.warmup, self.steps, self.every_n_steps = warmup, steps, every_n_steps
        self.done, self.start, self.seconds, self.memory_mb = 0, None, None, 0.0
        self.step_seconds: list[float] = []
        self.measuring: list[bool] = []
        self._last = None

    def on_train_start(self, trainer, pl_module) -> None:
        _reset_memory(pl_module.device)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.done += 1
        now = time.perf_counter()
        if self.done > self.warmup:
            self.memory_mb = max(self.memory_mb, _memory_mb(pl_module.device))
            if pl_module.device.type == "cpu":
                self.step_seconds.append(now - self._last)
                # global_step is already incremented here; the diagnostics measured on the step
                # that made it a multiple of the interval (IntervalCallback.is_logging_step).
                self.measuring.append(bool(self.every_n_steps) and trainer.global_step % self.every_n_steps == 0)
        if self.done == self.warmup:
            _sync(pl_module.device)
            self.start = now = time.perf_counter()
        elif self.done == self.warmup + self.steps:
            _sync(pl_module.device)
            self.seconds = time.perf_counter() - self.start
            trainer.should_stop = True
        self._last = now


def step_level_overhead(windows: list[tuple[list[float], list[bool]]], every_n_steps: int) -> dict[str, float] | None:
    """Seconds per step from per-step times, robust to the machine's noise.

    A window's throughput is at the mercy of whatever else the machine did during it (on
    the 2-core VM, windows of the same variant spread by 10 %). Per-step times separate the
    two things that matter: the ordinary step (median over all windows' ordinary steps,
    which slow outliers do not move) and the extra time of the measuring step (its time
    minus its own window's median, median over windows). The cost per step is
    ``ordinary + extra / every_n_steps``.

    Args:
        windows: per window, (timed step durations, whether each step was a measuring step).
        every_n_steps: the diagnostics interval.
    Returns:
        ``ordinary_step_s``, ``measuring_step_extra_s`` and ``seconds_per_step``; None when
        no window has both kinds of step (e.g. on an accelerator, where none are kept).
    """
    ordinary, extra = [], []
    for seconds, measuring in windows:
        plain = [s for s, m in zip(seconds, measuring) if not m]
        if plain and any(measuring):
            ordinary += plain
            mid = statistics.median(plain)
            extra += [s - mid for s, m in zip(seconds, measuring) if m]
    if not ordinary or not extra:
        return None
    o, e = statistics.median(ordinary), statistics.median(extra)
    return {"ordinary_step_s": o, "measuring_step_extra_s": e, "seconds_per_step": o + e / every_n_steps}


class LightningVariant:
    """Variant (b) or (c): a module and trainer as ``residual_lab.run.build`` makes them, built
    once; each window is one more ``trainer.fit`` (Lightning resets ``should_stop`` per fit).

    Args:
        cfg: the run config (validation off).
        module, trainer: this variant's, from ``build(cfg)``.
        datamodule: shared by the variants, set up once.
        diagnostics: keep the :class:`~residual_lab.callbacks.IntervalCallback` diagnostics.
    """

    def __init__(self, cfg: DictConfig, module: L.LightningModule, trainer: L.Trainer,
                 datamodule: L.LightningDataModule, *, diagnostics: bool) -> None:
        self.cfg, self.module, self.trainer, self.datamodule = cfg, module, trainer, datamodule
        self._callbacks = [c for c in trainer.callbacks if diagnostics or not isinstance(c, IntervalCallback)]
        self.callbacks = [type(c).__name__ for c in self._callbacks]
        self.step_windows: list[tuple[list[float], list[bool]]] = []  # per-step times (CPU only)

    def window(self, warmup: int, steps: int) -> tuple[float, float]:
        """Run one window; return (seconds for ``steps`` steps, peak memory in MB)."""
        clock = StepClock(warmup, steps, self.cfg.diagnostics.every_n_steps)
        self.trainer.callbacks = [*self._callbacks, clock]
        with warnings.catch_warnings():
            # the bench fits without validation (training speed only), so under protocol=heldout
            # ModelCheckpoint's monitored val/error never comes: its warning is noise here
            warnings.filterwarnings("ignore", message=r"`ModelCheckpoint\(monitor=.*could not find the monitored key")
            # every window fits into the same run directory; the previous window's checkpoints are
            # expected there, and nobody resumes from a bench's
            warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
            self.trainer.fit(self.module, datamodule=self.datamodule)
        if clock.seconds is None:
            raise RuntimeError(f"the fit stopped after {clock.done} of {warmup + steps} steps of a window "
                               f"(trainer.max_steps={self.cfg.trainer.max_steps}, max_epochs too small?)")
        if clock.step_seconds:
            self.step_windows.append((clock.step_seconds, clock.measuring))
        return clock.seconds, clock.memory_mb


class _PILDataset(torch.utils.data.Dataset):
    """torchvision.datasets.CIFAR10's ``__getitem__``: HWC uint8 -> PIL image -> transform."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Callable) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


class ReferenceLoop:
    """Variant (a): the hand-written loop of a typical CIFAR ResNet repository.

    Args:
        net: a fresh copy of the same architecture, kept NCHW and fp32.
        optimizer: partial optimizer from the config (SGD by default), called with the params.
        images, labels: the training split, uint8 (N, 3, H, W) and int64, on the host.
        mean, std: per-channel statistics in [0, 1] units (the same as the pipeline's).
        batch_size: images per step.
        workers: DataLoader worker processes.
        device: where the net trains.
    """

    def __init__(self, net: nn.Module, optimizer: Callable, images: torch.Tensor, labels: torch.Tensor,
                 mean: torch.Tensor, std: torch.Tensor, *, batch_size: int, workers: int,
                 device: torch.device) -> None:
        import torchvision.transforms as T

        transform = T.Compose([
            T.RandomCrop(images.shape[-1], padding=4),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(mean.tolist(), std.tolist()),
        ])
        dataset = _PILDataset(images.permute(0, 2, 3, 1).contiguous().numpy(), labels.numpy(), transform)
        # Not persistent: with pinned memory, persistent workers make the process wait ~5 s per
        # worker at exit (pytorch/pytorch#81794): on a 16-core H200 host the bench printed its
        # table, then hung ~80 s. A bench's windows stay inside one epoch's iterator, so
        # persistence never entered the timing.
        self.loader = torch.utils.data.DataLoader(
            dataset, batch_size=batch_size, shuffle=True, drop_last=True, num_workers=workers,
            persistent_workers=False, pin_memory=device.type == "cuda")
        self.device = device
        self.net = net.to(device).train()
        self.optimizer = optimizer(params=self.net.parameters())
        self.batches = self._forever()
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # as such repositories set it

    def _forever(self):
        while True:
            yield from self.loader

    def step(self) -> float:
        images, labels = next(self.batches)
        images, labels = images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)
        loss = F.cross_entropy(self.net(images), labels)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return loss.item()  # the running-loss print such loops keep (a sync per step on GPU)

    def window(self, warmup: int, steps: int) -> tuple[float, float]:
        """Run one window; return (seconds for ``steps`` steps, peak memory in MB)."""
        _reset_memory(self.device)
        peak, start = 0.0, None
        for i in range(warmup + steps):
            if i == warmup:
                _sync(self.device)
                start = time.perf_counter()
            self.step()
            if i >= warmup:
                peak = max(peak, _memory_mb(self.device))
        _sync(self.device)
        return time.perf_counter() - start, peak

    def worker_rss_mb(self) -> float:
        """Resident memory of the DataLoader workers (separate processes), MB."""
        return sum(c.memory_info().rss for c in psutil.Process().children()) / 1e6


def peak_gflops(cfg: DictConfig, device: torch.device) -> tuple[float | None, str | None]:
    """The peak to compare against: ``bench.peak_gflops``, else Lightning's table, else None.

    Lightning 2.6's ``get_available_flops`` knows no CPU, matches an H200 only by a name with
    "SXM1"/"NVL1" in it and lists the H200's with-sparsity tensor-core peaks (2x dense):
    pass ``--peak-gflops`` where it has none or the wrong one.
    """
    if cfg.bench.peak_gflops:
        return float(cfg.bench.peak_gflops), "bench.peak_gflops"
    precision = str(cfg.trainer.precision)
    dtype = torch.bfloat16 if "bf16" in precision else torch.float16 if "16" in precision else torch.float32
    flops = get_available_flops(device, dtype)
    return (flops / 1e9, f"lightning get_available_flops({device_name(device)!r}, {dtype})") if flops else (None, None)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() \
        else platform.processor()
    return f"{model}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"


def benchmark(cfg: DictConfig) -> dict[str, Any]:
    """Measure every variant in ``cfg.bench.variants``; return (and write) the results."""
    validate_config(cfg, nodes={"bench": Options})
    b = cfg.bench
    if cfg.get("torch_threads"):  # as `run` does: a benchmark of a sweep job is one of its threads
        torch.set_num_threads(int(cfg.torch_threads))
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    window_cfg = cfg.copy()
    OmegaConf.update(window_cfg, "trainer.limit_val_batches", 0, force_add=True)  # training only
    # global_step runs on across a variant's windows: let the fit last for all of them.
    need = b.rounds * (b.warmup_steps + b.steps)
    if 0 < window_cfg.trainer.max_steps < need:
        OmegaConf.update(window_cfg, "trainer.max_steps", need)

    module, datamodule, trainer = build(window_cfg)
    device = trainer.strategy.root_device
    datamodule.trainer = trainer  # so a device-resident dataset lands on the fit's device
    datamodule.setup("fit")
    images, labels = datamodule.splits["train"]
    shape = tuple(images.shape[1:])

    built = [(module, trainer)]  # the first Lightning variant takes these; a second builds its own
    variants: dict[str, Any] = {}
    for name in b.variants:
        if name in ("full", "no_diagnostics"):
            own_module, own_trainer = built.pop() if built else build(window_cfg)[::2]
            variants[name] = LightningVariant(window_cfg, own_module, own_trainer, datamodule,
                                              diagnostics=name == "full")
        elif name == "reference":
            workers = b.reference_workers if b.reference_workers is not None else os.cpu_count()
            variants[name] = ReferenceLoop(instantiate(cfg.model), instantiate(cfg.optimizer),
                                           images.cpu(), labels.cpu(), datamodule.mean.cpu(), datamodule.std.cpu(),
                                           batch_size=datamodule.batch_size, workers=workers, device=device)

    fwd, train_flops = flops_per_image(cfg, shape)
    peak, peak_source = peak_gflops(cfg, device)

    batch = datamodule.batch_size
    seconds: dict[str, list[float]] = {n: [] for n in variants}
    memory: dict[str, float] = {n: 0.0 for n in variants}
    names = list(variants)
    # The reference has no diagnostics, so its windows need not span a diagnostic interval.
    steps = {n: b.reference_steps if n == "reference" and b.get("reference_steps") else b.steps for n in names}
    for r in range(b.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            s, m = variants[name].window(b.warmup_steps, steps[name])
            seconds[name].append(s)
            memory[name] = max(memory[name], m)
            log.info("round %d/%d %s: %.1f images/s", r + 1, b.rounds, name, steps[name] * batch / s)

    results: dict[str, Any] = {}
    for name in names:
        ips = [steps[name] * batch / s for s in seconds[name]]
        med = statistics.median(ips)
        gflops = med * train_flops / 1e9
        row = {
            "label": VARIANT_LABELS[name],
            "images_per_s": med,
            "images_per_s_windows": ips,
            "timed_steps_per_window": steps[name],
            "achieved_gflops": gflops,
            "fraction_of_peak": gflops / peak if peak else None,
            "peak_memory_mb": memory[name],
            "memory_kind": "max_allocated" if device.type == "cuda" else "process_rss",
        }
        if isinstance(variants[name], LightningVariant):
            row["callbacks"] = variants[name].callbacks
            row["step_level"] = step_level_overhead(variants[name].step_windows, cfg.diagnostics.every_n_steps)
        if name == "reference":
            row["worker_rss_mb"] = variants[name].worker_rss_mb()
            row["workers"] = variants[name].loader.num_workers
        results[name] = row

    def ratio(x: str, y: str) -> float | None:
        return results[x]["images_per_s"] / results[y]["images_per_s"] if x in results and y in results else None

    def paired_ratio(x: str, y: str) -> float | None:
        # Windows of one round run back to back, so a slow spell of the machine hits both.
        if x not in results or y not in results:
            return None
        return statistics.median(a / b for a, b in zip(results[x]["images_per_s_windows"],
                                                        results[y]["images_per_s_windows"]))

    def step_ratio(x: str, y: str) -> float | None:
        sx, sy = (results.get(n, {}).get("step_level") for n in (x, y))
        return sx["seconds_per_step"] / sy["seconds_per_step"] if sx and sy else None

    report = {
        "run_name": cfg.run_name,
        "date": time.strftime("%Y-%m-%d"),
        "device": device_name(device),
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "lightning": L.__version__},
        "config": {"depth": cfg.depth, "shortcut": cfg.shortcut, "block": cfg.block, "width": cfg.width,
                   "norm": cfg.norm, "batch_size": batch, "precision": str(cfg.trainer.precision),
                   "data": cfg.data.source._target_.rsplit(".", 1)[-1], "compile": cfg.compile,
                   "channels_last": cfg.task.channels_last,
                   "diagnostics_every_n_steps": cfg.diagnostics.every_n_steps},
        "protocol": {"warmup_steps": b.warmup_steps, "timed_steps_per_window": b.steps,
                     "reference_timed_steps_per_window": steps.get("reference"), "rounds": b.rounds,
                     "statistic": "median over windows"},
        "flops_per_image": {"forward": fwd, "training": train_flops,
                            "training_rule": "forward + backward of the cross-entropy",
                            "counted_with": "lightning measure_flops (torch FlopCounterMode: conv + matmul)"},
        "dataset_in_memory_mb": sum(x.nbytes + y.nbytes for x, y in datamodule.splits.values()) / 1e6,
        "peak_gflops": peak,
        "peak_source": peak_source,
        "variants": results,
        "ratios": {"full_over_reference": ratio("full", "reference"),
                   "no_diagnostics_over_full": ratio("no_diagnostics", "full"),
                   # median over rounds of the ratio of the two windows of the same round
                   "no_diagnostics_over_full_paired": paired_ratio("no_diagnostics", "full"),
                   # the same ratio from per-step times (CPU only): full's seconds per step over no_diagnostics'
                   "no_diagnostics_over_full_step_level": step_ratio("full", "no_diagnostics")},
    }
    print(format_table(report))
    write_json(b.output, report)
    print(f"wrote {b.output}")
    return report


def format_table(report: dict[str, Any]) -> str:
    """The human-readable form of :func:`benchmark`'s result."""
    c, f = report["config"], report["flops_per_image"]
    lines = [
        f"residual_lab bench {report['date']}: {report['run_name']}, batch {c['batch_size']}, "
        f"precision {c['precision']}, data {c['data']}, compile {c['compile']}",
        f"device: {report['device']}; torch {report['versions']['torch']}, lightning {report['versions']['lightning']}",
        f"FLOPs/image: forward {f['forward'] / 1e9:.4f} GFLOP, training {f['training'] / 1e9:.4f} "
        f"GFLOP ({f['training_rule']}; {f['counted_with']})",
        f"dataset in memory (uint8 train/val/test + labels): {report['dataset_in_memory_mb']:.0f} MB",
        f"protocol: {report['protocol']['rounds']} interleaved windows per variant of "
        + ", ".join(f"{n} {row['timed_steps_per_window']}" for n, row in report["variants"].items())
        + f" timed steps, each after {report['protocol']['warmup_steps']} warm-up steps; median",
        "",
        f"{'variant':<66} {'images/s':>9} {'GFLOP/s':>8} {'% peak':>7} {'peak MB':>8}  windows (images/s)",
    ]
    for row in report["variants"].values():
        frac = f"{100 * row['fraction_of_peak']:.1f}" if row["fraction_of_peak"] is not None else "-"
        windows = ", ".join(f"{x:.1f}" for x in row["images_per_s_windows"])
        lines.append(f"{row['label']:<66} {row['images_per_s']:>9.1f} {row['achieved_gflops']:>8.1f} "
                     f"{frac:>7} {row['peak_memory_mb']:>8.0f}  {windows}")
    r = report["ratios"]
    mem = next(iter(report["variants"].values()))["memory_kind"]
    lines += [
        "",
        "b/a (pipeline speed-up) = " + (f"{r['full_over_reference']:.2f}x" if r["full_over_reference"] else "-")
        + ";  c/b (diagnostics overhead) = "
        + (f"{r['no_diagnostics_over_full']:.3f}" if r["no_diagnostics_over_full"] else "-")
        + (f" (ratio of medians); {r['no_diagnostics_over_full_paired']:.3f} (median of per-round ratios)"
           if r.get("no_diagnostics_over_full_paired") else ""),
    ]
    steps = {n: row["step_level"] for n, row in report["variants"].items() if row.get("step_level")}
    if steps:
        lines.append("step level (CPU; median ordinary step + median extra of the measuring step / interval):")
        lines += [f"  {n}: ordinary step {s['ordinary_step_s'] * 1e3:.1f} ms, measuring step "
                  f"{s['measuring_step_extra_s'] * 1e3:+.1f} ms, {s['seconds_per_step'] * 1e3:.2f} ms/step"
                  for n, s in steps.items()]
        if r.get("no_diagnostics_over_full_step_level"):
            lines.append(f"  c/b at step level = {r['no_diagnostics_over_full_step_level']:.4f}")
    lines += [
        f"peak MB: {mem}" + (" of the whole process (all variants share it)" if mem == "process_rss" else "")
        + (f"; peak {report['peak_gflops']:.0f} GFLOP/s from {report['peak_source']}" if report["peak_gflops"]
           else "; no peak given (--peak-gflops N)"),
    ]
    return "\n".join(lines)


def _translate_flags(argv: list[str]) -> list[str]:
    """Turn ``--peak-gflops N`` / ``--peak-gflops=N`` into the override ``bench.peak_gflops=N``."""
    out, i = [], 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--peak-gflops" and i + 1 < len(argv):
            out.append(f"bench.peak_gflops={argv[i + 1]}")
            i += 2
            continue
        if arg.startswith("--peak-gflops="):
            arg = "bench.peak_gflops=" + arg.split("=", 1)[1]
        out.append(arg)
        i += 1
    return out


@hydra.main(version_base="1.3", config_path=hydra_config_dir(), config_name="bench")
@single_run_job
def _main(cfg: DictConfig) -> None:
    benchmark(cfg)


@entry_point
def main() -> None:
    """``python -m residual_lab.bench``: bad input and unwritable outputs end in one sentence
    and exit code 2 (:func:`residual_lab.errors.entry_point`)."""
    sys.argv = [sys.argv[0], *_translate_flags(sys.argv[1:])]
    quiet_library_noise()
    _main()


if __name__ == "__main__":
    main()
