"""Console logging and progress, one look for every stage.

On a terminal: rich (coloured log lines, live progress bars). Off a terminal (pod logs, CI, files): plain
single lines that never wrap (`2026-12-02 00:47:51 INFO dorl.data: ...`), and progress as a log line every
`DORL_PROGRESS_SECONDS` (default 30) and at the end. `DORL_PROGRESS=1` forces rich's bars off a terminal.
Logs go to stderr so that commands like `dorl artifacts cat` can write data to stdout.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True)
if not console.is_terminal:
    console.soft_wrap = True  # prints off a terminal stay one line each, whatever the width
_configured = False
PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup(level: str | None = None) -> None:
    """Configure the root logger once; `DORL_LOG_LEVEL` overrides the default INFO."""
    global _configured
    if _configured:
        return
    level = (level or os.environ.get("DORL_LOG_LEVEL", "INFO")).upper()
    if console.is_terminal:
        handler = RichHandler(console=console, show_path=False, rich_tracebacks=True, markup=False)
        logging.basicConfig(level=level, format="%(message)s", datefmt="[%X]", handlers=[handler])
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(PLAIN_FORMAT, datefmt="%Y-%m-%d %H:%M:%S"))
        logging.basicConfig(level=level, handlers=[handler])
    # Libraries that are chatty at INFO.
    for name in ("botocore", "boto3", "s3transfer", "urllib3", "DeepSpeed", "deepspeed", "httpx"):
        logging.getLogger(name).setLevel(logging.WARNING)
    _configured = True


def get(name: str) -> logging.Logger:
    return logging.getLogger(name)


def _seconds(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class LineProgress:
    """rich.progress.Progress's add_task / advance / update, as a log line every `interval` seconds per task
    and one when a task completes: what a log file or a pod's log can show of a long phase."""

    def __init__(self, interval: float, logger: logging.Logger | None = None):
        self.interval = interval
        self.log = logger or logging.getLogger("dorl.progress")
        self.tasks: dict[int, dict] = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def add_task(self, description: str, total: float | None = None, completed: float = 0, **_) -> int:
        now = time.monotonic()
        tid = len(self.tasks)
        self.tasks[tid] = {"desc": description, "total": total, "done": completed, "start_done": completed}
        self.tasks[tid].update(started=now, last=now, finished=False)
        return tid

    def advance(self, task: int, advance: float = 1) -> None:
        self.update(task, completed=self.tasks[task]["done"] + advance)

    def update(self, task: int, completed: float | None = None, advance: float | None = None, **_) -> None:
        t = self.tasks[task]
        if completed is not None:
            t["done"] = completed
        if advance is not None:
            t["done"] += advance
        now = time.monotonic()
        finished = t["total"] is not None and t["done"] >= t["total"]
        if (finished and not t["finished"]) or now - t["last"] >= self.interval:
            t["last"], t["finished"] = now, finished
            self.log.info("%s", self.line(t, now))

    @staticmethod
    def line(t: dict, now: float) -> str:
        elapsed = now - t["started"]
        done, total = t["done"], t["total"]
        if total is None:
            return f"{t['desc']}: {done:,.0f} · {_seconds(elapsed)} elapsed"
        out = f"{t['desc']}: {done:,.0f}/{total:,.0f} ({100 * done / max(total, 1):.0f}%) · {_seconds(elapsed)} elapsed"
        rate = (done - t["start_done"]) / max(elapsed, 1e-9)
        if done < total and rate > 0:
            out += f" · ETA {_seconds((total - done) / rate)}"
        return out


def progress(transient: bool = False) -> Progress | LineProgress:
    """A progress bar with counts, timing and ETA on a terminal (or with `DORL_PROGRESS=1`); elsewhere
    a LineProgress that logs a line every `DORL_PROGRESS_SECONDS` (default 30)."""
    if console.is_terminal or os.environ.get("DORL_PROGRESS") == "1":
        return Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=transient,
        )
    return LineProgress(float(os.environ.get("DORL_PROGRESS_SECONDS", "30")))


@contextlib.contextmanager
def live_view(renderable):
    """rich's Live display of `renderable` on stderr. Off a terminal it is printed once, when the block ends
    (success or error), followed by a line end, so an error message or a table that follows starts on its own line."""
    from rich.live import Live

    try:
        with Live(renderable, console=console, refresh_per_second=4, transient=False) as live:
            yield live
    finally:
        if not console.is_terminal:
            console.line()
