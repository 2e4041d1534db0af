"""Training logs: console, TensorBoard (`tensorboard/`), `train_log.jsonl`, the `loss.png` plot, and the
trackers of config `tracking` (MLflow, W&B: dorl/engine/tracking.py).

Throughput counts real tokens only (no padding). MFU (GPU only) is the model FLOPs of those tokens
— 6·N per token plus attention, 12·layers·width·T per token of a T-token sequence (PaLM, app. B),
the vocabulary head counted only on the positions it runs on (all of them for tf, the response for
the methods) — over the GPUs' dense bf16 peak. Only rank 0 writes; the logs travel with every checkpoint, so a
resumed run continues them from the checkpoint's step.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from pathlib import Path

log = logging.getLogger("dorl.train")

LOG_FILE = "train_log.jsonl"
TB_DIR = "tensorboard"
PLOT = "loss.png"

# Dense bf16 tensor-core peaks (TFLOP/s) by device-name substring, most specific first.
PEAK_BF16_TFLOPS = (
    ("H200", 989.0),
    ("H100 PCIe", 756.0),
    ("H100", 989.0),
    ("GH200", 989.0),
    ("A100", 312.0),
    ("A800", 312.0),
    ("L40S", 362.0),
    ("L40", 181.0),
    ("L4", 121.0),
    ("A10G", 70.0),
    ("A10", 125.0),
    ("RTX 4090", 165.0),
    ("RTX 3090", 71.0),
)


def peak_flops(device) -> float | None:
    """Peak bf16 FLOP/s of one GPU (DORL_PEAK_TFLOPS overrides); None on CPU or an unknown GPU."""
    if os.environ.get("DORL_PEAK_TFLOPS"):
        return float(os.environ["DORL_PEAK_TFLOPS"]) * 1e12
    import torch

    if getattr(device, "type", "cpu") != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, tflops in PEAK_BF16_TFLOPS:
        if key in name:
            return tflops * 1e12
    log.warning("unknown GPU %r: MFU is not reported (set DORL_PEAK_TFLOPS)", name)
    return None


def model_flops(shape: tuple[int, int, int, int], tokens: float, targets: float, tokens_sq: float) -> float:
    """Training FLOPs of sequences with sum(len) = tokens and sum(len^2) = tokens_sq, of which `targets`
    positions get the output projection: 6 FLOPs per weight per token (forward + backward), the
    vocabulary head counted only where it runs, plus attention."""
    n_body, n_head, n_layer, width = shape
    return 6.0 * (n_body * tokens + n_head * targets) + 12.0 * n_layer * width * tokens_sq


class Monitor:
    """`run` (a tracking.RunInfo) names the trackers (config `tracking`); None: TensorBoard only."""

    def __init__(self, workdir: Path, enabled: bool, start_step: int, run=None):
        from dorl.engine import tracking

        self.workdir = workdir
        self.enabled = enabled
        self.tb = None
        self.trackers = []
        if enabled:
            if run is None or "tensorboard" in run.tracking:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(workdir / TB_DIR), purge_step=start_step + 1)
            self.trackers = tracking.open_trackers(run, start_step)

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        with open(self.workdir / LOG_FILE, "a") as f:
            f.write(json.dumps(record) + "\n")
        prefix = "train" if record["kind"] == "train" else "eval"
        scalars = {
            f"{prefix}/{k}": float(v)
            for k, v in record.items()
            if k not in ("kind", "step", "epoch") and isinstance(v, (int, float)) and math.isfinite(v)
        }
        scalars["epoch"] = float(record["epoch"])
        for k, v in scalars.items():
            if self.tb is not None and k != "epoch":
                self.tb.add_scalar(k, v, record["step"])
        for t in self.trackers:
            t.log(scalars, record["step"])
        if record["kind"] == "train":
            mfu = f" · MFU {100 * record['mfu']:.1f}%" if record.get("mfu") is not None else ""
            log.info(
                "step %d · epoch %d · loss %.4f · lr %.2e · %s tok/s%s",
                record["step"],
                record["epoch"],
                record["loss"],
                record["lr"],
                f"{record['tokens_per_s']:,.0f}",
                mfu,
            )
        else:
            log.info("step %d · epoch %d · validation loss %.4f", record["step"], record["epoch"], record["val_loss"])

    def flush(self) -> None:
        if self.tb is not None:
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
            self.tb = None
        for t in self.trackers:
            t.close()
        self.trackers = []

    def snapshot(self, dest: Path) -> None:
        """Copy the logs into a checkpoint being written."""
        self.flush()
        dest.mkdir(parents=True, exist_ok=True)
        if (self.workdir / LOG_FILE).exists():
            shutil.copy2(self.workdir / LOG_FILE, dest / LOG_FILE)
        if (self.workdir / TB_DIR).is_dir():
            shutil.copytree(self.workdir / TB_DIR, dest / TB_DIR, dirs_exist_ok=True)


def restore_logs(src: Path | None, workdir: Path) -> None:
    """Make the workdir's logs those of the checkpoint (or none, for a fresh start)."""
    (workdir / LOG_FILE).unlink(missing_ok=True)
    shutil.rmtree(workdir / TB_DIR, ignore_errors=True)
    if src is None:
        return
    if (src / LOG_FILE).exists():
        shutil.copy2(src / LOG_FILE, workdir / LOG_FILE)
    if (src / TB_DIR).is_dir():
        shutil.copytree(src / TB_DIR, workdir / TB_DIR)


def read_log(workdir: Path) -> list[dict]:
    path = workdir / LOG_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot(records: list[dict], out: Path, title: str, ylabel: str = "cross-entropy (nats/token)") -> None:
    """Training loss per step (line) and validation loss (markers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(r["step"], r["loss"]) for r in records if r["kind"] == "train"]
    val = [(r["step"], r["val_loss"]) for r in records if r["kind"] == "eval"]
    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot(*zip(*train, strict=True), label="train loss", color="tab:blue")
    if val:
        ax.plot(*zip(*val, strict=True), "o--", label="validation loss", color="tab:orange")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def summary(records: list[dict]) -> dict:
    """The loss curves in a few numbers for the manifest."""
    train = [r for r in records if r["kind"] == "train"]
    val = [r for r in records if r["kind"] == "eval"]
    out: dict = {}
    if train:
        out["train_loss_first"] = train[0]["loss"]
        out["train_loss_last"] = train[-1]["loss"]
        out["train_loss_min"] = min(r["loss"] for r in train)
    if val:
        out["val_loss"] = [{"step": r["step"], "epoch": r["epoch"], "loss": r["val_loss"]} for r in val]
    return out
