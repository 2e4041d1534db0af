"""`dorl k8s status` and `dorl k8s logs`: the run's Jobs (a JobSet's child Jobs included) and Argo Workflows, the
pods that cannot start by themselves (a missing Secret, an image that cannot be pulled) or cannot be scheduled,
and the pods' logs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from dorl.config import RunConfig
from dorl.k8s.cluster import (
    ARGO_GROUP,
    ARGO_VERSION,
    Clients,
    ClusterError,
    api_errors,
    job_state,
    owner,
    selector,
    stuck,
)
from dorl.k8s.pod import CONTAINER


@dataclass
class JobRow:
    name: str
    stage: str
    dataset: str
    method: str
    state: str
    why: str
    pods: str  # active/succeeded/failed
    age: str


def _age(ts) -> str:
    if ts is None:
        return ""
    seconds = int((datetime.now(UTC) - ts).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _created(obj) -> tuple[str, str]:
    ts = obj.metadata.creation_timestamp
    return (ts.isoformat() if ts else "", obj.metadata.name)


def jobs(cfg: RunConfig, c: Clients) -> list[JobRow]:
    """The run's Jobs, oldest first."""
    with api_errors(f"listing the Jobs of run {cfg.run}"):
        items = c.batch.list_namespaced_job(cfg.k8s.namespace, label_selector=selector(run=cfg.run)).items
    rows = []
    for j in sorted(items, key=_created):
        labels = j.metadata.labels or {}
        state, why = job_state(j)
        s = j.status
        pods = f"{s.active or 0}/{s.succeeded or 0}/{s.failed or 0}" if s else "0/0/0"
        rows.append(
            JobRow(
                j.metadata.name,
                labels.get("dorl.dev/stage", ""),
                labels.get("dorl.dev/dataset", ""),
                labels.get("dorl.dev/method", ""),
                state,
                why,
                pods,
                _age(j.metadata.creation_timestamp),
            )
        )
    return rows


def attention(cfg: RunConfig, c: Clients) -> list[str]:
    """One line per pod of the run that waits on a person: stuck (`dorl.k8s.cluster.STUCK`) or unschedulable
    (no node has what it requests: the scheduler's message says which resource)."""
    with api_errors(f"listing the pods of run {cfg.run}"):
        pods = c.core.list_namespaced_pod(cfg.k8s.namespace, label_selector=selector(run=cfg.run)).items
    out = []
    for p in sorted(pods, key=_created):
        s = stuck(p)
        if s is not None:
            out.append(s.line())
            continue
        conds = (p.status.conditions or []) if p.status else []
        for cond in conds:
            if cond.type == "PodScheduled" and cond.status == "False" and cond.reason == "Unschedulable":
                out.append(f"pod {p.metadata.name} ({owner(p)}) is not scheduled: {cond.message}")
    return out


def workflows(cfg: RunConfig, c: Clients) -> list[dict]:
    """The run's Argo Workflows (name, phase, progress); empty when Argo is not installed."""
    from kubernetes.client.exceptions import ApiException

    with api_errors(f"listing the Workflows of run {cfg.run}"):
        try:
            found = c.custom.list_namespaced_custom_object(
                ARGO_GROUP, ARGO_VERSION, cfg.k8s.namespace, "workflows", label_selector=selector(run=cfg.run)
            )
        except ApiException as e:
            if e.status == 404:  # no Argo CRDs on this cluster
                return []
            raise
    out = []
    for w in found.get("items", []):
        st = w.get("status") or {}
        out.append(
            {
                "name": w["metadata"]["name"],
                "phase": st.get("phase", "Pending"),
                "progress": st.get("progress", ""),
                "message": st.get("message", ""),
            }
        )
    return out


def logs(
    cfg: RunConfig,
    c: Clients,
    stage: str,
    dataset: str | None = None,
    method: str | None = None,
    tail: int | None = None,
) -> list[tuple[str, str]]:
    """(pod name, log text) of every pod of the stage (one per relabel shard / training node / retry)."""
    sel = selector(run=cfg.run, stage=stage, dataset=dataset, method=method)
    ns = cfg.k8s.namespace
    with api_errors(f"listing pods ({sel})"):
        pods = c.core.list_namespaced_pod(ns, label_selector=sel).items
    if not pods:
        raise ClusterError(
            f"no pod in namespace {ns} matches {sel} (not started yet, or its Job finished more than "
            f"k8s.ttl_seconds_after_finished={cfg.k8s.ttl_seconds_after_finished}s ago)"
        )
    out = []
    for p in sorted(pods, key=_created):
        names = [x.name for x in (p.spec.containers if p.spec else [])]
        container = CONTAINER if CONTAINER in names else "main"  # Argo's main container is "main"
        with api_errors(f"reading the log of pod {p.metadata.name}"):
            text = c.core.read_namespaced_pod_log(p.metadata.name, ns, container=container, tail_lines=tail)
        out.append((p.metadata.name, text))
    return out
