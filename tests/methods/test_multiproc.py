"""`dorl train --method kto|awr` in two CPU processes under torchrun trains the model one process trains with the same
effective batch: the reference log-probs computed in shares and summed over the processes (KTO), the step's
statistic taken over every process (KTO's KL estimate, AWR's mean weight). KTO runs under ZeRO-1 (its optimizer
state partitioned), AWR without. Its dropout-free base: dropout masks depend on the process layout."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from dorl import config
from dorl.stages.train import train
from dorl.store import Artifact
from tests.conftest import REPO, free_port
from tests.ilql.test_multiproc import _base_without_dropout
from tests.methods.test_resume import relabel  # noqa: F401  (fixture)


def sets(method: str) -> list[str]:
    s = f"{method}.train"
    return [f"{s}.batch_size=8", f"{s}.micro_batch_size=2", f"{s}.max_steps=6", f"{s}.log_every=2", f"{s}.lr=1e-3"]


@pytest.mark.parametrize("method, zero", [("kto", 1), ("awr", 0)])
def test_two_processes_train_the_model_one_process_trains(method, zero, tmp_path, relabel):  # noqa: F811
    base = _base_without_dropout(str(tmp_path / "tf"))
    out = tmp_path / "two"
    args = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port())]
    args += ["-m", "dorl", "train", "--method", method, "--data", relabel.uri, "--base", base.uri, "--out", str(out)]
    args += ["--preset", "tiny", "--set", f"{method}.train.zero_stage={zero}"]
    args += [a for s in sets(method) for a in ("--set", s)]
    r = subprocess.run(args, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    two = Artifact(str(out))
    assert two.info["world_size"] == 2 and two.info["batch"] == {"effective": 8, "micro": 2, "accumulation": 2}

    cfg = config.load(preset="tiny", sets=sets(method))
    one = train(cfg, method=method, data_uri=relabel.uri, base_uri=base.uri, out_uri=str(tmp_path / "one")).artifact
    assert one.info["batch"]["accumulation"] == 4
    for split in ("train", "validation"):  # every rank built it (KTO: its reference columns in shares)
        name = f"training_set/{split}.parquet"
        pd.testing.assert_frame_equal(pd.read_parquet(two.path(name)), pd.read_parquet(one.path(name)), rtol=1e-5)
    got, want = load_file(two.path("model.safetensors")), load_file(one.path("model.safetensors"))
    assert got.keys() == want.keys()
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-4, atol=1e-5, msg=k)
    moved = load_file(base.path("model.safetensors"))
    assert any(not torch.allclose(moved[k], want[k]) for k in want if k in moved)  # it trained
