"""The stage graph of a run, declared once. `dorl pipeline` runs it in order, `dorl k8s render` turns
each node into a Job and into a task of the Argo DAG; all three read `nodes(cfg)`.

    for each dataset:  data ─► train tf ─► relabel ─► train <method> ─► evaluate <method>
                                      └──────────────────────────────► evaluate tf
                       train ilql + train <candidates> ─► evaluate ilql_scorer   (pipeline.scorers)
    then:              report (every evaluation)

A dataset whose candidates are your own scored rows alone (`data.sources.D.candidates: scored`) relabels from the
data alone (`dorl relabel --data D`, the scored file named in the config): no beams, so it waits for data, not tf.

With `pipeline.seeds`, each method's train and evaluate nodes are repeated once per seed (`seed`:
`dorl train --seed S`, the method's TrainConfig.seed); data, tf, relabel and tf's evaluation stay
one per dataset (tf is trained once, so it has one evaluation), and the report reads every one. With
`pipeline.seed_scope: all` tf (`dorl train --method tf --seed S`), relabel and tf's evaluation are repeated per
seed too, each method of seed S training from seed S's tf and relabel: the seeds then vary the whole pipeline
after the data.

A node names its stage, dataset, method and seed, its inputs (keyword → artifact URI), its output
and the nodes it waits for. The same node gives the stage function's keyword arguments (`kwargs`, one
order for every stage: the dataset or method (and seed), the inputs, `out_uri`, then `force`) and the stage
command's arguments (`args`, the same order). Where each artifact lives is `dorl.layout`'s.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from dorl import layout, methods
from dorl.config import RunConfig
from dorl.errors import ConfigError

# stage -> (the stage function, the `dorl` command that runs it, which of dataset/method/seed it takes)
STAGES: dict[str, tuple[str, list[str], tuple[str, ...]]] = {
    "data": ("dorl.stages.data:prepare", ["data", "prepare"], ("dataset",)),
    "train": ("dorl.stages.train:train", ["train"], ("method", "seed")),
    "relabel": ("dorl.stages.relabel:relabel", ["relabel"], ()),
    "evaluate": ("dorl.stages.evaluate:evaluate", ["evaluate"], ("method",)),
    "report": ("dorl.stages.report:report", ["report"], ()),
}
# keyword argument of a stage function -> its command-line flag
FLAGS = {
    "dataset": "--dataset",
    "method": "--method",
    "seed": "--seed",
    "data_uri": "--data",
    "base_uri": "--base",
    "model_uri": "--model",
    "candidates_uri": "--candidates-from",
    "eval_uris": "--eval",
    "out_uri": "--out",
}


@dataclass(frozen=True)
class Node:
    stage: str  # a key of STAGES
    out: str  # the artifact it writes
    inputs: tuple[tuple[str, str | tuple[str, ...]], ...] = ()  # (keyword, URI or URIs), in argument order
    dataset: str | None = None
    method: str | None = None
    after: tuple[str, ...] = ()  # keys of the nodes whose outputs it reads
    seed: int | None = None  # a method's training seed (pipeline.seeds); None: its own

    @property
    def key(self) -> str:
        """'abcd/data', 'abcd/train/tf', 'abcd/relabel', 'abcd/evaluate/dt', 'abcd/seed-1/train/dt', 'report'."""
        seed = None if self.seed is None else f"seed-{self.seed}"
        return "/".join(p for p in (self.dataset, seed, self.stage, self.method) if p)

    @property
    def title(self) -> str:
        """'abcd: train tf', 'abcd: train dt (seed 1)' (the pipeline's view)."""
        what = " ".join(p for p in (self.stage, self.method) if p)
        what += "" if self.seed is None else f" (seed {self.seed})"
        return f"{self.dataset}: {what}" if self.dataset else what

    def kwargs(self) -> dict:
        """Keyword arguments of the stage function (without `force`); an unset seed is left out."""
        out: dict = {k: getattr(self, k) for k in STAGES[self.stage][2] if getattr(self, k) is not None}
        out.update({k: list(v) if isinstance(v, tuple) else v for k, v in self.inputs})
        out["out_uri"] = self.out
        return out

    def args(self, config_path: str | None = None, extra: list[str] = ()) -> list[str]:
        """Arguments of `dorl` that run this node (`extra`: e.g. relabel's --shard, before --config)."""
        words = list(STAGES[self.stage][1])
        for key, value in self.kwargs().items():
            for v in value if isinstance(value, list) else [value]:
                words += [FLAGS[key], str(v)]
        words += list(extra)
        return words + (["--config", config_path] if config_path else [])

    def run(self, cfg: RunConfig, force: bool = False):
        """Run the stage in this process: its `StageResult`."""
        module, attr = STAGES[self.stage][0].split(":")
        return getattr(importlib.import_module(module), attr)(cfg, **self.kwargs(), force=force)


def training_seeds(cfg: RunConfig) -> list[int | None]:
    """The methods' training seeds: pipeline.seeds (checked by the config: >= 0, none twice), or [None]
    (one run, each method's own seed)."""
    return list(cfg.pipeline.seeds) or [None]


def nodes(cfg: RunConfig) -> list[Node]:
    """Every node of the run (pipeline.datasets x pipeline.methods, scorers and seeds), each after the nodes
    it needs. pipeline.seed_scope=all repeats tf, relabel and tf's evaluation per seed too (`tf --seed S`)."""
    scorers = list(cfg.pipeline.scorers)
    datasets = list(cfg.pipeline.datasets)
    trained = list(cfg.pipeline.methods)
    per_seed = training_seeds(cfg)
    whole = cfg.pipeline.seed_scope == "all" and per_seed != [None]
    out: list[Node] = []
    evals: list[Node] = []
    base = methods.BASE
    for ds in datasets:

        def uri(stage: str, seed=None, ds=ds) -> str:
            return layout.stage_uri(cfg, ds, stage, seed)

        data = Node("data", uri("data"), dataset=ds)
        out.append(data)
        tf = relabel = None
        own = cfg.data.sources.get(ds)
        scored_only = own is not None and own.candidates == "scored"  # your scored rows alone: no beams
        for seed in per_seed:
            if tf is None or whole:  # once per dataset, or once per seed with seed_scope=all
                s = seed if whole else None
                tf = Node("train", uri(base, s), (("data_uri", data.out),), ds, base, (data.key,), s)
                if scored_only:  # no base model to propose candidates
                    relabel = Node(
                        "relabel", uri("relabel", s), (("data_uri", data.out),), ds, after=(data.key,), seed=s
                    )
                else:
                    inputs = (("data_uri", data.out), ("base_uri", tf.out))
                    relabel = Node("relabel", uri("relabel", s), inputs, ds, after=(tf.key,), seed=s)
                inputs = (("model_uri", tf.out), ("data_uri", data.out))
                tf_eval = Node("evaluate", uri(f"eval/{base}", s), inputs, ds, base, (tf.key,), s)
                out += [tf, relabel, tf_eval]
                evals.append(tf_eval)
            models = {base: tf}
            needs = (relabel.key,) if tf.key in relabel.after else (relabel.key, tf.key)  # a method starts from tf
            for m in trained:
                if scored_only and methods.entry(m).control:  # a control needs the human responses: none here
                    continue
                inputs = (("data_uri", relabel.out), ("base_uri", tf.out))
                model = models[m] = Node("train", uri(m, seed), inputs, ds, m, needs, seed)
                inputs = (("model_uri", model.out), ("data_uri", data.out))
                ev = Node("evaluate", uri(f"eval/{m}", seed), inputs, ds, m, (model.key,), seed)
                out += [model, ev]
                evals.append(ev)
            for s in scorers:
                scoring, cands = methods.get(s, cfg).pipeline_inputs()
                missing = [m for m in (scoring, cands) if m not in models]
                if missing:
                    raise ConfigError(
                        f"pipeline.scorers has {s}, which reads {' and '.join(missing)}: add to pipeline.methods"
                    )
                inputs = (
                    ("model_uri", models[scoring].out),
                    ("candidates_uri", models[cands].out),
                    ("data_uri", data.out),
                )
                after = (models[scoring].key, models[cands].key)
                ev = Node("evaluate", uri(f"eval/{s}", seed), inputs, ds, s, after, seed)
                out.append(ev)
                evals.append(ev)
    uris = tuple(e.out for e in evals)
    out.append(Node("report", layout.report_uri(cfg), (("eval_uris", uris),), after=tuple(e.key for e in evals)))
    return out
