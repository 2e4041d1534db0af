"""Checkpoints are data: a planted pickle payload in any checkpoint file never runs on resume."""

import pytest
import torch

from dorl import config
from dorl.errors import StoreError
from dorl.stages.train import train
from dorl.store import Artifact

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
    train(config.load(preset="tiny", sets=SETS), method="tf", data_uri=data_artifact.uri, out_uri=out)
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
        train(config.load(preset="tiny", sets=SETS), method="tf", data_uri=data_artifact.uri, out_uri=out)
    assert not marker.exists(), "the planted payload ran"


DISK = ["tf.max_length=32", "tf.batch_size=4", "tf.micro_batch_size=2", "tf.max_steps=4", "tf.checkpoint_every=1"]


@pytest.mark.parametrize("fault", ["enospc", "cut_short"])
def test_full_disk_mid_checkpoint_is_a_clear_error_and_never_resumed_from(fault, tmp_path, data_artifact, monkeypatch):
    """The disk fills while step 3's checkpoint is written (a fault-injecting torch.save: ENOSPC after half
    the bytes, or a file silently cut short): a one-line error naming the folder, `latest` stays at step 2,
    and the rerun ends with the weights of an uninterrupted run."""
    import errno

    from safetensors.torch import load_file

    ref = train(
        config.load(preset="tiny", sets=DISK), method="tf", data_uri=data_artifact.uri, out_uri=str(tmp_path / "ref")
    ).artifact
    out = tmp_path / "tf"
    real_save, calls = torch.save, {"n": 0}

    def full_disk(obj, f, *a, **k):
        real_save(obj, f, *a, **k)
        if str(f).endswith(".pt") and "step-00000003" in str(f):
            data = open(f, "rb").read()
            open(f, "wb").write(data[: len(data) // 2])
            calls["n"] += 1
            if fault == "enospc":
                raise OSError(errno.ENOSPC, "No space left on device", str(f))

    monkeypatch.setattr(torch, "save", full_disk)
    match = r"no space left on the device of .*checkpoints: checkpoint step-00000003 needs about [\d.]+ MiB"
    if fault == "cut_short":
        match = r"step-00000003/ds/.*\.pt: the checkpoint file is incomplete"
    with pytest.raises(StoreError, match=match):
        train(config.load(preset="tiny", sets=DISK), method="tf", data_uri=data_artifact.uri, out_uri=str(out))
    assert calls["n"] >= 1
    assert (out / "checkpoints" / "latest").read_text() == "step-00000002"
    monkeypatch.setattr(torch, "save", real_save)
    train(config.load(preset="tiny", sets=DISK), method="tf", data_uri=data_artifact.uri, out_uri=str(out))
    got, want = load_file(out / "model.safetensors"), load_file(tmp_path / "ref" / "model.safetensors")
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=0)
    assert Artifact(str(out)).manifest["metrics"]["tokens"] == ref.manifest["metrics"]["tokens"]
