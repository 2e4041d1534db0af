"""The pod every stage runs in, shared by the Jobs, the JobSets and the Argo Workflow: labels, environment,
resources, launcher, volumes, a locked-down security context, and the pod spec they make together.

In: a RunConfig and a plan Step (`dorl.k8s.plan`). Out: plain dicts (Kubernetes API objects' parts).
"""

from __future__ import annotations

import re

from dorl import __version__
from dorl.config import RunConfig
from dorl.errors import EXIT_TRANSIENT as TRANSIENT_EXIT  # S3 throttled/unreachable, rendezvous timeout: retry
from dorl.errors import EXIT_USER_ERROR as USER_ERROR_EXIT  # bad config or input: retrying cannot help
from dorl.k8s.configmap import config_map_name
from dorl.k8s.plan import CONFIG_DIR, SCRATCH, Step, hub_models

CONTAINER = "dorl"
MODELS_DIR = "/models"  # k8s.models_pvc, read-only
UID = 10001  # the image's `dorl` user (docker/Dockerfile)


def labels(cfg: RunConfig, stage: str, dataset: str | None = None, method: str | None = None, pool: str | None = None):
    out = {
        "app.kubernetes.io/name": "dorl",
        "app.kubernetes.io/instance": cfg.run,
        "app.kubernetes.io/component": stage,
        "app.kubernetes.io/part-of": "dorl",
        "app.kubernetes.io/managed-by": "dorl",
        "app.kubernetes.io/version": __version__,
        "dorl.dev/run": cfg.run,
        "dorl.dev/stage": stage,
    }
    if dataset:
        out["dorl.dev/dataset"] = dataset
    if method:
        out["dorl.dev/method"] = method
    if pool:
        out["dorl.dev/pool"] = pool
    return {**cfg.k8s.labels, **out}


def step_labels(cfg: RunConfig, step: Step) -> dict:
    return labels(cfg, step.stage, step.dataset, step.method, step.pool)


def uses_gpu(cfg: RunConfig, pool: str) -> bool:
    return cfg.k8s.device == "gpu" and pool in ("gpu", "train")


def gpu_count(cfg: RunConfig, pool: str) -> int:
    if not uses_gpu(cfg, pool):
        return 0
    return cfg.k8s.gpus if pool == "train" else 1


