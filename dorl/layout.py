"""Where each stage's artifact lives in a run:

<root>/<run>/<dataset>/data/  tf/  relabel/  tf_top/  tf_all/  dt/  ilql/  eval/<method>/
<root>/<run>/report/
"""

from __future__ import annotations

from dorl.config import RunConfig


def run_uri(cfg: RunConfig) -> str:
    return f"{cfg.root.rstrip('/')}/{cfg.run}"


def stage_uri(cfg: RunConfig, dataset: str, stage: str) -> str:
    """`stage` is 'data', 'tf', 'relabel', a method name, or 'eval/<method>'."""
    return f"{run_uri(cfg)}/{dataset}/{stage}"


def report_uri(cfg: RunConfig) -> str:
    return f"{run_uri(cfg)}/report"
