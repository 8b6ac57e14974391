"""The loggers people use (``logger=tensorboard|csv|mlflow|wandb``), training speed in them,
``experiment=debug`` and early stopping. MLflow and W&B are tested offline: every
connection this process opens to a non-loopback address is refused, and the HTTP proxies point
at a closed port, so a logger that tried the network would fail the run."""

from __future__ import annotations

import csv
import json
import socket
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from residual_lab.run import build, train


LOOPBACK = ("127.0.0.1", "::1", "localhost")


@pytest.fixture
def no_network(monkeypatch):
    """No name resolves and no connection opens except to this machine (loopback and Unix
    sockets, through which W&B reaches its own service process); processes started from here
    (W&B's service) get HTTP proxies at a closed port."""
    real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect

    def getaddrinfo(host, *args, **kwargs):
        if host not in (*LOOPBACK, None):
            raise socket.gaierror(f"test_loggers: no network (tried to resolve {host})")
        return real_getaddrinfo(host, *args, **kwargs)

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in LOOPBACK:
            raise OSError(f"test_loggers: no network (tried {address})")
        return real_connect(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")


# --- training speed -----------------------------------------------------------------------

class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class _Recorder:
    def __init__(self) -> None:
        self.logged: list[tuple[int, dict]] = []

    def log_metrics(self, metrics, step):
        self.logged.append((step, metrics))


def test_train_speed_logs_images_per_second_and_seconds_per_step_per_window_without_validation(monkeypatch):
    from residual_lab.callbacks import train_speed

    clock = _Clock()
    monkeypatch.setattr(train_speed.time, "perf_counter", clock)
    recorder = _Recorder()
    trainer = SimpleNamespace(global_step=0, log_every_n_steps=2, accumulate_grad_batches=1, loggers=[recorder],
                              datamodule=SimpleNamespace(batch_size=4))
    speed = train_speed.TrainSpeed(skip_steps=0)

    def step(at: float) -> None:  # one optimizer step that ends at clock time `at`
        speed.on_train_batch_start(trainer, None, None, 0)
        trainer.global_step += 1
        clock.now = at
        speed.on_train_batch_end(trainer, None, None, None, 0)

    step(4.0)
    step(10.0)                      # window 1: 2 steps in 10 s
    clock.now = 11.0
    speed.on_validation_start(trainer, None)
    clock.now = 14.0                # 3 s of validation, left out of window 2
    speed.on_validation_end(trainer, None)
    step(17.0)
    step(20.0)                      # window 2: 2 steps in 20 - 10 - 3 = 7 s
    clock.now = 21.0
    speed.on_train_end(trainer, None)
    assert recorder.logged == [(1, {"perf/images_per_s": 8 / 10, "perf/s_per_step": 5.0}),
                               (3, {"perf/images_per_s": 8 / 7, "perf/s_per_step": 3.5})]
    assert speed.images_per_s == 16 / 18  # the whole fit for summary.json: 4 steps x 4 images in 21 - 3 s


def test_training_speed_reaches_tensorboard_at_the_train_loss_steps(make_cfg, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    summary = train(make_cfg("trainer.max_steps=30", "callbacks=default", "~callbacks.progress_bar",
                             "~callbacks.diagnostic_figures", "~callbacks.model_checkpoint"))
    acc = EventAccumulator(str(tmp_path / "tensorboard" / "resnet-8-identity"))
    acc.Reload()
    # log_every_n_steps=10; the first 5 steps are warm-up, so the first window is steps 6-10.
    speed = acc.Scalars("perf/images_per_s")
    assert [e.step for e in speed] == [e.step for e in acc.Scalars("train/loss")] == [9, 19, 29]
    per_step = {e.step: e.value for e in acc.Scalars("perf/s_per_step")}
    for e in speed:
        assert e.value * per_step[e.step] == pytest.approx(64, rel=1e-4)  # images per step = batch size
    assert summary["train_images_per_s"] > 0


# --- loggers ------------------------------------------------------------------------------

def test_csv_logger_writes_the_curves_the_hyperparameters_and_the_final_errors(make_cfg, tmp_path):
    summary = train(make_cfg("logger=csv", "trainer.max_steps=20"))
    assert summary["status"] == "completed"
    rows = list(csv.DictReader((tmp_path / "csv" / "metrics.csv").open()))
    assert [r["step"] for r in rows if r.get("train/loss")] == ["9", "19"]
    assert float(next(r["hp/test_error"] for r in rows if r.get("hp/test_error"))) == pytest.approx(summary["test_error"])
    hparams = yaml.safe_load((tmp_path / "csv" / "hparams.yaml").read_text())
    assert hparams["depth"] == 8 and hparams["shortcut"] == "identity"
    assert not (tmp_path / "tensorboard").exists()


def test_two_loggers_at_once(make_cfg, tmp_path):
    cfg = make_cfg("logger=[tensorboard,csv]")
    _, _, trainer = build(cfg)
    assert [type(lg).__name__ for lg in trainer.loggers] == ["TensorBoardLogger", "CSVLogger"]


def test_mlflow_logs_to_a_local_store_without_a_network(make_cfg, tmp_path, no_network):
    pytest.importorskip("mlflow")
    pytest.importorskip("sqlalchemy")
    from mlflow.tracking import MlflowClient

    summary = train(make_cfg("logger=mlflow", "trainer.max_steps=20", f"paths.log_dir={tmp_path / 'logs'}"))
    assert summary["status"] == "completed"
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'logs' / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("residual_lab").experiment_id])
    assert run.info.run_name == "resnet-8-identity"
    assert run.data.params["depth"] == "8" and run.data.params["shortcut"] == "identity"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")] == [9, 19]
    assert run.data.metrics["hp/test_error"] == pytest.approx(summary["test_error"])


