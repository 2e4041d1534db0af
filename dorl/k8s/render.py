"""`dorl k8s render`: the Kubernetes objects of one run, as plain dicts and as YAML files.

DIR/
  kustomization.yaml          the folder is a kustomize base (k8s/base is one, rendered from k8s/examples/run.yaml)
  configmap.yaml              the run config, mounted in every pod at /etc/dorl/run.yaml
  jobs/NN-<job>.yaml          one Job per step, numbered in dependency order (+ its headless Service if multi-node)
  argo/workflowtemplate.yaml  the same pipeline as an Argo DAG, fanned out over datasets
  argo/workflow.yaml          a Workflow that runs the template
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from dorl.config import RunConfig, to_dict
from dorl.config.schema import RunConfig as _Defaults
from dorl.k8s import pod
from dorl.k8s.plan import Step, plan


@dataclass
class Manifests:
    config_map: dict
    steps: list[Step]
    jobs: dict[str, dict]  # step name -> Job
    services: dict[str, dict] = field(default_factory=dict)  # step name -> headless Service (multi-node)
    workflow_template: dict | None = None
    workflow: dict | None = None


def render(cfg: RunConfig) -> Manifests:
    """Every object of the run (checks the config first: ConfigError on anything a cluster would refuse)."""
    from dorl.k8s.workflow import workflow, workflow_template

    steps = plan(cfg)
    out = Manifests(config_map=config_map(cfg), steps=steps, jobs={})
    for step in steps:
        if step.nodes > 1:
            out.services[step.name] = service(cfg, step)
        out.jobs[step.name] = job(cfg, step)
    out.workflow_template = workflow_template(cfg)
    out.workflow = workflow(cfg)
    return out


def _diff(values: dict, defaults: dict) -> dict:
    out = {}
    for key, value in values.items():
        base = defaults.get(key)
        if isinstance(value, dict) and isinstance(base, dict):
            sub = _diff(value, base)
            if sub:
                out[key] = sub
        elif value != base:
            out[key] = value
    return out


def run_yaml(cfg: RunConfig) -> str:
    """The run config as its differences from the defaults: exact, and readable by any dorl image that
    knows those keys (a full dump would break on an image one field older or newer)."""
    diff = _diff(to_dict(cfg), to_dict(_Defaults()))
    return "# dorl run config (differences from the defaults), rendered by `dorl k8s render`\n" + yaml.safe_dump(
        diff, sort_keys=True
    )


def config_map(cfg: RunConfig) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(cfg, pod.config_map_name(cfg), pod.labels(cfg, "config")),
        "data": {"run.yaml": run_yaml(cfg)},
    }


def _meta(cfg: RunConfig, name: str, labels: dict) -> dict:
    return {"name": name, "namespace": cfg.k8s.namespace, "labels": labels}


def service(cfg: RunConfig, step: Step) -> dict:
    """Headless Service giving pod 0 of a multi-node Job a stable DNS name: <job>-0.<job>."""
    selector = {"batch.kubernetes.io/job-name": step.name}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(cfg, step.name, pod.step_labels(cfg, step)),
        "spec": {
            "clusterIP": "None",
            "selector": selector,
            "publishNotReadyAddresses": True,  # DNS before readiness: the rendezvous happens before any probe
            "ports": [{"name": "rendezvous", "port": cfg.k8s.master_port, "targetPort": cfg.k8s.master_port}],
        },
    }


def job(cfg: RunConfig, step: Step) -> dict:
    k = cfg.k8s
    indexed = step.shards > 1 or step.nodes > 1
    master = f"{step.name}-0.{step.name}" if step.nodes > 1 else None
    command = pod.launcher(cfg, step, master)
    container = pod.container(cfg, step.pool, step.args, command, indexed=indexed)
    if step.nodes > 1:
        container["ports"] = [{"name": "rendezvous", "containerPort": k.master_port, "protocol": "TCP"}]
    spec: dict = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod.pod_security(),
    }
    if k.service_account:
        spec["serviceAccountName"] = k.service_account
    if step.nodes > 1:
        spec["subdomain"] = step.name
    spec.update(pod.scheduling(cfg, step.pool))
    spec["containers"] = [container]
    spec["volumes"] = pod.volumes(cfg)
    labels = pod.step_labels(cfg, step)
    job_spec: dict = {
        "backoffLimit": k.backoff_limit,
        "activeDeadlineSeconds": k.active_deadline_seconds,
        "ttlSecondsAfterFinished": k.ttl_seconds_after_finished,
        "podFailurePolicy": pod.pod_failure_policy(),
    }
    if indexed:
        width = max(step.shards, step.nodes)
        job_spec.update({"completionMode": "Indexed", "completions": width, "parallelism": width})
    job_spec["template"] = {"metadata": {"labels": labels}, "spec": spec}
    meta = _meta(cfg, step.name, labels)
    meta["annotations"] = {"dorl.dev/after": ",".join(step.after)} if step.after else {}
    if not meta["annotations"]:
        del meta["annotations"]
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": job_spec}


# ---------------------------------------------------------------- files


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the run config, shell scripts) as readable `|` blocks; no &anchors."""

    def ignore_aliases(self, data):
        return True


def _str(dumper: yaml.SafeDumper, value: str):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump(*docs: dict) -> str:
    return "---\n".join(yaml.dump(d, Dumper=_Dumper, sort_keys=False, width=120) for d in docs)


def write(m: Manifests, out: str | Path) -> list[Path]:
    """Write the manifests under `out` (YAML files already in its jobs/ and argo/ are removed); returns the files."""
    out = Path(out)
    for stale in [*out.glob("jobs/*.yaml"), *out.glob("argo/*.yaml")]:  # a previous render's, maybe more Jobs
        stale.unlink()
    (out / "jobs").mkdir(parents=True, exist_ok=True)
    (out / "argo").mkdir(parents=True, exist_ok=True)
    files = {out / "configmap.yaml": dump(m.config_map)}
    width = len(str(len(m.steps)))
    for i, step in enumerate(m.steps, 1):
        docs = ([m.services[step.name]] if step.name in m.services else []) + [m.jobs[step.name]]
        files[out / "jobs" / f"{i:0{width}d}-{step.name}.yaml"] = dump(*docs)
    if m.workflow_template is not None:  # None: multi-node training, which runs as Jobs only
        files[out / "argo" / "workflowtemplate.yaml"] = dump(m.workflow_template)
        files[out / "argo" / "workflow.yaml"] = dump(m.workflow)
    resources = ["configmap.yaml"] + sorted(str(p.relative_to(out)) for p in files if p.parent.name == "jobs")
    kustomization = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "resources": resources}
    header = "# Rendered by `dorl k8s render`: the run's ConfigMap and Jobs (numbered in dependency order).\n"
    files[out / "kustomization.yaml"] = header + yaml.safe_dump(kustomization, sort_keys=False)
    for path, text in files.items():
        path.write_text(text)
    return sorted(files)
