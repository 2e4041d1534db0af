"""The methods, one module each, and the one registry every other place reads.

    tf      the base model: whole conversations as a language model         (dorl/methods/tf.py)
    tf_all  every relabelled candidate, as a plain line                     (dorl/methods/tf_all.py)
    tf_top  the candidates in the top return bin                            (dorl/methods/tf_top.py)
    dt      every candidate with its return token (Decision Transformer)    (dorl/methods/dt.py)
    ilql    implicit language Q-learning, on dorl/ilql                       (dorl/methods/ilql.py)

and the evaluation-only methods (`SCORERS`: no training set, no train node; `dorl evaluate` only):

    ilql_scorer  a trained model's greedy + beam candidates re-ranked by an ILQL model's V
                 (the reference's `ilql_scorer`)                              (dorl/methods/ilql_scorer.py)

A method (`dorl.methods.base.Method`) owns its training set (built from relabel's candidates), its
training hooks for the engine, its config section, what it records in its manifest, and how it
prompts and decodes at evaluation. Adding one is one module plus one line in `REGISTRY`
("name": "module:Class"); its module is imported only when it is used. The order of `REGISTRY` is
the order of `pipeline.methods`, of the pipeline's and the cluster's steps, and of the report's rows.

This module imports nothing heavy (the config schema reads it for `pipeline.methods`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from dorl.errors import ConfigError

if TYPE_CHECKING:
    from dorl.config import RunConfig
    from dorl.methods.base import Method

BASE = "tf"  # the method every other one starts from (`dorl train --method tf`, on the data artifact)

REGISTRY: dict[str, str] = {
    "tf": "dorl.methods.tf:TF",
    "tf_all": "dorl.methods.tf_all:TfAll",
    "tf_top": "dorl.methods.tf_top:TfTop",
    "dt": "dorl.methods.dt:DT",
    "ilql": "dorl.methods.ilql:ILQL",
}
# Evaluation methods that train nothing: `dorl evaluate --method NAME --model <its scoring model>
# --candidates-from <a trained model>`; `pipeline.scorers` adds them to the graph after what they read.
SCORERS: dict[str, str] = {
    "ilql_scorer": "dorl.methods.ilql_scorer:ILQLScorer",
}


def names() -> list[str]:
    """Every method, in registry order (the base model first)."""
    return list(REGISTRY)


def evaluated() -> list[str]:
    """Everything `dorl evaluate --method` takes: the trained methods, then the scorers (the report's row order)."""
    return list(REGISTRY) + list(SCORERS)


def relabelled() -> list[str]:
    """The methods trained on the relabel artifact: every method but the base."""
    return [n for n in REGISTRY if n != BASE]


def method_class(name: str) -> type[Method]:
    where = REGISTRY.get(name) or SCORERS.get(name)
    if where is None:
        raise ConfigError(f"unknown method {name!r}; choose one of {', '.join(evaluated())}")
    module, attr = where.split(":")
    return getattr(importlib.import_module(module), attr)


def get(name: str, cfg: RunConfig) -> Method:
    return method_class(name)(cfg, name)