def _times(quantity: str, n: int) -> str:
    """`8` x 4 = `32`, `64Gi` x 4 = `256Gi` (exact: the number part is multiplied, the unit kept)."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([A-Za-z]*)", quantity)
    if n == 1 or not m:
        return quantity
    value = float(m.group(1)) * n
    return f"{int(value) if value.is_integer() else value}{m.group(2)}"


def scale(cfg: RunConfig, pool: str) -> int:
    """How many times the per-GPU cpu/memory/shm a pod of this pool gets (training pods: one per GPU)."""
    return gpu_count(cfg, pool) if pool == "train" and cfg.k8s.scale_with_gpus and gpu_count(cfg, pool) > 1 else 1


def shm_size(cfg: RunConfig, pool: str = "train") -> str:
    return _times(cfg.k8s.shm_size, scale(cfg, pool))


def resources(cfg: RunConfig, pool: str) -> dict:
    res = getattr(cfg.k8s, f"{pool}_pod")
    n = scale(cfg, pool)
    memory = _times(res.memory, n)
    requests = {"cpu": _times(res.cpu, n), "memory": memory, "ephemeral-storage": cfg.k8s.scratch_size}
    limits = {"memory": memory}
    gpus = gpu_count(cfg, pool)
    if gpus:
        requests[cfg.k8s.gpu_resource] = str(gpus)
        limits[cfg.k8s.gpu_resource] = str(gpus)
    if pool == "train":  # RDMA / EFA devices of multi-GPU training
        for name, value in sorted(cfg.k8s.extra_resources.items()):
            requests[name] = limits[name] = str(value)
    return {"requests": requests, "limits": limits}


def launcher(cfg: RunConfig, step: Step) -> list[str] | None:
    """The command in front of `dorl ARGS` for multi-GPU training pods on one node (several nodes: the JobSet's
    torchrun, `dorl.k8s.jobset`); None: the image's entrypoint alone. `dorl launch` keeps the exit-code contract
    through the launcher."""
    if step.pool != "train":
        return None
    if step.nodes > 1:
        raise ValueError(f"{step.name}: a multi-node step's launcher is its JobSet's (dorl.k8s.jobset)")
    k = cfg.k8s
    procs = gpu_count(cfg, "train") or 1
    if procs == 1:
        return None
    if k.launcher == "deepspeed":
        return ["dorl", "launch", "deepspeed", f"--num_gpus={procs}", "--no_local_rank", "--module", "dorl"]
    return ["dorl", "launch", "torchrun", "--standalone", f"--nproc_per_node={procs}", "-m", "dorl"]


def env(cfg: RunConfig, indexed: bool = False) -> list[dict]:
    """Writable places live on the scratch volume (the root filesystem is read-only)."""
    out = [
        {"name": "HOME", "value": SCRATCH},
        {"name": "DORL_CACHE", "value": f"{SCRATCH}/cache"},
        {"name": "HF_HOME", "value": f"{SCRATCH}/hf"},
        {"name": "TORCH_EXTENSIONS_DIR", "value": f"{SCRATCH}/torch_extensions"},
        {"name": "TRITON_CACHE_DIR", "value": f"{SCRATCH}/triton"},
        {"name": "MPLCONFIGDIR", "value": f"{SCRATCH}/matplotlib"},
        {"name": "XDG_CACHE_HOME", "value": f"{SCRATCH}/.cache"},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
        {"name": "TOKENIZERS_PARALLELISM", "value": "false"},
        # Models come from the image, the store (`dorl models fetch`) or a PVC; never the Hub unless
        # k8s.env sets HF_HUB_OFFLINE: "0".
        {"name": "HF_HUB_OFFLINE", "value": "1"},
    ]
    if cfg.k8s.models_pvc:
        out.append({"name": "HF_HUB_CACHE", "value": f"{MODELS_DIR}/hub"})
    if cfg.k8s.endpoint_url:
        out.append({"name": "AWS_ENDPOINT_URL", "value": cfg.k8s.endpoint_url})
    out = [e for e in out if e["name"] not in cfg.k8s.env]  # k8s.env wins
    out += [{"name": k, "value": v} for k, v in sorted(cfg.k8s.env.items())]
    if indexed:  # set by the Job controller too; declared so that $(JOB_COMPLETION_INDEX) always expands
        path = "metadata.annotations['batch.kubernetes.io/job-completion-index']"
        out.append({"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {"fieldPath": path}}})
    return out


def container(cfg: RunConfig, pool: str, args: list[str], command: list[str] | None, indexed: bool = False) -> dict:
    c: dict = {"name": CONTAINER, "image": cfg.k8s.image, "imagePullPolicy": cfg.k8s.image_pull_policy}
    if command:
        c["command"] = command
    c["args"] = args
    c["env"] = env(cfg, indexed)
    if cfg.k8s.s3_secret:
        c["envFrom"] = [{"secretRef": {"name": cfg.k8s.s3_secret}}]
    c["resources"] = resources(cfg, pool)
    c["securityContext"] = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    c["volumeMounts"] = [
        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
        {"name": "dshm", "mountPath": "/dev/shm"},
        {"name": "scratch", "mountPath": SCRATCH},
        {"name": "scratch", "mountPath": "/tmp", "subPath": "tmp"},
    ]
    if cfg.k8s.models_pvc:
        c["volumeMounts"].append({"name": "models", "mountPath": MODELS_DIR, "readOnly": True})
    return c


def pod_security() -> dict:
    return {
        "runAsNonRoot": True,
        "runAsUser": UID,
        "runAsGroup": UID,
        "fsGroup": UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def volumes(cfg: RunConfig, pool: str = "train") -> list[dict]:
    out = [
        {"name": "config", "configMap": {"name": config_map_name(cfg)}},
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": shm_size(cfg, pool)}},
        {"name": "scratch", "emptyDir": {"sizeLimit": cfg.k8s.scratch_size}},
    ]
    if cfg.k8s.models_pvc:
        out.append({"name": "models", "persistentVolumeClaim": {"claimName": cfg.k8s.models_pvc, "readOnly": True}})
    return out


def init_containers(cfg: RunConfig) -> list[dict]:
    """With k8s.models_uri: copy the mirrored Hub models from the store into the pod's HF cache first."""
    if not cfg.k8s.models_uri:
        return []
    args = ["models", "fetch", "--from", cfg.k8s.models_uri]
    for hub_id in hub_models(cfg):  # a model missing from the mirror fails the pod at once (exit 2), naming it
        args += ["--need", hub_id]
    c = container(cfg, "cpu", args, None)
    c["name"] = "models"
    c["resources"] = {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "2Gi"}}
    return [c]


