"""Logs off a terminal (pod logs, files): plain single lines, progress lines at an interval, no extension build."""

import logging
import re
import subprocess
import sys

from dorl import log as dlog
from tests.conftest import run_dorl

PLAIN = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (INFO|WARNING|ERROR|DEBUG) [\w.]+: ")


def test_train_off_a_terminal(tmp_path, data_artifact):
    """One `dorl train` on CPU with stderr a pipe: every log line plain and whole (never wrapped at 80 columns),
    progress lines of training, and no C++ extension built for the single process."""
    ext = tmp_path / "torch_extensions"
    r = run_dorl(
        "train", "--method", "tf", "--data", data_artifact.uri, "--out", str(tmp_path / "tf"), "--preset", "tiny",
        "--set", "tf.epochs=1", "--set", "tf.max_length=32", "--set", "tf.batch_size=8",
        env={"DORL_PROGRESS_SECONDS": "0", "TORCH_EXTENSIONS_DIR": str(ext), "COLUMNS": "80"},
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    dorl_lines = [ln for ln in lines if PLAIN.match(ln)]
    assert dorl_lines, r.stderr[-3000:]
    # The training summary is one line of more than 80 characters, not wrapped.
    summary = [ln for ln in dorl_lines if " training " in ln and " steps (" in ln]
    assert summary and len(summary[0]) > 80 and "process(es)" in summary[0]
    assert not any(ln.startswith(" " * 10) for ln in lines)  # no continuation lines of a wrapped record
    assert any(re.search(r"dorl.progress: train tf: \d+/\d+ \(\d+%\)", ln) for ln in dorl_lines)
    assert not any(ext.rglob("*.so")) and not (ext / "deepspeed_shm_comm").exists()
    assert "deepspeed_shm_comm" not in r.stderr


def test_live_view_then_error_starts_a_new_line(tmp_path):
    """The pipeline's stage table off a terminal, then a failure: the error is not glued to the table."""
    code = (
        "from rich.table import Table\n"
        "from dorl.log import console, live_view\n"
        "t = Table(); t.add_column('stage'); t.add_row('train/tf')\n"
        "try:\n"
        "    with live_view(t):\n"
        "        raise RuntimeError\n"
        "except RuntimeError:\n"
        "    console.print('error: boom')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "error: boom" in r.stderr.splitlines(), r.stderr


def test_line_progress_interval(monkeypatch, caplog):
    now = [100.0]
    monkeypatch.setattr(dlog.time, "monotonic", lambda: now[0])
    bar = dlog.LineProgress(interval=10, logger=logging.getLogger("t"))
    with caplog.at_level(logging.INFO, logger="t"), bar:
        task = bar.add_task("greedy", total=100)
        for _ in range(50):
            now[0] += 1
            bar.advance(task)
        # One line per 10 s (at 10, 20, ..., 50 s), with counts and an ETA.
        assert len(caplog.messages) == 5
        assert caplog.messages[0] == "greedy: 10/100 (10%) · 0:10 elapsed · ETA 1:30"
        for _ in range(50):
            bar.advance(task)  # no time passes: only the completion is logged
        assert len(caplog.messages) == 6 and caplog.messages[-1] == "greedy: 100/100 (100%) · 0:50 elapsed"
