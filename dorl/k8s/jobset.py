"""Multi-node training as a JobSet (jobset.x-k8s.io/v1alpha2, JobSet >= v0.10): one replicated Job of N pods,
restarted as a group.

Why a JobSet and not an Indexed Job: a replaced pod cannot rejoin a running torch group, so any lost pod must
restart every pod, and every restarted pod resumes from the last checkpoint in S3. `BlockingRecreate` creates the
new pods only once every old one is gone, so a new pod never meets an old pod 0 lingering in DNS. The pods meet
through torchrun's c10d rendezvous on pod 0 (hostname <jobset>-n-0-0.<jobset>, DNS from JobSet's own headless
Service, deleted with the JobSet) with a join timeout that covers image pulls and node start-up. Kueue admits
the JobSet as one unit (gang admission) from the queue named by `kueue.x-k8s.io/queue-name`.

Failure rules follow the exit-code contract (dorl/errors.py), and every restart is counted, so nothing loops on
GPUs: a user error (2) in any pod, or an attempt that ran past k8s.active_deadline_seconds, fails the JobSet at
once; anything else (a crash, a transient fault (75), a lost or preempted pod, a rendezvous that timed out
because the group was only partly scheduled) restarts the group, counted against maxRestarts. The JobSet is
bounded by (max_restarts + 1) x active_deadline_seconds. The rules' `onJobFailureMessagePatterns` needs JobSet
v0.10 or newer (an older CRD drops the field, and the user-error rule would then fail on any pod failure).
"""

from __future__ import annotations

from dorl.config import RunConfig
from dorl.errors import EXIT_TRANSIENT, EXIT_USER_ERROR, ConfigError
from dorl.k8s import pod
from dorl.k8s.configmap import CONFIG_HASH, config_hash
from dorl.k8s.plan import Step

API_VERSION = "jobset.x-k8s.io/v1alpha2"
GROUP, VERSION, PLURAL = "jobset.x-k8s.io", "v1alpha2", "jobsets"
REPLICATED_JOB = "n"  # short: a pod hostname, <jobset>-n-<job>-<pod>, must fit in 63 characters


def host(name: str, index: int = 0) -> str:
    """The stable DNS name of pod `index` of a JobSet (JobSet's headless Service is named after the JobSet)."""
    return f"{name}-{REPLICATED_JOB}-0-{index}.{name}"


def torchrun_command(cfg: RunConfig, step: Step) -> list[str]:
    """torchrun with a c10d rendezvous on pod 0 (ranks by arrival; the store's checkpoints make them equal)."""
    k = cfg.k8s
    procs = pod.gpu_count(cfg, "train") or 1
    endpoint = host(step.name)
    return [
        "dorl",
        "launch",
        "torchrun",
        f"--nnodes={step.nodes}",
        f"--nproc_per_node={procs}",
        "--rdzv_backend=c10d",
        f"--rdzv_endpoint={endpoint}:{k.master_port}",
        f"--rdzv_id={step.name}",
        f"--rdzv_conf=join_timeout={k.rendezvous_timeout}",
        f"--max_restarts={k.torchrun_max_restarts}",
        "-m",
        "dorl",
    ]


def _job_failure_policy() -> dict:
    """A child Job fails on the first failed pod (backoffLimit 0), with a reason the JobSet rules can read."""
    exit_rule = {"action": "FailJob", "onExitCodes": {"containerName": pod.CONTAINER, "operator": "In"}}
    return {
        "rules": [
            {**exit_rule, "onExitCodes": {**exit_rule["onExitCodes"], "values": [EXIT_USER_ERROR]}},
            {**exit_rule, "onExitCodes": {**exit_rule["onExitCodes"], "values": [EXIT_TRANSIENT]}},
            {"action": "FailJob", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        ]
    }


def failure_policy(cfg: RunConfig) -> dict:
    """The user-error rule matches the Job controller's message, 'Container dorl for pod NS/P failed with exit
    code 2 matching FailJob rule at index 0'; a child Job past its activeDeadlineSeconds fails with reason
    DeadlineExceeded. Every other failure takes JobSet's default action, RestartJobSet: counted."""
    return {
        "maxRestarts": cfg.k8s.max_restarts,
        "restartStrategy": "BlockingRecreate",
        "rules": [
            {
                "name": "UserError",
                "action": "FailJobSet",
                "onJobFailureReasons": ["PodFailurePolicy"],
                "onJobFailureMessagePatterns": [f"failed with exit code {EXIT_USER_ERROR} matching"],
            },
            {"name": "DeadlineExceeded", "action": "FailJobSet", "onJobFailureReasons": ["DeadlineExceeded"]},
        ],
    }


def jobset(cfg: RunConfig, step: Step) -> dict:
    """The JobSet of a multi-node training step (Argo's resource template passes a step whose name, labels and
    args are {{inputs.parameters.*}} placeholders)."""
    k = cfg.k8s
    name = step.name
    labels = pod.step_labels(cfg, step)
    spec = pod.pod_spec(cfg, step, step.args, torchrun_command(cfg, step))
    spec["containers"][0]["ports"] = [{"name": "rendezvous", "containerPort": k.master_port, "protocol": "TCP"}]
    job_spec = {
        "completionMode": "Indexed",
        "completions": step.nodes,
        "parallelism": step.nodes,
        "backoffLimit": 0,  # one lost pod restarts the group (failurePolicy), not just itself
        "activeDeadlineSeconds": k.active_deadline_seconds,
        "podFailurePolicy": _job_failure_policy(),
        "template": {"metadata": pod.pod_metadata(cfg, labels), "spec": spec},
    }
    meta = {"name": name, "namespace": k.namespace, "labels": {**labels, **pod.queue_labels(cfg)}}
    # the hash of the run config it runs: a resubmit of the same config adopts it, an edited one is refused
    meta["annotations"] = {CONFIG_HASH: config_hash(cfg)}
    if step.after:
        meta["annotations"]["dorl.dev/after"] = ",".join(step.after)
    return {
        "apiVersion": API_VERSION,
        "kind": "JobSet",
        "metadata": meta,
        "spec": {
            "network": {"enableDNSHostnames": True, "publishNotReadyAddresses": True},
            "failurePolicy": failure_policy(cfg),
            "successPolicy": {"operator": "All"},
            "ttlSecondsAfterFinished": k.ttl_seconds_after_finished,
            # labelled like the pods, so `dorl k8s status` and `logs` find the child Job and its pods
            "replicatedJobs": [
                {"name": REPLICATED_JOB, "replicas": 1, "template": {"metadata": {"labels": labels}, "spec": job_spec}}
            ],
        },
    }


def check_names(cfg: RunConfig, steps: list[Step]) -> None:
    """A JobSet pod's hostname, <jobset>-n-0-<index>, must fit in a 63-character DNS label."""
    for step in steps:
        if step.nodes > 1 and len(host(step.name, step.nodes - 1).split(".")[0]) > 63:
            raise ConfigError(
                f"config key 'run': with k8s.nodes={step.nodes} the pod hostname of {step.name} exceeds 63 "
                "characters; choose a shorter run id"
            )
