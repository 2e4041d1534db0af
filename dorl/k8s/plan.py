"""What runs on the cluster for one run config: checked settings, then the steps in dependency order.

A step is one Kubernetes Job (one pod, or an indexed set of pods for relabel shards and multi-node
training) running one `dorl` stage command: one per node of the stage graph (`dorl.stages.graph`),
whose arguments the node gives (relabel with k8s.relabel_shards > 1: an Indexed Job of shards, then an
assembling Job). The Jobs (`dorl.k8s.render`) and the Argo DAG's tasks (`dorl.k8s.workflow`) are these steps.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from dorl.config import RunConfig
from dorl.errors import ConfigError
from dorl.stages import graph
from dorl.stages.graph import Node

CONFIG_DIR = "/etc/dorl"
CONFIG_PATH = f"{CONFIG_DIR}/run.yaml"
SCRATCH = "/work"
SHARD_INDEX = "$(JOB_COMPLETION_INDEX)"  # expanded by the kubelet from the pod's env
MAX_RUN = 24  # the longest Job name, dorl-<run>-taskmaster3-train-tf-top-<index>, must fit a 63-char hostname

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


@dataclass
class Step:
    """One Job: a stage for one dataset (and method), the steps it waits for, how its pods run."""

    name: str
    stage: str  # data | train | relabel | relabel-assemble | evaluate | report
    args: list[str]  # arguments of `dorl` (the image's entrypoint), --config included
    pool: str  # resources: cpu (data, report) | gpu (relabel, evaluate) | train
    after: list[str] = field(default_factory=list)
    dataset: str | None = None
    method: str | None = None
    shards: int = 1  # > 1: an Indexed Job, one pod per relabel shard
    nodes: int = 1  # > 1: an Indexed Job, one pod per training node, behind a headless Service


# ---------------------------------------------------------------- checks


def check(cfg: RunConfig) -> None:
    """Refuse a run config that cannot run on a cluster, naming the key (ConfigError: exit 2). Only what is
    cluster-specific or spans keys: ranges and types are the config's (K8sConfig.RANGES, dorl.config)."""
    k = cfg.k8s
    root = cfg.root
    if not root.startswith("s3://"):
        raise ConfigError(
            f"config key 'root': pods share artifacts through S3, so root must be s3://bucket/prefix, got {root!r}"
        )
    bucket = root[len("s3://") :].split("/", 1)[0]
    if not bucket:
        raise ConfigError(f"config key 'root': no bucket in {root!r}; expected s3://bucket/prefix")
    # Seeded Jobs' names end in -s<seed>: the run name gives way to it.
    longest = max(cfg.pipeline.seeds, default=None)
    max_run = MAX_RUN - (0 if longest is None else len(f"-s{longest}"))
    long_name = max(cfg.pipeline.datasets, key=len, default="")  # your own datasets' names may be longer
    max_run -= max(0, len(long_name) - len("taskmaster3"))
    if not (_DNS_LABEL.match(cfg.run) and len(cfg.run) <= max_run):
        raise ConfigError(
            f"config key 'run': {cfg.run!r} names Kubernetes objects: use at most {max_run} lowercase letters, "
            "digits and '-', starting and ending with a letter or digit"
            + ("" if longest is None else f" (pipeline.seeds add -s{longest} to Job names)")
            + (f" (dataset {long_name!r} takes the rest of the Job names)" if len(long_name) > 11 else "")
        )
    if not cfg.pipeline.datasets:
        raise ConfigError("config key 'pipeline.datasets': no dataset to run")
    for d in cfg.pipeline.datasets:
        own = cfg.data.sources.get(d)
        for key in ("path", "scored"):
            value = getattr(own, key) if own is not None else None
            if value is not None and not value.startswith("s3://"):
                raise ConfigError(
                    f"config key 'data.sources.{d}.{key}': pods read your files from S3, so it must be "
                    f"s3://bucket/key, got {value!r}"
                )
    for key, values in (("pipeline.datasets", cfg.pipeline.datasets), ("pipeline.methods", cfg.pipeline.methods)):
        dup = sorted({v for v in values if values.count(v) > 1})
        if dup:
            raise ConfigError(f"config key '{key}': {dup[0]!r} is listed twice")
    named = [d.replace("_", "-") for d in cfg.pipeline.datasets]  # as Job names spell them
    for i, d in enumerate(cfg.pipeline.datasets):
        if named.index(named[i]) != i:
            other = cfg.pipeline.datasets[named.index(named[i])]
            raise ConfigError(f"config key 'pipeline.datasets[{i}]': {d!r} and {other!r} would name the same Jobs")
    if k.nodes > 1 and k.launcher != "torchrun":
        raise ConfigError("config key 'k8s.launcher': multi-node training (k8s.nodes > 1) runs with torchrun")
    if not k.image or any(c.isspace() for c in k.image):
        raise ConfigError(f"config key 'k8s.image': not an image reference: {k.image!r}")
    if not _DNS_LABEL.match(k.namespace):
        raise ConfigError(f"config key 'k8s.namespace': {k.namespace!r} is not a valid namespace name")
    for key in ("s3_secret", "service_account", "argo_service_account", "priority_class"):
        value = getattr(k, key)
        if value is not None and not _DNS_SUBDOMAIN.match(value):
            raise ConfigError(f"config key 'k8s.{key}': {value!r} is not a valid Kubernetes object name")
    if k.endpoint_url is not None and not re.match(r"^https?://[^/\s]+", k.endpoint_url):
        raise ConfigError(f"config key 'k8s.endpoint_url': expected http(s)://host[:port], got {k.endpoint_url!r}")
    _check_quantities(cfg)


