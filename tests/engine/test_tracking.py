"""`tracking: [tensorboard, mlflow, wandb]`: a real MLflow file store and a W&B offline run get the training's
params, its metrics at every logged step, and the model artifact's URI."""

import importlib
import json
import os

import pytest

from dorl import config
from dorl.errors import ConfigError
from dorl.stages.train import train

TF = ["tf.max_length=32", "tf.batch_size=4", "tf.micro_batch_size=2", "tf.log_every=2", "tf.epochs=1"]


def _need(module):
    try:
        return importlib.import_module(module)
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail(f"{module} is not installed: the dev extra installs it (pip install -e '.[dev]')")
        pytest.skip(f"{module} is not installed (pip install 'dorl[{module}]'); CI installs it and fails without it")


def test_mlflow_and_wandb_offline(tmp_path, data_artifact, monkeypatch):
    _need("mlflow")
    _need("wandb")
    from mlflow.tracking import MlflowClient

    store = f"file:{tmp_path / 'mlruns'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 asks for the opt-in (maintenance mode)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = config.load(preset="tiny", sets=[*TF, "run=001", "tracking=[tensorboard, mlflow, wandb]"])
    art = train(cfg, method="tf", data_uri=data_artifact.uri, out_uri=str(tmp_path / "tf")).artifact
    log = [json.loads(x) for x in (tmp_path / "tf" / "train_log.jsonl").read_text().splitlines()]
    train_rows = [r for r in log if r["kind"] == "train"]
    assert len(train_rows) >= 2 and any(f.startswith("tensorboard/") for f in art.files)

    client = MlflowClient(tracking_uri=store)
    exp = client.get_experiment_by_name("dorl")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.run_name == f"001/{data_artifact.info['dataset']}/tf" and run.info.status == "FINISHED"
    assert run.data.params["train.lr"] == str(cfg.tf.lr) and run.data.params["method"] == "tf"
    assert run.data.tags["dorl.artifact_uri"] == art.uri == run.data.params["dorl.artifact_uri"]
    history = client.get_metric_history(run.info.run_id, "train/loss")
    assert [(m.step, m.value) for m in history] == [(r["step"], pytest.approx(r["loss"])) for r in train_rows]
    val = client.get_metric_history(run.info.run_id, "eval/val_loss")
    assert [m.step for m in val] == [r["step"] for r in log if r["kind"] == "eval"]

    (offline,) = list((tmp_path / "wandb").glob("offline-run-*"))
    (records,) = list(offline.glob("run-*.wandb"))
    assert records.stat().st_size > 0
    blob = records.read_bytes()  # the run's protobuf records, for `wandb sync`: keys and strings appear as-is
    assert b"train/loss" in blob and b"eval/val_loss" in blob and art.uri.encode() in blob


def test_tensorboard_off_and_a_missing_package_is_a_user_error(tmp_path, data_artifact, monkeypatch):
    cfg = config.load(preset="tiny", sets=[*TF, "tracking=[]"])
    art = train(cfg, method="tf", data_uri=data_artifact.uri, out_uri=str(tmp_path / "tf")).artifact
    assert not any(f.startswith("tensorboard/") for f in art.files) and "train_log.jsonl" in art.files
    with pytest.raises(ConfigError, match="unknown|not allowed"):
        config.load(sets=["tracking=[neptune]"])
    import sys

    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if not installed
    cfg = config.load(preset="tiny", sets=[*TF, "tracking=[mlflow]"])
    with pytest.raises(ConfigError, match=r"pip install 'dorl\[mlflow\]'"):
        train(cfg, method="tf", data_uri=data_artifact.uri, out_uri=str(tmp_path / "tf2"))


# ---------------------------------------------------------------- training never dies for its logs (issue 27)


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: connections are refused


def test_unreachable_mlflow_is_transient_before_training(tmp_path, data_artifact, monkeypatch):
    _need("mlflow")
    from dorl.errors import TransientError

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # MLflow's own retries would take minutes
    cfg = config.load(preset="tiny", sets=[*TF, "tracking=[mlflow]"])
    with pytest.raises(TransientError) as e:
        train(cfg, method="tf", data_uri=data_artifact.uri, out_uri=str(tmp_path / "tf"))
    assert "\n" not in str(e.value) and "MLflow" in str(e.value) and "127.0.0.1" in str(e.value)
    assert not (tmp_path / "tf" / "manifest.json").exists()


def test_file_store_refused_by_mlflow_is_one_line_user_error(tmp_path, data_artifact, monkeypatch):
    _need("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"file:{tmp_path / 'mlruns'}")
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    cfg = config.load(preset="tiny", sets=[*TF, "tracking=[mlflow]"])
    with pytest.raises(ConfigError) as e:
        train(cfg, method="tf", data_uri=data_artifact.uri, out_uri=str(tmp_path / "tf"))
    assert "\n" not in str(e.value) and "MLFLOW_ALLOW_FILE_STORE=true" in str(e.value), str(e.value)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "bogus://x")
    with pytest.raises(ConfigError) as e:
        train(cfg, method="tf", data_uri=data_artifact.uri, out_uri=str(tmp_path / "tf"))
    assert "\n" not in str(e.value) and "bogus://x" in str(e.value)


def test_mlflow_failing_during_training_is_a_warning(tmp_path, data_artifact, monkeypatch, caplog):
    _need("mlflow")
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"file:{tmp_path / 'mlruns'}")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    calls = []
    real = MlflowClient.log_batch

    def flaky(self, run_id, metrics=(), params=(), tags=(), **kw):
        if metrics:  # the server goes away once training has started
            calls.append(len(metrics))
            raise MlflowException("API request to http://x/api failed with exception Connection refused")
        return real(self, run_id, metrics=metrics, params=params, tags=tags, **kw)

    monkeypatch.setattr(MlflowClient, "log_batch", flaky)
    monkeypatch.setattr(MlflowClient, "set_terminated", lambda *a, **k: (_ for _ in ()).throw(OSError("gone")))
    cfg = config.load(preset="tiny", sets=[*TF, "tracking=[tensorboard, mlflow]"])
    with caplog.at_level("WARNING", logger="dorl"):
        art = train(cfg, method="tf", data_uri=data_artifact.uri, out_uri=str(tmp_path / "tf")).artifact
    assert "train_log.jsonl" in art.files and any(f.startswith("tensorboard/") for f in art.files)
    assert len(calls) == 1  # tried once, then left alone: a dead server must not slow every step
    warnings = [r.getMessage() for r in caplog.records if "MLflow" in r.getMessage()]
    assert len(warnings) == 1 and "training goes on without it" in warnings[0], warnings


def test_cli_unreachable_mlflow_exits_75(tmp_path, data_artifact):
    _need("mlflow")
    from tests.conftest import run_dorl

    env = {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{_closed_port()}", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
    sets = [x for s in [*TF, "tracking=[mlflow]"] for x in ("--set", s)]
    r = run_dorl(
        "train", "--method", "tf", "--data", data_artifact.uri, "--out", str(tmp_path / "tf"), "--preset", "tiny",
        *sets, env=env, timeout=300,
    )  # fmt: skip
    assert r.returncode == 75, r.stderr[-3000:]
    errors = [x for x in r.stderr.splitlines() if x.startswith("error")]
    assert len(errors) == 1 and "Traceback" not in r.stderr and "MLflow" in errors[0]
