"""A read-only output or run root (issue 27): `data prepare`, `pipeline`, `train` and `artifacts pull` stop with one
line naming the folder, exit 2, instead of an OSError traceback. The folder is made read-only for real: a
read-only bind mount in a private mount namespace when running as root (root ignores permission bits), else
mode 0555."""

import os
import shutil
import stat
import subprocess
import sys

import pytest

from tests.conftest import REPO

_MOUNT = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'


def _readonly_runner(folder):
    """A function running `dorl ARGS` with `folder` read-only for that process only."""
    if os.geteuid() == 0:
        if shutil.which("unshare") is None:
            pytest.skip("running as root without unshare: cannot make a folder read-only for root")
        probe = subprocess.run(["unshare", "-m", "sh", "-c", _MOUNT, str(folder), "true"], capture_output=True)
        if probe.returncode != 0:
            pytest.skip(f"cannot make a read-only bind mount here: {probe.stderr.decode()[-200:]}")
        prefix = ["unshare", "-m", "sh", "-c", _MOUNT, str(folder)]
    else:
        os.chmod(folder, stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
        prefix = []

    def run(*args, timeout=600):
        env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
        return subprocess.run(
            [*prefix, sys.executable, "-m", "dorl", *args], capture_output=True, text=True, env=env, timeout=timeout
        )

    return run


@pytest.fixture
def readonly(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    (folder / "existing").mkdir()  # an existing sub-folder: read-only too
    yield folder, _readonly_runner(folder)
    os.chmod(folder, 0o755)


def _one_line_error(r, folder):
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-3000:]
    errors = [x for x in r.stderr.splitlines() if x.startswith("error")]
    assert len(errors) == 1 and str(folder) in errors[0], r.stderr[-3000:]
    return errors[0]


def test_prepare_and_pipeline_into_a_read_only_root(readonly):
    folder, run = readonly
    r = run("data", "prepare", "--dataset", "abcd", "--preset", "tiny", "--set", "data.simulate=10", "--out",
            str(folder / "existing" / "data"))  # fmt: skip
    assert "read-only" in _one_line_error(r, folder).lower()
    r = run("pipeline", "--preset", "tiny", "--set", "data.simulate=10", "--set", f"root={folder}")
    _one_line_error(r, folder)


def test_train_into_a_read_only_folder(readonly, data_artifact):
    folder, run = readonly
    r = run("train", "--method", "tf", "--preset", "tiny", "--data", data_artifact.uri, "--out", str(folder / "tf"))
    _one_line_error(r, folder)


def test_pull_into_a_read_only_folder(readonly, data_artifact):
    folder, run = readonly
    r = run("artifacts", "pull", data_artifact.uri, str(folder / "copy"))
    _one_line_error(r, folder)
    r = run("artifacts", "pull", data_artifact.uri, str(folder / "existing"))
    _one_line_error(r, folder)


def test_a_complete_artifact_in_a_read_only_folder_is_still_skipped(tmp_path):
    """Nobody can write there, so no lease is needed: re-running a finished stage over a read-only copy skips."""
    from tests.conftest import run_dorl

    folder = tmp_path / "ro"
    args = ["data", "prepare", "--dataset", "abcd", "--preset", "tiny", "--set", "data.simulate=10"]
    first = run_dorl(*args, "--out", str(folder / "data"))
    assert first.returncode == 0, first.stderr[-3000:]
    run = _readonly_runner(folder)
    try:
        again = run(*args, "--out", str(folder / "data"))
        assert again.returncode == 0 and "skipped" in again.stderr, again.stderr[-3000:]
    finally:
        os.chmod(folder, 0o755)
