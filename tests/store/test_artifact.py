"""Artifacts and the stage runner: commit marker, verification, skip / refuse / force / resume."""

import json

import pytest

from dorl.errors import IntegrityError, StoreError
from dorl.store import Artifact, Location, run_stage


def _writer(files: dict[str, bytes]):
    def body(ctx):
        for name, data in files.items():
            ctx.out.path(name).write_bytes(data)
        ctx.info["count"] = len(files)
        ctx.metrics["items_per_s"] = 123.0

    return body


@pytest.fixture(params=["local", "s3"])
def base(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "runs")
    return f"s3://{request.getfixturevalue('s3')}/runs"


def test_commit_and_verified_read(base):
    up = run_stage("data", f"{base}/up", {"n": 1}, {}, _writer({"a.txt": b"A"}))
    res = run_stage(
        "tf", f"{base}/art", {"lr": 0.1}, {"data": up.artifact}, _writer({"model/w.bin": b"W" * 1000, "log.txt": b"ok"})
    )
    assert not res.skipped
    art = Artifact(f"{base}/art")
    m = art.manifest
    assert m["stage"] == "tf" and m["config"] == {"lr": 0.1}
    assert m["inputs"]["data"]["manifest_sha256"] == up.artifact.digest
    assert set(m["files"]) == {"model/w.bin", "log.txt"}
    assert m["files"]["log.txt"]["size"] == 2
    assert m["files"]["log.txt"]["sha256"] == "2689367b205c16ce32ed4200942b8b8b1e262dfc70d9bc9fbc77c49699a4f1df"
    assert m["versions"]["torch"] and m["versions"]["dorl"]
    assert m["info"] == {"count": 2} and m["metrics"] == {"items_per_s": 123.0}
    assert m["wall_time_s"] >= 0
    assert art.read_bytes("model/w.bin") == b"W" * 1000
    assert art.path("log.txt").read_bytes() == b"ok"
    assert (art.local_dir() / "model" / "w.bin").is_file()


def test_skip_refuse_force(base):
    out = f"{base}/art"
    first = run_stage("tf", out, {"lr": 0.1}, {}, _writer({"f": b"1"}))
    again = run_stage("tf", out, {"lr": 0.1}, {}, _writer({"f": b"CHANGED"}))
    assert again.skipped and again.artifact.digest == first.artifact.digest
    with pytest.raises(StoreError, match=r"differs \(config keys lr\); use --force"):
        run_stage("tf", out, {"lr": 0.2}, {}, _writer({"f": b"2"}))
    with pytest.raises(StoreError, match="stage 'tf' vs 'relabel'"):
        run_stage("relabel", out, {"lr": 0.1}, {}, _writer({"f": b"2"}))
    forced = run_stage("tf", out, {"lr": 0.2}, {}, _writer({"g": b"2"}), force=True)
    assert not forced.skipped
    assert set(Artifact(out).files) == {"g"}  # the old artifact's files are gone


def test_changed_input_is_refused(base):
    a = run_stage("data", f"{base}/a", {}, {}, _writer({"x": b"1"}))
    run_stage("tf", f"{base}/b", {}, {"data": a.artifact}, _writer({"y": b"1"}))
    a2 = run_stage("data", f"{base}/a", {"v": 2}, {}, _writer({"x": b"2"}), force=True)
    with pytest.raises(StoreError, match="input artifacts"):
        run_stage("tf", f"{base}/b", {}, {"data": a2.artifact}, _writer({"y": b"1"}))


def test_failed_body_leaves_no_manifest_and_rerun_resumes(base):
    out = f"{base}/art"

    def crash(ctx):
        ctx.out.path("checkpoints/step-1/state.bin").write_bytes(b"ckpt")
        ctx.out.sync("checkpoints")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        run_stage("tf", out, {"lr": 0.1}, {}, crash)
    with pytest.raises(StoreError, match="not a complete artifact"):
        Artifact(out)

    seen = {}

    def resume(ctx):
        ctx.out.pull("checkpoints")
        seen["ckpt"] = ctx.out.path("checkpoints/step-1/state.bin").read_bytes()
        ctx.out.path("model.bin").write_bytes(b"done")

    run_stage("tf", out, {"lr": 0.1}, {}, resume)
    assert seen["ckpt"] == b"ckpt"
    assert set(Artifact(out).files) == {"model.bin"}  # checkpoints stay out of the manifest


def test_unfinished_output_of_another_config_is_cleared(base):
    out = f"{base}/art"

    def crash(ctx):
        ctx.out.path("partial.bin").write_bytes(b"old")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        run_stage("tf", out, {"lr": 0.1}, {}, crash)
    run_stage("tf", out, {"lr": 0.3}, {}, _writer({"f": b"new"}))
    assert set(Artifact(out).files) == {"f"}
    assert not Location(out).exists("partial.bin")


def test_corrupt_file_and_manifest(base):
    out = f"{base}/art"
    run_stage("tf", out, {}, {}, _writer({"w.bin": b"good", "z.bin": b"z"}))
    loc = Location(out)
    loc.write_bytes("w.bin", b"evil")
    art = Artifact(out)
    with pytest.raises(IntegrityError, match="w.bin: content does not match the sha256"):
        art.read_bytes("w.bin")
    with pytest.raises(IntegrityError, match="w.bin"):
        art.path("w.bin")
    with pytest.raises(StoreError, match="has no file 'nope'"):
        art.read_bytes("nope")
    loc.write_bytes("manifest.json", b"{not json")
    with pytest.raises(StoreError, match="manifest.json is unreadable"):
        Artifact(out)
    loc.write_bytes("manifest.json", json.dumps({"hello": 1}).encode())
    with pytest.raises(StoreError, match="unreadable: not a dorl.manifest/1 manifest"):
        Artifact(out)
    with pytest.raises(StoreError, match="no artifact at"):
        Artifact(f"{base}/nothing-here")
