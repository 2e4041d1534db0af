"""`dorl train --method ilql` in two CPU processes under torchrun, ZeRO-1 (the Q heads' fp32 masters
are partitioned: the Polyak update gathers them, a collective), trains the model one process trains
with the same effective batch: the LM, the heads and the target heads, from the same training set."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import torch
from safetensors.torch import load_file

from dorl.ilql import io
from dorl.stages.train import train
from dorl.store import Artifact, run_stage
from tests.conftest import REPO, free_port
from tests.ilql.conftest import ENGINE_SETS, ilql_config

SETS = ["ilql.train.max_steps=6", "ilql.train.log_every=2", "ilql.polyak_every=1", "ilql.polyak_alpha=0.1"]


def _base_without_dropout(uri: str):
    """Dropout masks depend on the process layout; the arithmetic must not."""
    from tests.fixtures import make_tiny_model_dir

    def body(ctx):
        make_tiny_model_dir(ctx.out.dir)
        cfg = json.loads((ctx.out.dir / "config.json").read_text())
        cfg.update(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
        (ctx.out.dir / "config.json").write_text(json.dumps(cfg))

    return run_stage("train/tf", uri, {"dropout": 0}, {}, body).artifact


def test_two_processes_train_the_model_one_process_trains(tmp_path, ilql_relabel):
    base = _base_without_dropout(str(tmp_path / "tf"))
    out = tmp_path / "two"
    args = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port())]
    args += ["-m", "dorl", "train", "--method", "ilql", "--data", ilql_relabel.uri, "--base", base.uri]
    args += ["--out", str(out), "--preset", "tiny", "--set", "ilql.train.zero_stage=1"]
    args += [a for s in ENGINE_SETS + SETS for a in ("--set", s)]
    r = subprocess.run(args, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    two = Artifact(str(out))
    assert two.info["world_size"] == 2 and two.info["batch"] == {"effective": 8, "micro": 4, "accumulation": 1}

    one = train(
        ilql_config(*SETS), method="ilql", data_uri=ilql_relabel.uri, base_uri=base.uri, out_uri=str(tmp_path / "one")
    ).artifact
    assert one.info["batch"]["accumulation"] == 2
    for split in ("train", "validation"):  # every rank built it, rank 0 recorded it: the one process's
        name = f"training_set/{split}.parquet"
        pd.testing.assert_frame_equal(pd.read_parquet(two.path(name)), pd.read_parquet(one.path(name)))
    for name in ("model.safetensors", io.HEADS_FILE):
        got, want = load_file(two.path(name)), load_file(one.path(name))
        assert got.keys() == want.keys()
        for k in want:
            torch.testing.assert_close(got[k], want[k], rtol=1e-4, atol=1e-5, msg=f"{name}: {k}")