def _check_quantities(cfg: RunConfig) -> None:
    from kubernetes.utils import parse_quantity

    k = cfg.k8s
    items = [("shm_size", k.shm_size), ("scratch_size", k.scratch_size)]
    for pool in ("cpu_pod", "gpu_pod", "train_pod"):
        res = getattr(k, pool)
        items += [(f"{pool}.cpu", res.cpu), (f"{pool}.memory", res.memory)]
    items += [(f"node.{key}", getattr(k.node, key)) for key in ("cpu", "memory", "ephemeral_storage")]
    items = [(key, value) for key, value in items if value is not None]  # an unset node key: not checked
    for key, value in items:
        try:
            ok = parse_quantity(value) > 0
        except (ValueError, TypeError):
            ok = False
        if not ok:
            raise ConfigError(f"config key 'k8s.{key}': {value!r} is not a positive Kubernetes quantity (e.g. 8, 16Gi)")


def hub_models(cfg: RunConfig) -> dict[str, list[str]]:
    """The Hugging Face Hub models the run's pods load, {hub id: the config keys naming it}: the base model (and
    its tokenizer) and the BERTScore encoder, which every evaluation computes. A folder path (in the image or a
    mounted volume) and the packaged MiniLM are not Hub models."""
    out: dict[str, list[str]] = {}
    mc = cfg.model
    named = []
    if mc.source == "pretrained" or mc.tokenizer == "pretrained":
        named.append(("model.name", mc.name))
    if cfg.metrics.bertscore_model != "minilm":
        named.append(("metrics.bertscore_model", cfg.metrics.bertscore_model))
    for key, value in named:
        if not value.startswith(("/", "./", "../", "~")):
            out.setdefault(value, []).append(key)
    return out


# ---------------------------------------------------------------- the plan


def job_name(cfg: RunConfig, *parts: str) -> str:
    return "-".join(["dorl", cfg.run, *parts]).replace("_", "-")


POOLS = {"data": "cpu", "train": "train", "relabel": "gpu", "evaluate": "gpu", "report": "cpu"}


def job_parts(node: Node) -> list[str]:
    """The Job name of a stage-graph node, after `dorl-<run>-`: abcd-data, abcd-train-dt, abcd-eval-dt, report;
    with a seed: abcd-train-dt-s1, abcd-eval-dt-s1."""
    stage = "eval" if node.stage == "evaluate" else node.stage
    seed = None if node.seed is None else f"s{node.seed}"
    return [p for p in (node.dataset, stage, node.method, seed) if p]


def plan(cfg: RunConfig) -> list[Step]:
    """Every Job of the run, one per node of the stage graph (relabel shards: an Indexed Job, then an
    assembling one), in the graph's order: each comes after the Jobs it needs."""
    check(cfg)
    k = cfg.k8s
    steps: list[Step] = []
    job: dict[str, str] = {}  # node key -> the Job its dependents wait for
    for node in graph.nodes(cfg):
        name = job_name(cfg, *job_parts(node))
        after = [job[a] for a in node.after]
        n = k.relabel_shards
        scored_only = node.stage == "relabel" and "base_uri" not in dict(node.inputs)  # no beams: CPU, no shards
        if node.stage == "relabel" and n > 1 and not scored_only:
            shard = node.args(CONFIG_PATH, ["--shard", f"{SHARD_INDEX}/{n}"])
            steps.append(Step(name, "relabel", shard, "gpu", after, node.dataset, shards=n))
            assemble = node.args(CONFIG_PATH, ["--assemble", str(n)])
            name = job_name(cfg, *job_parts(node), "assemble")
            steps.append(Step(name, "relabel-assemble", assemble, "cpu", [steps[-1].name], node.dataset))
        else:
            nodes = k.nodes if node.stage == "train" else 1
            args = node.args(CONFIG_PATH)
            pool = "cpu" if scored_only else POOLS[node.stage]
            steps.append(Step(name, node.stage, args, pool, after, node.dataset, node.method, nodes=nodes))
        job[node.key] = name
    return steps
