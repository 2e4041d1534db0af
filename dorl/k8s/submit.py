"""`dorl k8s submit`: run the rendered manifests on the cluster.

--mode argo (recommended: the DAG runs server-side): the ConfigMap, the WorkflowTemplate (created or
             replaced) and a Workflow running it.
--mode jobs (the no-Argo fallback; this process holds the DAG and must stay up until the run ends): the
             ConfigMap, then each Job (JobSet for multi-node training) once every one it needs has
             succeeded; stops at the first failure and says which, why, and how to see its logs.
             Submitting again is safe: one that already exists is watched rather than re-created, and
             every stage skips work whose output is already complete in S3.

The ConfigMap is immutable and named by the hash of the run config; every Job and JobSet carries that hash
(annotation dorl.dev/config-hash). A resubmit after an edit of the config is refused while Jobs made from
the old config exist (the message names the keys that changed): a Complete Job from another config is not
the output of this one. Give the edited config a new `run`, or delete the run's Jobs first.

While it waits, --mode jobs looks at the run's pods too: one stuck in a state it cannot leave by itself
(a missing Secret: CreateContainerConfigError; a wrong image: ImagePullBackOff...) for k8s.stuck_seconds
stops it with one line naming the pod, the reason and the fix (exit 2), instead of reporting Running for days.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from dorl import log
from dorl.config import RunConfig
from dorl.errors import ConfigError, UserError
from dorl.k8s.cluster import (
    ARGO_GROUP,
    ARGO_VERSION,
    Clients,
    ClusterError,
    api_errors,
    job_state,
    selector,
    stuck,
)
from dorl.k8s.configmap import CONFIG_HASH as HASH
from dorl.k8s.jobset import GROUP as JS_GROUP
from dorl.k8s.jobset import PLURAL as JS_PLURAL
from dorl.k8s.jobset import VERSION as JS_VERSION
from dorl.k8s.render import Manifests

logger = log.get("dorl.k8s")


def _exists(e) -> bool:
    return getattr(e, "status", None) == 409


def apply_config_map(c: Clients, m: Manifests) -> None:
    """Create the ConfigMap; one of that name already holds the same config (the name is its hash)."""
    from kubernetes.client.exceptions import ApiException

    meta = m.config_map["metadata"]
    with api_errors(f"creating ConfigMap {meta['name']} in namespace {meta['namespace']}"):
        try:
            c.core.create_namespaced_config_map(meta["namespace"], m.config_map)
        except ApiException as e:
            if not _exists(e):
                raise


def _hash(obj) -> str | None:
    meta = obj.get("metadata", {}) if isinstance(obj, dict) else obj.metadata
    annotations = (meta.get("annotations") if isinstance(meta, dict) else meta.annotations) or {}
    return annotations.get(HASH)


def _changed_keys(c: Clients, cfg: RunConfig, old_hash: str, new_yaml: str) -> list[str]:
    """The config keys that differ between the run config of hash `old_hash` (its ConfigMap) and this one."""
    from kubernetes.client.exceptions import ApiException

    from dorl.config.loader import load_yaml

    try:  # the cluster's copy is read within the bounds of any YAML dorl reads (size, nesting, aliases)
        old = c.core.read_namespaced_config_map(f"dorl-{cfg.run}-config-{old_hash}", cfg.k8s.namespace)
        before = load_yaml(old.data["run.yaml"]) or {}
        after = load_yaml(new_yaml) or {}
    except (ApiException, KeyError, TypeError, ValueError):
        return []
    if not isinstance(before, dict) or not isinstance(after, dict):
        return []

    def flat(d, prefix=""):
        out = {}
        for k, v in d.items():
            if isinstance(v, dict):
                out.update(flat(v, f"{prefix}{k}."))
            else:
                out[f"{prefix}{k}"] = v
        return out

    a, b = flat(before), flat(after)
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def refuse_other_configs(cfg: RunConfig, m: Manifests, c: Clients) -> None:
    """ConfigError (nothing created) if Jobs or JobSets of this run exist that were made from another config."""
    ns, want = cfg.k8s.namespace, m.config_map["metadata"]["annotations"][HASH]
    with api_errors(f"listing the Jobs of run {cfg.run}"):
        found = [
            (j.metadata.name, _hash(j))
            for j in c.batch.list_namespaced_job(ns, label_selector=selector(run=cfg.run)).items
        ]
    if m.jobsets:
        found += [(j["metadata"]["name"], _hash(j)) for j in _list_jobsets(cfg, c)]
    ours = set(m.objects())
    other = sorted((name, h) for name, h in found if name in ours and h != want)
    if not other:
        return
    name, old = other[0]
    keys = _changed_keys(c, cfg, old, m.config_map["data"]["run.yaml"]) if old else []
    what = f"changed keys: {', '.join(keys[:10])}" if keys else f"config hash {old or 'none'} vs {want}"
    raise ConfigError(
        f"run {cfg.run!r}: {len(other)} Job(s) in namespace {ns} (e.g. {name}) were made from another config "
        f"({what}); give the edited config a new 'run', or delete the old run's Jobs first "
        f"(kubectl -n {ns} delete jobs,jobsets -l dorl.dev/run={cfg.run})"
    )


def _list_jobsets(cfg: RunConfig, c: Clients) -> list[dict]:
    from kubernetes.client.exceptions import ApiException

    with api_errors(f"listing the JobSets of run {cfg.run} (is JobSet installed?)"):
        try:
            got = c.custom.list_namespaced_custom_object(
                JS_GROUP, JS_VERSION, cfg.k8s.namespace, JS_PLURAL, label_selector=selector(run=cfg.run)
            )
        except ApiException as e:
            if e.status == 404:
                return []
            raise
    return got.get("items", [])


def jobset_state(js: dict) -> tuple[str, str]:
    """(Succeeded | Failed | Running, why) of a JobSet."""
    status = js.get("status") or {}
    conds = {c["type"]: c for c in status.get("conditions", []) if c.get("status") == "True"}
    if status.get("terminalState") == "Completed" or "Completed" in conds:
        return "Succeeded", ""
    if status.get("terminalState") == "Failed" or "Failed" in conds:
        c = conds.get("Failed", {})
        return "Failed", ": ".join(x for x in (c.get("reason"), c.get("message")) if x)
    return "Running", ""


@dataclass
class Outcome:
    succeeded: list[str]
    seconds: float


def submit_jobs(cfg: RunConfig, m: Manifests, c: Clients, poll: float | None = None) -> Outcome:
    """Create the Jobs in dependency order, waiting for each one's inputs; raise ClusterError on a failure."""
    from kubernetes.client.exceptions import ApiException

    ns, poll = cfg.k8s.namespace, poll or cfg.k8s.poll_seconds
    start = time.monotonic()
    refuse_other_configs(cfg, m, c)
    apply_config_map(c, m)
    waiting = list(m.steps)
    running: dict[str, float] = {}
    done: set[str] = set()
    seen_stuck: dict[tuple[str, str], float] = {}  # (pod, reason) -> when first seen
    while True:
        for step in [s for s in waiting if all(d in done for d in s.after)]:
            kind = "JobSet" if step.name in m.jobsets else "Job"
            with api_errors(f"creating {kind} {step.name} in namespace {ns}"):
                try:
                    if kind == "JobSet":
                        c.custom.create_namespaced_custom_object(
                            JS_GROUP, JS_VERSION, ns, JS_PLURAL, m.jobsets[step.name]
                        )
                    else:
                        c.batch.create_namespaced_job(ns, m.jobs[step.name])
                    logger.info("created %s %s", kind, step.name)
                except ApiException as e:
                    if not _exists(e):
                        raise
                    logger.info("%s %s already exists: watching it", kind, step.name)
            waiting.remove(step)
            running[step.name] = time.monotonic()
        if not running:
            break
        time.sleep(poll)
        with api_errors(f"listing the Jobs of run {cfg.run}"):
            found = c.batch.list_namespaced_job(ns, label_selector=selector(run=cfg.run)).items
        states = {j.metadata.name: job_state(j) for j in found if j.metadata.name in m.jobs}
        if m.jobsets:
            states.update({j["metadata"]["name"]: jobset_state(j) for j in _list_jobsets(cfg, c)})
        for name in list(running):
            if name not in states:
                raise ClusterError(f"{name} disappeared from namespace {ns} (deleted?): submit again to resume")
            state, why = states[name]
            if state == "Succeeded":
                logger.info("%s succeeded (%s)", name, took(time.monotonic() - running.pop(name)))
                done.add(name)
            elif state == "Failed":
                step = next(s for s in m.steps if s.name == name)
                raise ClusterError(_failure(cfg, step, why, waiting + [s for s in m.steps if s.name in running]))
        if running:
            check_stuck(cfg, c, set(running), seen_stuck)
    return Outcome(sorted(done), time.monotonic() - start)


