"""Console logging and progress bars (rich), one look for every stage.

Logs go to stderr so that commands like `dorl artifacts cat` can write data to stdout.
"""

from __future__ import annotations

import logging
import os
import sys

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
_configured = False


def setup(level: str | None = None) -> None:
    """Configure the root logger once; `DORL_LOG_LEVEL` overrides the default INFO."""
    global _configured
    if _configured:
        return
    level = (level or os.environ.get("DORL_LOG_LEVEL", "INFO")).upper()
    handler = RichHandler(console=console, show_path=False, rich_tracebacks=True, markup=False)
    logging.basicConfig(level=level, format="%(message)s", datefmt="[%X]", handlers=[handler])
    # Libraries that are chatty at INFO.
    for name in ("botocore", "boto3", "s3transfer", "urllib3", "DeepSpeed", "deepspeed", "httpx"):
        logging.getLogger(name).setLevel(logging.WARNING)
    _configured = True


def get(name: str) -> logging.Logger:
    return logging.getLogger(name)


def progress(transient: bool = False) -> Progress:
    """A progress bar with counts, rate-free timing and ETA; disabled when stderr is not a TTY
    unless `DORL_PROGRESS=1` (CI logs stay readable)."""
    disable = not (console.is_terminal or os.environ.get("DORL_PROGRESS") == "1")
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=transient,
        disable=disable or not sys.stderr,
    )
