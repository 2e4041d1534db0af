"""`dorl k8s submit`: run the rendered manifests on the cluster.

--mode jobs: the ConfigMap, then each Job once every Job it needs has succeeded; stops at the first
             failed Job and says which, why, and how to see its logs. Submitting again is safe: a Job
             that already exists is watched rather than re-created, and every stage skips work whose
             output is already complete in S3.
--mode argo: the ConfigMap, the WorkflowTemplate (created or replaced) and a Workflow running it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from dorl import log
from dorl.config import RunConfig
from dorl.k8s.cluster import (
    ARGO_GROUP,
    ARGO_VERSION,
    Clients,
    ClusterError,
    api_errors,
    job_state,
    selector,
)
from dorl.k8s.render import Manifests

logger = log.get("dorl.k8s")


def _exists(e) -> bool:
    return getattr(e, "status", None) == 409


def apply_config_map(c: Clients, m: Manifests) -> None:
    """Create the ConfigMap, or replace it (same run, edited config)."""
    from kubernetes.client.exceptions import ApiException

    meta = m.config_map["metadata"]
    with api_errors(f"creating ConfigMap {meta['name']} in namespace {meta['namespace']}"):
        try:
            c.core.create_namespaced_config_map(meta["namespace"], m.config_map)
        except ApiException as e:
            if not _exists(e):
                raise
            c.core.replace_namespaced_config_map(meta["name"], meta["namespace"], m.config_map)


@dataclass
class Outcome:
    succeeded: list[str]
    seconds: float


def submit_jobs(cfg: RunConfig, m: Manifests, c: Clients, poll: float | None = None) -> Outcome:
    """Create the Jobs in dependency order, waiting for each one's inputs; raise ClusterError on a failure."""
    from kubernetes.client.exceptions import ApiException

    ns, poll = cfg.k8s.namespace, poll or cfg.k8s.poll_seconds
    start = time.monotonic()
    apply_config_map(c, m)
    for name, svc in m.services.items():
        with api_errors(f"creating Service {name}"):
            try:
                c.core.create_namespaced_service(ns, svc)
            except ApiException as e:
                if not _exists(e):
                    raise
    waiting = list(m.steps)
    running: dict[str, float] = {}
    done: set[str] = set()
    while True:
        for step in [s for s in waiting if all(d in done for d in s.after)]:
            with api_errors(f"creating Job {step.name} in namespace {ns}"):
                try:
                    c.batch.create_namespaced_job(ns, m.jobs[step.name])
                    logger.info("created Job %s", step.name)
                except ApiException as e:
                    if not _exists(e):
                        raise
                    logger.info("Job %s already exists: watching it", step.name)
            waiting.remove(step)
            running[step.name] = time.monotonic()
        if not running:
            break
        time.sleep(poll)
        with api_errors(f"listing the Jobs of run {cfg.run}"):
            found = c.batch.list_namespaced_job(ns, label_selector=selector(run=cfg.run)).items
        jobs = {j.metadata.name: j for j in found}
        for name in list(running):
            if name not in jobs:
                raise ClusterError(f"Job {name} disappeared from namespace {ns} (deleted?): submit again to resume")
            state, why = job_state(jobs[name])
            if state == "Succeeded":
                logger.info("Job %s succeeded (%s)", name, took(time.monotonic() - running.pop(name)))
                done.add(name)
            elif state == "Failed":
                step = next(s for s in m.steps if s.name == name)
                raise ClusterError(_failure(cfg, step, why, waiting + [s for s in m.steps if s.name in running]))
    return Outcome(sorted(done), time.monotonic() - start)


def _failure(cfg: RunConfig, step, why: str, not_run: list) -> str:
    logs = f"dorl k8s logs --config <run.yaml> --stage {step.stage}"
    if step.dataset:
        logs += f" --dataset {step.dataset}"
    if step.method:
        logs += f" --method {step.method}"
    user = "PodFailurePolicy" in why or "exit code 2" in why
    hint = "a user error (bad config or input): fix it, then" if user else "after fixing the cause,"
    names = sorted({s.name for s in not_run} - {step.name})
    return (
        f"Job {step.name} failed: {why or 'no reason given'}\n"
        f"  logs: {logs}\n"
        f"  {len(names)} other Job(s) not finished or not started; {hint} delete the failed Job "
        f"(kubectl -n {cfg.k8s.namespace} delete job {step.name}) and submit again: completed stages are skipped."
    )


def took(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def submit_argo(cfg: RunConfig, m: Manifests, c: Clients) -> str:
    """Create the ConfigMap, create or replace the WorkflowTemplate, create a Workflow: its name."""
    from kubernetes.client.exceptions import ApiException

    from dorl.k8s.workflow import require_argo

    require_argo(cfg)
    ns = cfg.k8s.namespace
    apply_config_map(c, m)
    wt = m.workflow_template
    name = wt["metadata"]["name"]
    with api_errors(f"creating WorkflowTemplate {name} (is Argo Workflows installed?)"):
        try:
            c.custom.create_namespaced_custom_object(ARGO_GROUP, ARGO_VERSION, ns, "workflowtemplates", wt)
        except ApiException as e:
            if not _exists(e):
                raise
            current = c.custom.get_namespaced_custom_object(ARGO_GROUP, ARGO_VERSION, ns, "workflowtemplates", name)
            body = {**wt, "metadata": {**wt["metadata"], "resourceVersion": current["metadata"]["resourceVersion"]}}
            c.custom.replace_namespaced_custom_object(ARGO_GROUP, ARGO_VERSION, ns, "workflowtemplates", name, body)
    with api_errors(f"creating a Workflow from {name}"):
        created = c.custom.create_namespaced_custom_object(ARGO_GROUP, ARGO_VERSION, ns, "workflows", m.workflow)
    return created["metadata"]["name"]
