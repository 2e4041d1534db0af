"""run_stage(keep=...): replacing or clearing an output leaves nested artifacts (e.g. relabel shards) alone."""

import pytest

from dorl.store import Location, run_stage


@pytest.fixture(params=["local", "s3"])
def base(request, tmp_path):
    return str(tmp_path / "runs") if request.param == "local" else f"s3://{request.getfixturevalue('s3')}/runs"


def test_force_and_config_change_keep_nested_folders(base):
    def body(ctx):
        ctx.out.path("result.txt").write_text("v")
        ctx.out.path("sub/x.txt").write_text("x")

    out = f"{base}/stage"
    run_stage("nested", f"{out}/shards/0-of-1", {"n": 1}, {}, body)
    run_stage("outer", out, {"v": 1}, {}, body, keep=("shards/",))
    run_stage("outer", out, {"v": 2}, {}, body, force=True, keep=("shards/",))
    Location(out).write_bytes(".dorl-pending.json", b'{"other": 1}')
    Location(out).delete("manifest.json")
    run_stage("outer", out, {"v": 3}, {}, body, keep=("shards/",))  # clears unfinished output of another config
    names = {e.name for e in Location(out).walk()}
    assert "shards/0-of-1/manifest.json" in names and "shards/0-of-1/sub/x.txt" in names
    run_stage("outer", out, {"v": 4}, {}, body, force=True)  # without keep: everything goes
    assert not any(e.name.startswith("shards/") for e in Location(out).walk())