def check_stuck(cfg: RunConfig, c: Clients, steps: set[str], seen: dict[tuple[str, str], float]) -> None:
    """UserError (exit 2) naming a pod of these steps that has waited k8s.stuck_seconds in a state it cannot
    leave by itself (`dorl.k8s.cluster.STUCK`); `seen` remembers when each (pod, reason) was first seen."""
    ns, now = cfg.k8s.namespace, time.monotonic()
    with api_errors(f"listing the pods of run {cfg.run}"):
        pods = c.core.list_namespaced_pod(ns, label_selector=selector(run=cfg.run)).items
    for p in pods:
        s = stuck(p)
        if s is None or s.owner not in steps:
            continue
        first = seen.setdefault((s.pod, s.reason), now)
        if now - first >= cfg.k8s.stuck_seconds:
            raise UserError(
                f"{s.line()}. The {s.owner} is left in place and starts once the cause is fixed: "
                f"dorl k8s submit again to keep watching (or kubectl -n {ns} describe pod {s.pod})"
            )


def _failure(cfg: RunConfig, step, why: str, not_run: list) -> str:
    logs = f"dorl k8s logs --config <run.yaml> --stage {step.stage}"
    if step.dataset:
        logs += f" --dataset {step.dataset}"
    if step.method:
        logs += f" --method {step.method}"
    user = "exit code 2 matching" in why or ("PodFailurePolicy" in why and "exit code" not in why)
    hint = "a user error (bad config or input): fix it, then" if user else "after fixing the cause,"
    names = sorted({s.name for s in not_run} - {step.name})
    return (
        f"Job {step.name} failed: {why or 'no reason given'}\n"
        f"  logs: {logs}\n"
        f"  {len(names)} other Job(s) not finished or not started; {hint} delete the failed Job "
        f"(kubectl -n {cfg.k8s.namespace} delete {'jobset' if step.nodes > 1 else 'job'} {step.name}) and submit "
        "again: completed stages are skipped."
    )


def took(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def submit_argo(cfg: RunConfig, m: Manifests, c: Clients) -> str:
    """Create the ConfigMap, create or replace the WorkflowTemplate, create a Workflow: its name."""
    from kubernetes.client.exceptions import ApiException

    ns = cfg.k8s.namespace
    refuse_other_configs(cfg, m, c)
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
    # Named here rather than by the server's generateName: a create retried after a 5xx that had in fact
    # succeeded gets 409 for this name instead of starting a second Workflow of the run.
    wf = {**m.workflow, "metadata": {**m.workflow["metadata"]}}
    wf["metadata"]["name"] = wf["metadata"].pop("generateName") + secrets.token_hex(3)
    with api_errors(f"creating Workflow {wf['metadata']['name']}"):
        try:
            c.custom.create_namespaced_custom_object(ARGO_GROUP, ARGO_VERSION, ns, "workflows", wf)
        except ApiException as e:
            if not _exists(e):
                raise
    return wf["metadata"]["name"]
