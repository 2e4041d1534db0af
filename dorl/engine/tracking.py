"""Experiment trackers beside TensorBoard: MLflow and Weights & Biases, optional extras.

`tracking: [tensorboard, mlflow, wandb]` (top-level config) picks them. Each gets the run's parameters (the
stage config, flattened), every train/eval record's numbers at its optimizer step, and the URI of the model
artifact the run commits to. Their own environment variables say where: MLFLOW_TRACKING_URI (e.g. a `file:`
folder or a server) and MLFLOW_EXPERIMENT_NAME (default "dorl"); WANDB_PROJECT (default "dorl"), WANDB_MODE
(`offline` writes run files under WANDB_DIR for a later `wandb sync`). Only rank 0 tracks. A resumed run
starts a new tracker run that continues from the checkpoint's step.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from dorl.errors import ConfigError


@dataclass
class RunInfo:
    """What a tracker is told about the run."""

    name: str  # e.g. demo/abcd/tf
    artifact_uri: str  # where the model artifact is committed
    params: dict = field(default_factory=dict)  # nested: flattened with dots
    tracking: tuple[str, ...] = ("tensorboard",)


def flatten(data: dict, prefix: str = "") -> dict[str, str]:
    out = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = str(v)
    return out


def _need(module: str, extra: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"tracking: {extra} needs the {extra} package: pip install 'dorl[{extra}]'") from None


class MLflow:
    """One MLflow run through the client API (no process-wide active run): params, metrics per step, tags."""

    def __init__(self, run: RunInfo, start_step: int):
        _need("mlflow", "mlflow")
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient()
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "dorl")
        exp = self.client.get_experiment_by_name(name)
        exp_id = exp.experiment_id if exp is not None else self.client.create_experiment(name)
        tags = {"dorl.artifact_uri": run.artifact_uri, "dorl.start_step": str(start_step)}
        self.run_id = self.client.create_run(exp_id, run_name=run.name, tags=tags).info.run_id
        params = [Param(k, v[:6000]) for k, v in flatten(run.params).items()]
        params.append(Param("dorl.artifact_uri", run.artifact_uri))
        for i in range(0, len(params), 100):  # MLflow's limit per batch
            self.client.log_batch(self.run_id, params=params[i : i + 100])

    def log(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step) for k, v in metrics.items()])

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


class WandB:
    def __init__(self, run: RunInfo, start_step: int):
        wandb = _need("wandb", "wandb")
        config = {**flatten(run.params), "dorl.artifact_uri": run.artifact_uri, "dorl.start_step": start_step}
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "dorl"), name=run.name, config=config)

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.run.log(metrics, step=step)

    def close(self) -> None:
        self.run.finish()


def open_trackers(run: RunInfo | None, start_step: int) -> list:
    """The trackers other than TensorBoard (which the Monitor writes itself)."""
    if run is None:
        return []
    kinds = {"mlflow": MLflow, "wandb": WandB}
    return [kinds[t](run, start_step) for t in dict.fromkeys(run.tracking) if t in kinds]
