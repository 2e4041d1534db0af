"""The methods, one module each, and the one registry every other place reads.

    tf      the base model: whole conversations as a language model         (dorl/methods/tf.py)
    tf_human  the human responses alone, as plain lines: the same-recipe control (dorl/methods/tf_human.py)
    tf_all  every relabelled candidate, as a plain line                     (dorl/methods/tf_all.py)
    tf_top  the candidates in the top return bin                            (dorl/methods/tf_top.py)
    dt      every candidate with its return token (Decision Transformer)    (dorl/methods/dt.py)
    ilql    implicit language Q-learning, on dorl/ilql                       (dorl/methods/ilql.py)
    kto     KTO: each candidate desirable (top return bin) or not            (dorl/methods/kto.py)
    dpo     DPO: the best vs the worst candidate of each context             (dorl/methods/dpo.py)
    awr     advantage-weighted teacher forcing on every candidate            (dorl/methods/awr.py)

and the evaluation-only methods (scorers: no training set, no train node; `dorl evaluate` only):

    ilql_scorer  a trained model's greedy + beam candidates re-ranked by an ILQL model's V
                 (the reference's `ilql_scorer`)                              (dorl/methods/ilql_scorer.py)

A method (`dorl.methods.base.Method`) owns its training set (built in the train stage from relabel's
scored candidates), its training hooks for the engine, its settings, what it records in its manifest,
and how it prompts and decodes at evaluation. Adding one is one module plus one `REGISTRY` line, an
`Entry` of facts (as torchtune's `Recipe(name, file_path, configs, supports_distributed)`):

    "mine": Entry("pkg.mine:Mine", section="mine", settings="pkg.mine:MineConfig"),

- where the class is, as "module:attr" (imported only when the method is used);
- `section`/`settings`: the run-config section holding its settings and the dataclass that declares it, beside
  the method (as TRL's `KTOConfig` beside `KTOTrainer`). `dorl.config` adds the section to the run
  configuration (`--set mine.key=...`, YAML, `dorl config keys`), importing `settings` by name; sections may be
  shared (tf_top, tf_all and dt all train with `finetune`, declared in dorl/methods/lines.py);
- `paper`: one of the paper's methods, in the default of `pipeline.methods` and in the `paper` preset's list
  (a new method joins a run only when listed there);
- `control`: a control every comparison needs (tf_human), in the default of `pipeline.methods` but not in the
  `paper` preset's list, which runs the paper's methods alone;
- `scorer`: an evaluation-only method (`pipeline.scorers`).

The order of `REGISTRY` is the order of the config sections, of `pipeline.methods`, of the pipeline's and the
cluster's steps, and of the report's rows (the trained methods first, then the scorers).

A leaf: it imports nothing of dorl's but errors (the config reads it for the method sections and names).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dorl.errors import ConfigError

if TYPE_CHECKING:
    from dorl.config import RunConfig
    from dorl.methods.base import Method


@dataclass(frozen=True)
class Entry:
    """One method: where it is and the facts other places need without importing it."""

    where: str  # "module:Class" of its `Method`
    section: str | None = None  # the run-config section holding its settings (None: it has none)
    settings: str | None = None  # "module:Class" of that section's dataclass
    paper: bool = False  # one of the paper's methods: in pipeline.methods' default and the paper preset's list
    control: bool = False  # a control of the comparisons: in pipeline.methods' default, not the paper preset's
    scorer: bool = False  # evaluation only: no training set, no train node (pipeline.scorers)


BASE = "tf"  # the method every other one starts from (`dorl train --method tf`, on the data artifact)
FINETUNE = "dorl.methods.lines:FinetuneConfig"
ILQL = "dorl.methods.ilql:ILQLConfig"

REGISTRY: dict[str, Entry | str] = {
    "tf": Entry("dorl.methods.tf:TF", "tf", "dorl.config.schema:TrainConfig"),
    "tf_human": Entry("dorl.methods.tf_human:TfHuman", "finetune", FINETUNE, control=True),
    "tf_all": Entry("dorl.methods.tf_all:TfAll", "finetune", FINETUNE, paper=True),
    "tf_top": Entry("dorl.methods.tf_top:TfTop", "finetune", FINETUNE, paper=True),
    "dt": Entry("dorl.methods.dt:DT", "finetune", FINETUNE, paper=True),
    "ilql": Entry("dorl.methods.ilql:ILQL", "ilql", ILQL, paper=True),
    # the baselines a team would otherwise run on the same scored candidates (not the paper's: `compare` preset)
    "kto": Entry("dorl.methods.kto:KTO", "kto", "dorl.methods.kto:KTOConfig"),
    "dpo": Entry("dorl.methods.dpo:DPO", "dpo", "dorl.methods.dpo:DPOConfig"),
    "awr": Entry("dorl.methods.awr:AWR", "awr", "dorl.methods.awr:AWRConfig"),
    # `dorl evaluate --method ilql_scorer --model <ilql> --candidates-from <a trained model>`; its setting
    # (which model's candidates, in pipeline.scorers) is ilql.scorer_candidates
    "ilql_scorer": Entry("dorl.methods.ilql_scorer:ILQLScorer", "ilql", ILQL, scorer=True),
}


def entries() -> dict[str, Entry]:
    """The registry with every line an `Entry` (a plain "module:Class" line is a method without facts)."""
    return {n: Entry(e) if isinstance(e, str) else e for n, e in REGISTRY.items()}


def entry(name: str) -> Entry:
    if name not in REGISTRY:
        raise ConfigError(f"unknown method {name!r}; choose one of {', '.join(evaluated())}")
    return entries()[name]


def names() -> list[str]:
    """Every trained method, in registry order (the base model first)."""
    return [n for n, e in entries().items() if not e.scorer]


def scorers() -> list[str]:
    """The evaluation-only methods."""
    return [n for n, e in entries().items() if e.scorer]


def evaluated() -> list[str]:
    """Everything `dorl evaluate --method` takes: the trained methods, then the scorers (the report's row order)."""
    return names() + scorers()


def relabelled() -> list[str]:
    """The methods trained on the relabel artifact: every trained method but the base."""
    return [n for n in names() if n != BASE]


def paper() -> list[str]:
    """The paper's methods (the `paper` preset's `pipeline.methods`)."""
    return [n for n, e in entries().items() if e.paper and not e.scorer]


def defaults() -> list[str]:
    """What `pipeline.methods` runs unless it says otherwise: the paper's methods and the controls."""
    return [n for n, e in entries().items() if (e.paper or e.control) and not e.scorer]


def sections() -> list[tuple[str, str]]:
    """(section, "module:Class" of its dataclass) of every method with settings, each once, in registry order."""
    out: dict[str, str] = {}
    for name, e in entries().items():
        if e.section is None:
            continue
        if e.settings is None:
            raise ConfigError(f"method {name!r}: registry entry names section {e.section!r} but no settings class")
        if out.setdefault(e.section, e.settings) != e.settings:
            raise ConfigError(
                f"method {name!r}: section {e.section!r} is declared by {e.settings}, but another method's "
                f"entry declares it by {out[e.section]}: a shared section has one class"
            )
    return list(out.items())


def load(where: str):
    """The attribute a "module:attr" string names, its module imported now."""
    module, _, attr = where.partition(":")
    return getattr(importlib.import_module(module), attr)


def method_class(name: str) -> type[Method]:
    return load(entry(name).where)


def get(name: str, cfg: RunConfig) -> Method:
    return method_class(name)(cfg, name)
