"""Checkpoints are data: a planted pickle payload in any checkpoint file never runs on resume."""

import pytest
import torch

from dorl import config
from dorl.errors import StoreError
from dorl.train.stage import train

SETS = ["tf.max_length=32", "tf.batch_size=4", "tf.micro_batch_size=2", "tf.max_steps=2", "tf.checkpoint_every=1"]
SETS += ["tf.retain_checkpoints=true"]


class Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):  # what an attacker who can write to the bucket would plant
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def _plant(ckpt_dir, marker) -> list:
    planted = sorted(ckpt_dir.rglob("*.pt"))
    (ckpt_dir / "rng" / "rank0.pt").write_bytes(b"")  # an old-style RNG pickle beside the JSON one
    planted.append(ckpt_dir / "rng" / "rank0.pt")
    for f in planted:
        torch.save({"module": Payload(marker)}, f)
    return planted


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_planted_pickle_in_a_checkpoint_never_runs(backend, tmp_path, data_artifact, request):
    marker = tmp_path / "marker"
    if backend == "s3":
        bucket = request.getfixturevalue("s3")
        out = f"s3://{bucket}/runs/tf"
    else:
        out = str(tmp_path / "tf")
    train(config.load(preset="tiny", sets=SETS), "tf", data_artifact.uri, out)
    if backend == "local":
        from pathlib import Path

        ckpt = Path(out) / "checkpoints" / "step-00000002"
        _plant(ckpt, marker)
        (Path(out) / "manifest.json").unlink()  # unfinished again: the rerun resumes from the checkpoint
    else:  # plant in S3, as a fresh pod would find it (no local working copy)
        import shutil

        import boto3

        from dorl.store.artifact import cache_root

        shutil.rmtree(cache_root(), ignore_errors=True)
        s3 = boto3.client("s3")
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="runs/tf/checkpoints/")["Contents"]]
        pts = [k for k in keys if k.endswith(".pt") and "/step-00000002/" in k]
        assert pts
        local = tmp_path / "p.pt"
        torch.save({"module": Payload(marker)}, local)
        for k in pts + ["runs/tf/checkpoints/step-00000002/rng/rank0.pt"]:
            s3.upload_file(str(local), bucket, k)
        s3.delete_object(Bucket=bucket, Key="runs/tf/manifest.json")
    with pytest.raises(StoreError, match=r"\.pt: refused to load a checkpoint file .*it calls exec"):
        train(config.load(preset="tiny", sets=SETS), "tf", data_artifact.uri, out)
    assert not marker.exists(), "the planted payload ran"
