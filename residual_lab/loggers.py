"""The loggers (``logger=tensorboard|csv|mlflow|wandb``, conf/logger/).

Each is Lightning's own logger, taking the call :func:`residual_lab.run.train` makes at the end
of a run, ``log_hyperparams(params, metrics)``: TensorBoard's form, which fills its HParams
table. Lightning's CSV, MLflow and W&B loggers take the parameters only (a second argument is a
TypeError after the whole run has trained); these log the final metrics as ordinary metrics
beside them, which is how those tools' run tables show results.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning.pytorch import loggers
from lightning.pytorch.utilities import rank_zero_only


class _FinalMetrics:
    """``log_hyperparams(params, metrics)``: the parameters, then ``metrics`` as metrics,
    written at once."""

    @rank_zero_only
    def log_hyperparams(self, params: Any, metrics: dict[str, float] | None = None) -> None:
        super().log_hyperparams(params)
        if metrics:
            self.log_metrics(dict(metrics))
        self.save()  # the call comes after the trainer has finished: nothing would flush it later


class CSVLogger(_FinalMetrics, loggers.CSVLogger):
    """``<save_dir>/<name>/metrics.csv`` (a row per logged step) and ``hparams.yaml``: no
    extra package, readable by anything. A resumed run's file holds the sessions since the
    resume only (Lightning deletes it when a new writer starts in the folder); TensorBoard's
    events keep every session."""


class MLFlowLogger(_FinalMetrics, loggers.MLFlowLogger):
    """An MLflow run per job; conf/logger/mlflow.yaml points it at a local SQLite store (no
    server, no network). Needs ``mlflow`` or ``mlflow-skinny`` with SQLAlchemy and Alembic
    (the ``mlflow`` extra)."""

    def __init__(self, *args: Any, tracking_uri: str | None = None, **kwargs: Any) -> None:
        if tracking_uri and tracking_uri.startswith("sqlite:///"):
            # SQLite makes the database file but not its folder (logs/ before the first run).
            Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        super().__init__(*args, tracking_uri=tracking_uri, **kwargs)


class WandbLogger(_FinalMetrics, loggers.WandbLogger):
    """A W&B run per job; conf/logger/wandb.yaml runs it offline (``wandb sync <dir>``
    uploads it later). Needs ``wandb`` (the ``wandb`` extra)."""


#: summary.json fields logged as hyper-parameters: what tells one run from another (the
#: identifying fields of residual_lab.results.loading) and the parameter count (STYLE.md: equal
#: budgets shown beside the comparison).
HPARAM_KEYS = ("model", "depth", "shortcut", "block", "width", "norm", "init", "seed", "params", "dataset",
               "protocol", "data", "batch_size", "optimizer", "lr", "max_steps", "precision")


def run_hparams(cfg: Any, summary: dict[str, Any]) -> dict[str, Any]:
    """A finished run's hyper-parameters: :data:`HPARAM_KEYS` from its summary, then every setting
    of its optimizer and schedule (``optimizer.momentum``, ``scheduler.warmup_steps``, the
    schedule's function as ``scheduler``), so a sweep over any of them shows in the HParams table."""
    out = {k: summary[k] for k in HPARAM_KEYS if summary.get(k) is not None}
    for group in ("optimizer", "scheduler"):
        node = cfg.get(group) if cfg is not None else None
        for key, value in (dict(node) if node is not None else {}).items():
            if key == "_target_":
                out.setdefault(group, str(value).rsplit(".", 1)[-1])
            elif not key.startswith("_") and key not in out:
                out[f"{group}.{key}"] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return out


class TensorBoardLogger(loggers.TensorBoardLogger):
    """Lightning's TensorBoard logger whose hyper-parameters TensorBoard's HParams table compares
    across every run of a logdir.

    Lightning writes, with each run's hyper-parameters, an "experiment" summary built from that
    run alone. TensorBoard takes the first such summary it finds as the whole logdir's
    experiment, so every hyper-parameter reads "not differing" (the table hides ``shortcut`` in a
    plain-vs-residual sweep). Writing only each run's session (its values and end status) lets
    TensorBoard build the experiment from all runs, marking what differs. Metrics: the run's
    final ``hp/`` scalars, listed with its other scalar tags.
    """

    @rank_zero_only
    def log_hyperparams(self, params: Any, metrics: dict[str, float] | None = None, step: int | None = None) -> None:
        from lightning.fabric.utilities.logger import _convert_params, _flatten_dict
        from torch.utils.tensorboard.summary import hparams

        params = _convert_params(params)
        self.hparams.update(params)  # hparams.yaml, as Lightning's
        params = self._sanitize_params(_flatten_dict(params))
        if metrics is None and self._default_hp_metric:
            metrics = {"hp_metric": -1}
        if not metrics:
            return
        self.log_metrics(dict(metrics), step)
        _, session_start, session_end = hparams(params, dict(metrics))
        writer = self.experiment._get_file_writer()
        writer.add_summary(session_start, step)
        writer.add_summary(session_end, step)
        writer.flush()