def _wandb_records(path: Path):
    """The records of an offline W&B run file (``run-<id>.wandb``, what ``wandb sync`` uploads):
    LevelDB's log format (32 KiB blocks; records of type full 1, first 2, middle 3, last 4 with
    a 7-byte header) after a 7-byte ``:W&B`` file header, each record a ``wandb.proto`` Record."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, pending = 7, 32768, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def test_wandb_logs_offline_without_a_network(make_cfg, tmp_path, monkeypatch, no_network):
    wandb = pytest.importorskip("wandb")
    for var, value in (("WANDB_CONFIG_DIR", tmp_path / "wandb-config"), ("WANDB_CACHE_DIR", tmp_path / "wandb-cache"),
                       ("WANDB_DATA_DIR", tmp_path / "wandb-data"), ("WANDB_SILENT", "true")):
        monkeypatch.setenv(var, str(value))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    summary = train(make_cfg("logger=wandb", "trainer.max_steps=20"))
    wandb.finish()
    assert summary["status"] == "completed"
    (run_file,) = (tmp_path / "wandb").glob("offline-run-*/run-*.wandb")
    # W&B's service process writes the file and may close it just after finish() returns.
    deadline = time.monotonic() + 60
    while not any(r.WhichOneof("record_type") == "exit" for r in _wandb_records(run_file)):
        assert time.monotonic() < deadline, f"{run_file} was never completed"
        time.sleep(0.5)
    records = list(_wandb_records(run_file))
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert (run.display_name, run.project) == ("resnet-8-identity", "residual_lab")
    config = {i.key: json.loads(i.value_json) for r in records if r.WhichOneof("record_type") == "config"
              for i in r.config.update}
    assert config["depth"] == 8 and config["shortcut"] == "identity"
    rows = [{i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
            for r in records if r.WhichOneof("record_type") == "history"]
    assert [row["trainer/global_step"] for row in rows if "train/loss" in row] == [9, 19]
    (final,) = [row["hp/test_error"] for row in rows if "hp/test_error" in row]
    assert final == pytest.approx(summary["test_error"])


# --- experiment=debug and early stopping -------------------------------------------------

def test_debug_experiment_runs_a_few_steps_with_every_callback_and_anomaly_detection(tmp_path):
    from tests.helpers import compose_config

    cfg = compose_config("experiment=debug", output_dir=tmp_path)
    default_callbacks = yaml.safe_load((Path(__file__).parent.parent / "conf" / "callbacks" / "default.yaml").read_text())
    assert set(cfg.callbacks) == set(default_callbacks)  # none dropped; early_stopping switched on
    assert all(cfg.callbacks.values())
    _, _, trainer = build(cfg)
    assert trainer._detect_anomaly is True
    assert {type(c).__name__ for c in trainer.callbacks} >= {"EarlyStopping", "DiagnosticFigures", "GradNorms",
                                                            "BlockInputGradients", "BlockRMS", "TrainSpeed"}
    summary = train(cfg)
    assert (summary["status"], summary["steps"]) == ("completed", 6)
    assert summary["diagnostics"]["grad_norm"]["step"] == 5  # measured at steps 3 and 6 (0-based 2, 5)
    assert (tmp_path / "diagnostics" / "grad_norm_heatmap.png").is_file()


def test_early_stopping_is_off_by_default_and_stops_a_run_that_stopped_improving(make_cfg):
    _, _, trainer = build(make_cfg())
    assert not [c for c in trainer.callbacks if type(c).__name__ == "EarlyStopping"]
    # An improvement must be 100 points of validation error: none after the first validation
    # (step 5), so with patience 1 the next validation (step 10) stops the 40-step run.
    summary = train(make_cfg("callbacks=early_stopping", "callbacks.early_stopping.patience=1",
                             "callbacks.early_stopping.min_delta=100",
                             "trainer.val_check_interval=5", "~callbacks.progress_bar", "~callbacks.diagnostic_figures"))
    assert (summary["status"], summary["steps"]) == ("completed", 10)
