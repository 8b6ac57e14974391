"""The loggers beside TensorBoard (``logger=csv|mlflow|wandb``, conf/logger/).

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
