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
