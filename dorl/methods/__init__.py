"""The methods, one module each (tf, tf_human, tf_all, tf_top, dt, ilql; kto, dpo, awr; the scorer ilql_scorer), and
their registry
(`dorl.methods.registry`), which every other place reads. `from dorl import methods; methods.get(name, cfg)`."""

from dorl.methods.registry import (
    BASE,
    REGISTRY,
    Entry,
    defaults,
    entry,
    evaluated,
    get,
    method_class,
    names,
    paper,
    relabelled,
    scorers,
)

__all__ = [
    "BASE", "REGISTRY", "Entry", "defaults", "entry", "evaluated", "get", "method_class", "names", "paper",
    "relabelled", "scorers",
]  # fmt: skip
