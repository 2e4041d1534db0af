"""`dorl k8s render`: the Kubernetes objects of one run, as plain dicts and as YAML files.

DIR/
  kustomization.yaml          the folder is a kustomize base (k8s/base is one, rendered from k8s/examples/run.yaml)
  configmap.yaml              the run config (immutable, named by its hash), mounted at /etc/dorl/run.yaml
  rbac.yaml                   ServiceAccounts, Roles and RoleBindings of the pods and of `dorl k8s submit`
  jobs/NN-<job>.yaml          one Job per step (a JobSet for multi-node training), numbered in dependency order
  argo/workflowtemplate.yaml  the same steps as an Argo DAG (one task per Job: dorl.k8s.workflow)
  argo/workflow.yaml          a Workflow that runs the template
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from dorl.config import RunConfig
from dorl.k8s import pod, rbac
from dorl.k8s.configmap import CONFIG_HASH, config_hash, config_map_name, run_yaml
from dorl.k8s.jobset import check_names, jobset
from dorl.k8s.plan import Step, plan
from dorl.k8s.workflow import workflow, workflow_template
from dorl.k8s.yamltext import dump


@dataclass
class Manifests:
    config_map: dict
    steps: list[Step]
    jobs: dict[str, dict]  # step name -> Job (single-node steps)
    jobsets: dict[str, dict] = field(default_factory=dict)  # step name -> JobSet (multi-node training)
    rbac: list[dict] = field(default_factory=list)  # ServiceAccounts, Roles, RoleBindings (dorl.k8s.rbac)
    workflow_template: dict | None = None
    workflow: dict | None = None

    def objects(self) -> dict[str, dict]:
        """step name -> its Job or JobSet, in dependency order."""
        return {s.name: self.jobsets.get(s.name) or self.jobs[s.name] for s in self.steps}


def render(cfg: RunConfig) -> Manifests:
    """Every object of the run (checks the config first: ConfigError on anything a cluster would refuse)."""
    steps = plan(cfg)
    check_names(cfg, steps)
    out = Manifests(config_map=config_map(cfg), steps=steps, jobs={}, rbac=rbac.objects(cfg))
    for step in steps:
        if step.nodes > 1:
            out.jobsets[step.name] = jobset(cfg, step)
        else:
            out.jobs[step.name] = job(cfg, step)
    out.workflow_template = workflow_template(cfg, steps)
    out.workflow = workflow(cfg)
    return out


def config_map(cfg: RunConfig) -> dict:
    """Immutable and named after its content: an edited config is a new ConfigMap, never a changed one."""
    meta = _meta(cfg, config_map_name(cfg), pod.labels(cfg, "config"))
    meta["annotations"] = {CONFIG_HASH: config_hash(cfg)}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta,
        "immutable": True,
        "data": {"run.yaml": run_yaml(cfg)},
    }


def _meta(cfg: RunConfig, name: str, labels: dict) -> dict:
    return {"name": name, "namespace": cfg.k8s.namespace, "labels": labels}


def job(cfg: RunConfig, step: Step) -> dict:
    """A step's Job: one pod, or an Indexed Job of relabel shards (each shard retried on its own)."""
    k = cfg.k8s
    spec = pod.pod_spec(cfg, step, step.args, pod.launcher(cfg, step))
    labels = pod.step_labels(cfg, step)
    job_spec: dict = {
        "backoffLimit": k.backoff_limit,
        "activeDeadlineSeconds": k.active_deadline_seconds,
        "ttlSecondsAfterFinished": k.ttl_seconds_after_finished,
        "podFailurePolicy": pod.pod_failure_policy(),
    }
    if step.shards > 1:  # each shard gets its own retries: one bad shard does not use up the others'
        job_spec.update({"completionMode": "Indexed", "completions": step.shards, "parallelism": step.shards})
        job_spec["backoffLimitPerIndex"] = job_spec.pop("backoffLimit")
        job_spec["maxFailedIndexes"] = 0
    job_spec["template"] = {"metadata": pod.pod_metadata(cfg, labels), "spec": spec}
    meta = _meta(cfg, step.name, {**labels, **pod.queue_labels(cfg)})
    annotations = {CONFIG_HASH: config_hash(cfg)}
    if step.after:
        annotations["dorl.dev/after"] = ",".join(step.after)
    meta["annotations"] = annotations
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": job_spec}


# ---------------------------------------------------------------- files


def write(m: Manifests, out: str | Path) -> list[Path]:
    """Write the manifests under `out` (YAML files already in its jobs/ and argo/ are removed); returns the files."""
    out = Path(out)
    for stale in [*out.glob("jobs/*.yaml"), *out.glob("argo/*.yaml")]:  # a previous render's, maybe more Jobs
        stale.unlink()
    (out / "jobs").mkdir(parents=True, exist_ok=True)
    (out / "argo").mkdir(parents=True, exist_ok=True)
    files = {out / "configmap.yaml": dump(m.config_map)}
    if m.rbac:
        files[out / "rbac.yaml"] = dump(*m.rbac)
    width = len(str(len(m.steps)))
    for i, (name, obj) in enumerate(m.objects().items(), 1):
        files[out / "jobs" / f"{i:0{width}d}-{name}.yaml"] = dump(obj)
    if m.workflow_template is not None:
        files[out / "argo" / "workflowtemplate.yaml"] = dump(m.workflow_template)
        files[out / "argo" / "workflow.yaml"] = dump(m.workflow)
    resources = ["configmap.yaml"] + (["rbac.yaml"] if m.rbac else [])
    resources += sorted(str(p.relative_to(out)) for p in files if p.parent.name == "jobs")
    kustomization = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "resources": resources}
    header = "# Rendered by `dorl k8s render`: the run's ConfigMap, RBAC and Jobs/JobSets (in dependency order).\n"
    files[out / "kustomization.yaml"] = header + yaml.safe_dump(kustomization, sort_keys=False)
    for path, text in files.items():
        path.write_text(text)
    return sorted(files)
