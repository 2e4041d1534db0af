"""`dorl k8s preflight` (also the first thing `dorl k8s submit` does): what would stop the run on a real cluster,
found before anything is created, each as one line naming the object and the fix (exit 2).

Offline, from the run config and the rendered objects:
- a source for every Hub model the pods load (they run with HF_HUB_OFFLINE=1): k8s.models_uri, k8s.models_pvc,
  or an HF cache in the image (k8s.env HF_HUB_CACHE);
- S3 credentials named: k8s.s3_secret or k8s.service_account (IRSA, EKS Pod Identity); with an S3-compatible
  store, a note on boto3's checksums;
- every pod's requests fit one node (k8s.node: CPU, memory, GPUs, ephemeral storage; an unset key: not checked);
- JobSet settings that agree (the rendezvous gives up before the attempt's deadline).

Server-side, when a cluster is reachable (dorl.k8s.server_checks): RBAC by SelfSubjectAccessReview, the CRDs at
the versions the run needs (JobSet >= v0.10, Argo, Kueue) and the LocalQueue, the Secret, ServiceAccounts and
namespace, and a strict server-side dry run of every object submit would create.

Notes are things that are legal but worth knowing (no gang admission for a multi-node run), or not checked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dorl.config import RunConfig
from dorl.errors import UserError
from dorl.k8s import pod, server_checks
from dorl.k8s.cluster import Clients
from dorl.k8s.plan import hub_models
from dorl.k8s.render import Manifests

POOL_KEYS = {"cpu": "k8s.cpu_pod", "gpu": "k8s.gpu_pod", "train": "k8s.train_pod"}


class PreflightError(UserError):
    """One line per problem (exit 2); nothing was created."""

    def __init__(self, report: Report):
        super().__init__("\n".join(report.problems))
        self.report = report


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)  # each: "<object>: <what is wrong>; fix: <what to do>"
    notes: list[str] = field(default_factory=list)
    server: bool = False  # the server-side checks ran

    def add(self, subject: str, problem: str, fix: str) -> None:
        line = f"{subject}: {problem}; fix: {fix}"
        if line not in self.problems:
            self.problems.append(line)


def preflight(cfg: RunConfig, m: Manifests, mode: str, c: Clients | None) -> Report:
    """Every check (the server-side ones only with clients); raises PreflightError listing the problems."""
    r = Report()
    models(cfg, r)
    credentials(cfg, r)
    s3_compatible(cfg, r)
    node_fit(cfg, m, r)
    jobset_settings(cfg, m, mode, r)
    if c is not None:
        server_checks.server(cfg, m, mode, c, r)
    if r.problems:
        raise PreflightError(r)
    return r


# ---------------------------------------------------------------- offline


def models(cfg: RunConfig, r: Report) -> None:
    k = cfg.k8s
    needed = hub_models(cfg)
    in_image = "HF_HUB_CACHE" in k.env or "HF_HOME" in k.env
    if not needed or k.models_uri or k.models_pvc or k.env.get("HF_HUB_OFFLINE") == "0":
        return
    if in_image:
        r.notes.append(f"models {', '.join(needed)}: expected in the image's HF cache (k8s.env), not checked here")
        return
    named = ", ".join(f"{hub_id} ({', '.join(keys)})" for hub_id, keys in needed.items())
    bucket = cfg.root.removeprefix("s3://").split("/", 1)[0] or "BUCKET"
    r.add(
        "config",
        f"the pods load the Hub models {named} but run offline (HF_HUB_OFFLINE=1) and no model source is set",
        f"dorl models mirror {' '.join(needed)} --out s3://{bucket}/models (where the Hub is reachable) and set "
        f"k8s.models_uri: s3://{bucket}/models; or k8s.models_pvc; or an image built with --build-arg "
        "HF_MODELS=... and k8s.env.HF_HUB_CACHE: /opt/hf/hub",
    )


def credentials(cfg: RunConfig, r: Report) -> None:
    k = cfg.k8s
    if not k.s3_secret and not k.service_account:
        r.add(
            "config keys 'k8s.s3_secret' and 'k8s.service_account'",
            "both unset, so the pods have no S3 credentials",
            "name the Secret holding AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (k8s.s3_secret), or a "
            "ServiceAccount with an IAM role (k8s.service_account: IRSA or EKS Pod Identity)",
        )


def s3_compatible(cfg: RunConfig, r: Report) -> None:
    k = cfg.k8s
    if k.endpoint_url and "AWS_REQUEST_CHECKSUM_CALCULATION" not in k.env:
        r.notes.append(
            f"k8s.endpoint_url {k.endpoint_url}: boto3 >= 1.36 sends CRC checksums on every upload, which some "
            "S3-compatible servers (GCS's XML API among them) reject; if uploads fail, set k8s.env "
            "AWS_REQUEST_CHECKSUM_CALCULATION: when_required and AWS_RESPONSE_CHECKSUM_VALIDATION: when_required"
        )


def pod_requests(obj: dict) -> dict:
    """The requests of the pod an object runs, as the scheduler sums them: the containers added up, each init
    container (run one at a time, before them) taken if larger."""
    from kubernetes.utils import parse_quantity

    spec = obj["spec"]
    if obj["kind"] == "JobSet":
        spec = spec["replicatedJobs"][0]["template"]["spec"]
    spec = spec["template"]["spec"]
    total: dict = {}
    for c in spec["containers"]:
        for name, value in c["resources"].get("requests", {}).items():
            total[name] = total.get(name, 0) + parse_quantity(value)
    for c in spec.get("initContainers", []):
        for name, value in c["resources"].get("requests", {}).items():
            total[name] = max(total.get(name, 0), parse_quantity(value))
    return total


def node_fit(cfg: RunConfig, m: Manifests, r: Report) -> None:
    from kubernetes.utils import parse_quantity

    k, node = cfg.k8s, cfg.k8s.node
    have = {"cpu": node.cpu, "memory": node.memory, "ephemeral-storage": node.ephemeral_storage}
    have[k.gpu_resource] = None if node.gpus is None else str(node.gpus)
    node_key = {"cpu": "cpu", "memory": "memory", "ephemeral-storage": "ephemeral_storage", k.gpu_resource: "gpus"}
    seen: set[tuple[str, str]] = set()
    for step in m.steps:
        obj = m.objects()[step.name]
        for name, asked in pod_requests(obj).items():
            if have.get(name) is None or asked <= parse_quantity(have[name]) or (step.pool, name) in seen:
                continue
            seen.add((step.pool, name))
            if name in ("cpu", "memory"):
                scaled = pod.scale(cfg, step.pool) > 1
                key = f"{POOL_KEYS[step.pool]}.{name}" + (" (per GPU: scale_with_gpus)" if scaled else "")
            else:
                key = "k8s.scratch_size" if name == "ephemeral-storage" else "k8s.gpus"
            r.add(
                f"{obj['kind']} {step.name} ({step.pool} pods)",
                f"requests {name} {_human(name, asked)}, more than one node has (k8s.node.{node_key[name]}: "
                f"{have[name]}), so its pods would stay Pending",
                f"lower {key}, or run on larger nodes",
            )


def _human(name: str, q) -> str:
    if name in ("memory", "ephemeral-storage"):
        return f"{float(q) / 2**30:g}Gi"
    return f"{float(q):g}"


def jobset_settings(cfg: RunConfig, m: Manifests, mode: str, r: Report) -> None:
    k = cfg.k8s
    if m.jobsets and k.rendezvous_timeout >= k.active_deadline_seconds:
        r.add(
            "config key 'k8s.rendezvous_timeout'",
            f"{k.rendezvous_timeout} s is not below k8s.active_deadline_seconds ({k.active_deadline_seconds} s): an "
            "attempt would reach its deadline before the rendezvous gives up",
            "lower k8s.rendezvous_timeout (it covers image pulls and node start-up: minutes, not days)",
        )
    if m.jobsets and not k.queue and not k.scheduler_name:
        r.notes.append(
            f"k8s.nodes={k.nodes} without k8s.queue (Kueue) or k8s.scheduler_name: nothing schedules a JobSet's pods "
            f"together; a partly scheduled group times out its rendezvous ({k.rendezvous_timeout} s) and restarts, "
            f"at most k8s.max_restarts={k.max_restarts} times"
        )
    if mode == "argo" and k.queue:
        r.notes.append(
            "k8s.queue with --mode argo: Argo's container steps are plain pods, which Kueue admits only with its "
            "`pod` integration enabled (off by default; docs/kubernetes.md); the JobSets go through its JobSet one"
        )
