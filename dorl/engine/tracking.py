"""Experiment trackers beside TensorBoard: MLflow and Weights & Biases, optional extras.

`tracking: [tensorboard, mlflow, wandb]` (top-level config) picks them. Each gets the run's parameters (the
stage config, flattened), every train/eval record's numbers at its optimizer step, and the URI of the model
artifact the run commits to. Their own environment variables say where: MLFLOW_TRACKING_URI (e.g. a `file:`
folder or a server) and MLFLOW_EXPERIMENT_NAME (default "dorl"); WANDB_PROJECT (default "dorl"), WANDB_MODE
(`offline` writes run files under WANDB_DIR for a later `wandb sync`). Only rank 0 tracks. A resumed run
starts a new tracker run that continues from the checkpoint's step.

Training never dies for its logs (TensorBoard and train_log.jsonl in the artifact hold every number anyway):
- opening a tracker, before the first step, fails with one line: a server that cannot be reached, times out or
  throttles is `TransientError` (exit 75, retried); anything else it refuses (a `file:` store MLflow 3 will not
  open, an unknown scheme, a 401/403) is `ConfigError` (exit 2);
- a tracker that fails during training is a warning, once, and is not called again for the rest of the run.
MLflow's own HTTP retries come first (MLFLOW_HTTP_REQUEST_MAX_RETRIES, MLFLOW_HTTP_REQUEST_TIMEOUT).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field

from dorl.errors import ConfigError, TransientError

log = logging.getLogger("dorl.tracking")


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


# ---------------------------------------------------------------- failures: transient, refused, or a warning

# What a tracker's client says when the server could not be reached or asked to come back later.
_TRANSIENT_TEXT = (
    "failed with exception",  # MLflow: "API request to ... failed with exception <requests' error>"
    "Max retries exceeded",
    "timed out",
    "Connection refused",
    "Connection reset",
    "Connection aborted",
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "NameResolutionError",
    "too many 5",
    "too many 429",
)
_TRANSIENT_CODES = {"TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED", "DEADLINE_EXCEEDED"}
_TRANSIENT_TYPES = {"CommError", "ConnectionError", "Timeout", "ConnectTimeout", "ReadTimeout", "TimeoutError"}


def _first_line(e: BaseException, limit: int = 300) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _where(kind: str) -> str:
    if kind == "mlflow":
        return f"MLflow at {os.environ.get('MLFLOW_TRACKING_URI') or '(MLFLOW_TRACKING_URI unset: ./mlruns)'}"
    return f"W&B (WANDB_MODE={os.environ.get('WANDB_MODE', 'online')})"


def is_transient(e: BaseException) -> bool:
    """A connection failure, timeout or throttling (retrying later may succeed), by type, error code or text."""
    if any(t.__name__ in _TRANSIENT_TYPES for t in type(e).__mro__):
        return True
    if getattr(e, "error_code", None) in _TRANSIENT_CODES:
        return True
    text = str(e)
    return any(t in text for t in _TRANSIENT_TEXT)


def _open_error(kind: str, e: Exception) -> Exception:
    """One line for a tracker that could not be opened: transient (exit 75) or misconfigured (exit 2)."""
    text = _first_line(e)
    if "filesystem tracking backend" in text:  # MLflow 3 refuses `file:` stores unless asked
        text = (
            "MLflow 3 refuses a file store (maintenance mode): set MLFLOW_ALLOW_FILE_STORE=true, or use "
            "sqlite:///mlflow.db or a tracking server"
        )
    if is_transient(e):
        return TransientError(f"tracking: {_where(kind)} cannot be reached: {text}")
    return ConfigError(f"tracking: {_where(kind)} refused: {text}")


class _Guarded:
    """A tracker that, once it fails during training, warns once and is left alone (training goes on)."""

    def __init__(self, kind: str, tracker):
        self.kind, self.tracker = kind, tracker

    def _call(self, what: str, *args) -> None:
        if self.tracker is None:
            return
        try:
            getattr(self.tracker, what)(*args)
        except Exception as e:  # noqa: BLE001 - whatever the client raises, the logs must not end training
            log.warning(
                "tracking: %s failed (%s): %s; training goes on without it (every number is in train_log.jsonl "
                "and TensorBoard)", _where(self.kind), what, _first_line(e),
            )  # fmt: skip
            self.tracker = None

    def log(self, metrics: dict[str, float], step: int) -> None:
        self._call("log", metrics, step)

    def close(self) -> None:
        self._call("close")


def open_trackers(run: RunInfo | None, start_step: int) -> list:
    """The trackers other than TensorBoard (which the Monitor writes itself). Called before the first step: a
    tracker that cannot be opened raises `TransientError` or `ConfigError` (one line)."""
    if run is None:
        return []
    kinds = {"mlflow": MLflow, "wandb": WandB}
    out = []
    for kind in (t for t in dict.fromkeys(run.tracking) if t in kinds):
        try:
            out.append(_Guarded(kind, kinds[kind](run, start_step)))
        except ConfigError:
            raise  # the package is missing: already one line
        except Exception as e:  # noqa: BLE001 - classified into exit 75 or 2, never a traceback
            for t in out:
                t.close()
            raise _open_error(kind, e) from None
    return out
