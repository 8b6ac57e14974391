"""Stop a run cleanly when its loss diverges or when it is asked to (SIGINT/SIGTERM).

A sweep is hours of compute: one diverging or interrupted run must end with a clear
status in its summary.json and a resumable checkpoint, never take the sweep down.
"""

from __future__ import annotations

import signal
from pathlib import Path

import lightning as L
import torch


class Diverged(Exception):
    """The training loss became NaN or inf."""

    def __init__(self, step: int, loss: float) -> None:
        super().__init__(f"training loss became {loss} at step {step}")
        self.step, self.loss = step, loss


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived; a checkpoint was saved at a step boundary."""

    def __init__(self, step: int, signum: int, checkpoint: str) -> None:
        super().__init__(f"{signal.Signals(signum).name} at step {step}; checkpoint saved to {checkpoint}")
        self.step, self.signum, self.checkpoint = step, signum, checkpoint


class RunGuard(L.Callback):
    """Divergence and signal handling at step boundaries, with no per-step host sync.

    Divergence: the first non-finite loss's step is recorded on the device every step (an
    elementwise op, no sync) and read on the host every ``check_every_n_steps``, so the
    run stops at most that many steps late but reports the exact step it diverged.

    Signals: the handler only sets a flag; the next step boundary saves
    ``checkpoints/interrupted.ckpt`` (model, optimizer, schedule, loop and data-loader
    position) and stops, so the checkpoint is never taken halfway through an update.
    A second signal falls back to the previous handler (e.g. KeyboardInterrupt).

    Args:
        checkpoint_dir: where ``interrupted.ckpt`` goes.
        check_every_n_steps: steps between host reads of the divergence flag.
    """

    def __init__(self, checkpoint_dir: str, check_every_n_steps: int = 50) -> None:
        self.checkpoint_dir = Path(checkpoint_dir)
        self.check_every_n_steps = max(1, check_every_n_steps)
        self.signum: int | None = None
        self._first_bad: torch.Tensor | None = None
        self._bad_loss: torch.Tensor | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:  # second signal: give up on graceful
            previous = self._previous.get(signum)
            if callable(previous):
                previous(signum, frame)
            raise KeyboardInterrupt
        self.signum = signum

    def on_fit_start(self, trainer, pl_module) -> None:
        self._first_bad = torch.full((), -1, dtype=torch.long, device=pl_module.device)
        self._bad_loss = torch.zeros((), device=pl_module.device)
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. some launchers): no signal handling
                pass

    def on_fit_end(self, trainer, pl_module) -> None:
        self._restore_handlers()

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._restore_handlers()

    def _restore_handlers(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"].detach() if isinstance(outputs, dict) else outputs.detach()
        first = (self._first_bad < 0) & ~torch.isfinite(loss)
        step = trainer.global_step  # already counts this step's update (1-based)
        self._first_bad = torch.where(first, torch.full_like(self._first_bad, step), self._first_bad)
        self._bad_loss = torch.where(first, loss.float(), self._bad_loss)
        if step % self.check_every_n_steps == 0 or step >= trainer.max_steps > 0:
            bad_step = int(self._first_bad)
            if bad_step >= 0:
                raise Diverged(bad_step, float(self._bad_loss))
        if self.signum is not None:
            path = self.checkpoint_dir / "interrupted.ckpt"
            trainer.save_checkpoint(path, weights_only=False)  # the full state: resume continues from it
            raise Interrupted(step, self.signum, str(path))
