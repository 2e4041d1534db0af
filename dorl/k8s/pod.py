"""The pod every stage runs in, shared by the Jobs and the Argo Workflow: labels, environment,
resources, launcher, volumes and a locked-down security context.
"""

from __future__ import annotations

from dorl import __version__
from dorl.config import RunConfig
from dorl.errors import EXIT_USER_ERROR as USER_ERROR_EXIT  # bad config or input: retrying cannot help
from dorl.k8s.plan import CONFIG_DIR, SCRATCH, Step

CONTAINER = "dorl"
UID = 10001  # the image's `dorl` user (docker/Dockerfile)


def config_map_name(cfg: RunConfig) -> str:
    return f"dorl-{cfg.run}-config"


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
    return out


def step_labels(cfg: RunConfig, step: Step) -> dict:
    return labels(cfg, step.stage, step.dataset, step.method, step.pool)


def uses_gpu(cfg: RunConfig, pool: str) -> bool:
    return cfg.k8s.device == "gpu" and pool in ("gpu", "train")


def gpu_count(cfg: RunConfig, pool: str) -> int:
    if not uses_gpu(cfg, pool):
        return 0
    return cfg.k8s.gpus if pool == "train" else 1


def resources(cfg: RunConfig, pool: str) -> dict:
    res = getattr(cfg.k8s, f"{pool}_pod")
    requests = {"cpu": res.cpu, "memory": res.memory, "ephemeral-storage": cfg.k8s.scratch_size}
    limits = {"memory": res.memory}
    gpus = gpu_count(cfg, pool)
    if gpus:
        requests[cfg.k8s.gpu_resource] = str(gpus)
        limits[cfg.k8s.gpu_resource] = str(gpus)
    return {"requests": requests, "limits": limits}


def launcher(cfg: RunConfig, step: Step, master: str | None = None) -> list[str] | None:
    """The command in front of `dorl ARGS` for training pods; None: the image's entrypoint alone."""
    if step.pool != "train":
        return None
    k = cfg.k8s
    procs = gpu_count(cfg, "train") or 1
    if step.nodes > 1:
        return [
            "torchrun",
            f"--nnodes={step.nodes}",
            f"--nproc_per_node={procs}",
            "--node_rank=$(JOB_COMPLETION_INDEX)",
            f"--master_addr={master}",
            f"--master_port={k.master_port}",
            "-m",
            "dorl",
        ]
    if procs == 1:
        return None
    if k.launcher == "deepspeed":
        return ["deepspeed", f"--num_gpus={procs}", "--no_local_rank", "--module", "dorl"]
    return ["torchrun", "--standalone", f"--nproc_per_node={procs}", "-m", "dorl"]


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
    ]
    if cfg.k8s.endpoint_url:
        out.append({"name": "AWS_ENDPOINT_URL", "value": cfg.k8s.endpoint_url})
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
    return c


def pod_security() -> dict:
    return {
        "runAsNonRoot": True,
        "runAsUser": UID,
        "runAsGroup": UID,
        "fsGroup": UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def volumes(cfg: RunConfig) -> list[dict]:
    return [
        {"name": "config", "configMap": {"name": config_map_name(cfg)}},
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": cfg.k8s.shm_size}},
        {"name": "scratch", "emptyDir": {"sizeLimit": cfg.k8s.scratch_size}},
    ]


def scheduling(cfg: RunConfig, pool: str) -> dict:
    """nodeSelector, tolerations, priority and pull secrets of a pod of this pool."""
    k = cfg.k8s
    out: dict = {}
    selector = dict(k.node_selector)
    if uses_gpu(cfg, pool):
        selector.update(k.gpu_node_selector)
        out["tolerations"] = [{"key": k.gpu_resource, "operator": "Exists", "effect": "NoSchedule"}]
    if selector:
        out["nodeSelector"] = selector
    if k.priority_class:
        out["priorityClassName"] = k.priority_class
    if k.image_pull_secrets:
        out["imagePullSecrets"] = [{"name": s} for s in k.image_pull_secrets]
    return out


def pod_failure_policy() -> dict:
    """A user error (exit 2) fails the Job at once; a disrupted pod (preemption, drain) is not counted."""
    return {
        "rules": [
            {
                "action": "FailJob",
                "onExitCodes": {"containerName": CONTAINER, "operator": "In", "values": [USER_ERROR_EXIT]},
            },
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        ]
    }
