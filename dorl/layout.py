"""Where each stage's artifact lives in a run:

<root>/<run>/<dataset>/data/  tf/  relabel/  tf_top/  tf_all/  dt/  ilql/  eval/<method>/
<root>/<run>/report/

With `pipeline.seeds`, each method's model and evaluation gain a seed level; data, tf, relabel and
tf's evaluation (tf is trained once) keep their places:

<root>/<run>/<dataset>/data/  tf/  relabel/  eval/tf/
<root>/<run>/<dataset>/seed-<s>/tf_top/  ...  seed-<s>/eval/<method>/

and with `pipeline.seed_scope: all` tf, relabel and tf's evaluation move under the seed too:

<root>/<run>/<dataset>/data/
<root>/<run>/<dataset>/seed-<s>/tf/  relabel/  eval/tf/  tf_top/  ...  eval/<method>/
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dorl.config import RunConfig


def run_uri(cfg: RunConfig) -> str:
    return f"{cfg.root.rstrip('/')}/{cfg.run}"


def stage_uri(cfg: RunConfig, dataset: str, stage: str, seed: int | str | None = None) -> str:
    """`stage` is 'data', 'tf', 'relabel', a method name, or 'eval/<method>'; `seed`: a method's training seed."""
    where = dataset if seed is None else f"{dataset}/seed-{seed}"
    return f"{run_uri(cfg)}/{where}/{stage}"


def report_uri(cfg: RunConfig) -> str:
    return f"{run_uri(cfg)}/report"