def scheduling(cfg: RunConfig, pool: str) -> dict:
    """schedulerName, nodeSelector, tolerations, priority and pull secrets of a pod of this pool."""
    k = cfg.k8s
    out: dict = {}
    if k.scheduler_name:
        out["schedulerName"] = k.scheduler_name
    selector = dict(k.node_selector)
    tolerations = [dict(t) for t in k.tolerations]
    if uses_gpu(cfg, pool):
        selector.update(k.gpu_node_selector)
        tolerations.insert(0, {"key": k.gpu_resource, "operator": "Exists", "effect": "NoSchedule"})
    if tolerations:
        out["tolerations"] = tolerations
    if selector:
        out["nodeSelector"] = selector
    if k.priority_class:
        out["priorityClassName"] = k.priority_class
    if k.image_pull_secrets:
        out["imagePullSecrets"] = [{"name": s} for s in k.image_pull_secrets]
    return out


def pod_metadata(cfg: RunConfig, step_labels: dict) -> dict:
    out: dict = {"labels": step_labels}
    if cfg.k8s.annotations:
        out["annotations"] = dict(cfg.k8s.annotations)
    return out


def queue_labels(cfg: RunConfig) -> dict:
    """Kueue admits a Job or JobSet (all its pods at once: gang admission) from this LocalQueue."""
    return {"kueue.x-k8s.io/queue-name": cfg.k8s.queue} if cfg.k8s.queue else {}


def pod_failure_policy() -> dict:
    """The exit-code contract (dorl/errors.py): a user error (2) fails the Job at once; a transient fault (75) is
    retried and counted against backoffLimit like a crash (bounded: an S3 outage or a rendezvous that never forms
    must not loop); a disrupted pod (preemption, drain: not the pod's doing) is retried uncounted, bounded by the
    Job's activeDeadlineSeconds."""
    on_exit = {"containerName": CONTAINER, "operator": "In"}
    return {
        "rules": [
            {"action": "FailJob", "onExitCodes": {**on_exit, "values": [USER_ERROR_EXIT]}},
            {"action": "Count", "onExitCodes": {**on_exit, "values": [TRANSIENT_EXIT]}},
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        ]
    }


def pod_spec(cfg: RunConfig, step: Step, args: list[str], command: list[str] | None) -> dict:
    """The pod of one step (a Job's, or each pod of a JobSet's; Argo's container templates take its parts)."""
    k = cfg.k8s
    indexed = step.shards > 1 or step.nodes > 1
    spec: dict = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security(),
    }
    if k.service_account:
        spec["serviceAccountName"] = k.service_account
    spec.update(scheduling(cfg, step.pool))
    init = init_containers(cfg)
    if init:
        spec["initContainers"] = init
    spec["containers"] = [container(cfg, step.pool, args, command, indexed=indexed)]
    spec["volumes"] = volumes(cfg, step.pool)
    return spec
