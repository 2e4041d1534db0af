"""The `k8s` section of the run configuration: how `dorl k8s` renders and submits a run (image, resources, nodes,
retries and deadlines, S3 credentials by Secret name)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar, Literal

from dorl.config.loader import param
from dorl.errors import ConfigError

# Environment names that hold secrets (AWS keys, tokens, passwords): refused in k8s.env.
SECRET_NAME = re.compile(
    r"(SECRET|PASSWORD|PASSWD|TOKEN|PRIVATE_KEY|CREDENTIAL|API_KEY|ACCESS_KEY_ID|SESSION_KEY)", re.IGNORECASE
)


@dataclass
class K8sResources:
    cpu: str = param("4", "CPU request of the pod (no CPU limit: throttling slows training and saves nothing).")
    memory: str = param("16Gi", "Memory request and limit of the pod (equal, so the pod is never evicted for memory).")


@dataclass
class K8sNode:
    RANGES: ClassVar[dict] = {"gpus": ">= 1"}
    cpu: str | None = param(None, "Allocatable CPU of one node (kubectl describe node: Allocatable), e.g. 190.")
    memory: str | None = param(None, "Allocatable memory of one node, e.g. 1900Gi.")
    gpus: int | None = param(None, "GPUs of one node, e.g. 8.")
    ephemeral_storage: str | None = param(None, "Allocatable ephemeral storage of one node, e.g. 400Gi.")


@dataclass
class K8sConfig:
    RANGES: ClassVar[dict] = {"gpus": ">= 1", "nodes": ">= 1", "master_port": "[1, 65535]", "relabel_shards": ">= 1",
        "backoff_limit": ">= 0", "active_deadline_seconds": ">= 1", "ttl_seconds_after_finished": ">= 0",
        "poll_seconds": "> 0", "retry_limit": ">= 0", "transient_retry_limit": ">= 0", "rendezvous_timeout": ">= 1",
        "max_restarts": ">= 0", "torchrun_max_restarts": ">= 0", "workflow_deadline_seconds": ">= 1",
        "api_retries": ">= 0", "stuck_seconds": ">= 0"}  # fmt: skip
    image: str = param("ghcr.io/dorl/dorl:0.1.0", "Container image with dorl installed (docker/Dockerfile).")
    image_pull_policy: Literal["IfNotPresent", "Always", "Never"] = param("IfNotPresent", "imagePullPolicy.")
    image_pull_secrets: list[str] = param(factory=list, help="Secrets for pulling the image from a private registry.")
    namespace: str = param("dorl", "Namespace of the Jobs / Workflow (must exist).")
    service_account: str | None = param(
        None, "ServiceAccount of the pods (e.g. one bound to an IAM role for S3); unset: the namespace's default."
    )
    device: Literal["gpu", "cpu"] = param(
        "gpu", "'gpu': pods request GPUs; 'cpu': no GPU anywhere (a dev cluster; `gpus` is then ignored)."
    )
    gpus: int = param(1, "GPUs per training pod (tf and the methods); relabel and evaluate pods take one GPU each.")
    gpu_resource: str = param("nvidia.com/gpu", "Extended resource name of a GPU.")
    nodes: int = param(1, "Pods per training stage: > 1 renders an Indexed Job + headless Service (torchrun).")
    launcher: Literal["torchrun", "deepspeed"] = param(
        "torchrun", "Launcher of multi-GPU training inside one pod; multi-node training always uses torchrun."
    )
    master_port: int = param(29500, "Rendezvous port of multi-node training.")
    relabel_shards: int = param(1, "Relabel pods (an Indexed Job, one shard each), then one pod assembles them.")
    s3_secret: str | None = param(
        "dorl-s3",
        "Secret whose keys become the pods' environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ...); "
        "null: rely on the pod's identity (IRSA, workload identity).",
    )
    endpoint_url: str | None = param(None, "AWS_ENDPOINT_URL for an S3-compatible server (MinIO, Ceph...).")
    env: dict[str, str] = param(factory=dict, help="Extra environment of every pod (e.g. AWS_REGION, HF_ENDPOINT).")
    node_selector: dict[str, str] = param(factory=dict, help="nodeSelector of every pod.")
    gpu_node_selector: dict[str, str] = param(factory=dict, help="Extra nodeSelector of the GPU pods.")
    priority_class: str | None = param(None, "priorityClassName of the pods.")
    cpu_pod: K8sResources = param(factory=K8sResources, help="Resources of the CPU pods (data, report).")
    gpu_pod: K8sResources = param(
        factory=lambda: K8sResources(cpu="8", memory="48Gi"), help="Resources of a relabel or evaluate pod (1 GPU)."
    )
    train_pod: K8sResources = param(
        factory=lambda: K8sResources(cpu="8", memory="64Gi"), help="Resources of a training pod (all its GPUs)."
    )
    shm_size: str = param("16Gi", "Size of the memory-backed /dev/shm (data loaders, NCCL).")
    scratch_size: str = param(
        "20Gi",
        "Size of the pod's scratch emptyDir at /work (HF cache, checkpoints before upload, temporary files), also "
        "its ephemeral-storage request.",
    )
    node: K8sNode = param(
        factory=K8sNode,
        help="The allocatable resources of one node of the pool the pods run on: `dorl k8s preflight` checks that "
        "every pod fits one (an unset key: not checked).",
    )
    backoff_limit: int = param(
        6,
        "Retries of a failed pod, counted whatever the cause (a crash, a transient fault exiting 75); a user error "
        "(2) fails the Job at once, a disrupted pod (preemption, drain) is retried uncounted.",
    )
    active_deadline_seconds: int = param(
        172800,
        "Wall-clock limit of one step: a Job with its retries, each attempt of a JobSet (the JobSet's bound is "
        "(max_restarts + 1) x this), one attempt of an Argo step.",
    )
    ttl_seconds_after_finished: int = param(259200, "Finished Jobs (and their pods' logs) are deleted after this.")
    poll_seconds: float = param(10.0, "`dorl k8s submit`: seconds between two looks at the Jobs and their pods.")
    stuck_seconds: float = param(
        30.0,
        "`dorl k8s submit`: how long a pod may wait in a state it cannot leave by itself (CreateContainerConfigError, "
        "ImagePullBackOff, ErrImagePull...) before submit stops, naming it.",
    )
    api_retries: int = param(
        8,
        "`dorl k8s submit|status|preflight`: retries of an API call answered 429 or 5xx or cut off (backoff 1 s "
        "doubling, Retry-After honoured); then exit 75.",
    )
    workflow_deadline_seconds: int = param(
        1209600,
        "Argo: wall-clock limit of the whole Workflow (activeDeadlineSeconds); its JobSets are deleted when it fails "
        "or runs out of time.",
    )
    argo_service_account: str | None = param(
        None, "ServiceAccount of the Argo Workflow's pods (needs Argo's executor permissions)."
    )
    retry_limit: int = param(3, "Retries of a crashed step (Argo; exit codes other than 0, 2 and 75).")
    transient_retry_limit: int = param(
        12, "Argo: retries of a step in all (transient exit 75, a lost pod and crashes up to retry_limit)."
    )
    rendezvous_timeout: int = param(
        1800, "Multi-node: seconds torchrun waits for every pod to join (covers image pulls and node start-up)."
    )
    max_restarts: int = param(
        6,
        "Multi-node: group restarts of a JobSet (failurePolicy.maxRestarts), counted whatever the cause (a crash, a "
        "transient fault exiting 75, a lost pod); a user error (2) or an attempt past active_deadline_seconds fails "
        "it at once.",
    )
    torchrun_max_restarts: int = param(
        0, "torchrun --max-restarts inside a pod (worker restarts without a new pod; the JobSet restarts groups)."
    )
    queue: str | None = param(None, "Kueue LocalQueue: label kueue.x-k8s.io/queue-name on every Job and JobSet.")
    scheduler_name: str | None = param(None, "schedulerName of every pod (e.g. volcano, a gang scheduler).")
    labels: dict[str, str] = param(factory=dict, help="Extra labels of every object and pod.")
    annotations: dict[str, str] = param(factory=dict, help="Extra annotations of every pod.")
    tolerations: list[dict[str, str | int]] = param(
        factory=list,
        help="Extra tolerations of every pod (Kubernetes toleration objects: key, operator, value, effect).",
    )
    extra_resources: dict[str, str] = param(
        factory=dict, help="Extra resources of GPU and training pods, per GPU (e.g. vpc.amazonaws.com/efa: '1')."
    )
    scale_with_gpus: bool = param(
        True, "Training pods request train_pod cpu/memory and shm_size per GPU (k8s.gpus x each)."
    )
    models_uri: str | None = param(
        None, "Where `dorl models mirror` stored the Hub models (s3://...); pods then never reach the Hub."
    )
    models_pvc: str | None = param(None, "A PersistentVolumeClaim holding HF_HOME with the models (read-only mount).")
    overlay: str | None = param(None, "kustomize overlay folder `dorl k8s submit` builds the objects with.")

    def check(self, where: str) -> None:
        for name in self.env:
            if SECRET_NAME.search(name):
                raise ConfigError(
                    f"config key '{where}.env.{name}': secrets must not go in k8s.env (it is rendered in plain text "
                    "into the ConfigMap, every Job and the Argo template); put them in a Kubernetes Secret and name "
                    "it in k8s.s3_secret"
                )
