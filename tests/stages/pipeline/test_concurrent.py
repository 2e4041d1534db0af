"""Two `dorl pipeline` processes on one run root at once (issue 27): the second waits for the first's stage and then
goes on as usual (skips what is complete, refuses a different config with one line); the first is never
disturbed and its report names exactly the manifests in place."""

import os
import subprocess
import sys
import time

import pytest

from dorl.store import Artifact
from tests.conftest import run_dorl
from tests.stages.pipeline.test_pipeline import ENV, SMALL

METHODS = "tf_top"


@pytest.mark.slow
def test_two_pipelines_on_one_run_root(tmp_path):
    args = ["pipeline", *SMALL, "--methods", METHODS, "--set", f"root={tmp_path}", "--set", "run=small"]
    args += ["--set", "data.simulate=30", "--set", "finetune.max_steps=5", "--set", "eval.n_examples=8"]
    first = subprocess.Popen(
        [sys.executable, "-m", "dorl", *args], env={**os.environ, **ENV}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    pending = tmp_path / "small" / "abcd" / "tf" / ".dorl-pending.json"
    deadline = time.time() + 300
    while not pending.exists():  # the first is training the base model
        assert first.poll() is None, first.communicate()[1][-3000:]
        assert time.time() < deadline
        time.sleep(0.05)
    # The second: the same run with another base-model config, started while the first trains it.
    second = run_dorl(*args, "--set", "tf.epochs=5", env={**ENV, "DORL_LOCK_WAIT": "600"})
    out, err = first.communicate(timeout=900)
    assert first.returncode == 0, err[-3000:]
    assert second.returncode == 2 and "Traceback" not in second.stderr, second.stderr[-3000:]
    errors = [x for x in second.stderr.splitlines() if x.startswith("error")]
    assert len(errors) == 1 and "already holds a complete 'train/tf' artifact that differs" in errors[0], errors

    report = Artifact(str(tmp_path / "small" / "report"))
    for name, entry in report.manifest["inputs"].items():  # every input the report names is the one in place
        assert Artifact(entry["uri"]).digest == entry["manifest_sha256"], name
    tf = Artifact(str(tmp_path / "small" / "abcd" / "tf"))
    assert tf.config["train"]["epochs"] == 4
