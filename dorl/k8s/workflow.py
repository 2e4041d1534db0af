"""The run as an Argo WorkflowTemplate: one DAG fanned out over datasets, then over methods.

main:     dataset (withItems: datasets) -> report
dataset:  data -> train-tf -> relabel (withSequence: shards) [-> relabel-assemble] -> method (withItems: methods)
          train-tf -> eval-tf
method:   train -> evaluate

Each container template takes the S3 URIs of its inputs and output as parameters. Stages are
idempotent (a complete output is skipped, an unfinished one resumes), so a retried step picks up
where the killed one stopped; a user error (exit 2) is not retried.
"""

from __future__ import annotations

from dorl import layout
from dorl.config import RunConfig
from dorl.errors import ConfigError
from dorl.k8s import pod
from dorl.k8s.plan import (
    Step,
    check,
    data_args,
    evaluate_args,
    plan,
    relabel_args,
    train_args,
)

API_VERSION = "argoproj.io/v1alpha1"
# Retry anything but a user error: a pod that errored (deleted, evicted, node lost) or failed with a code != 2.
RETRY_EXPRESSION = f'lastRetry.status == "Error" || asInt(lastRetry.exitCode) != {pod.USER_ERROR_EXIT}'


def _p(name: str) -> str:
    return "{{inputs.parameters." + name + "}}"


def _inputs(*names: str) -> dict:
    return {"parameters": [{"name": n} for n in names]}


def _args(**values: str) -> dict:
    return {"parameters": [{"name": k, "value": v} for k, v in values.items()]}


def template_name(cfg: RunConfig) -> str:
    return f"dorl-{cfg.run}"


def _container_template(
    cfg: RunConfig,
    name: str,
    stage: str,
    pool: str,
    args: list[str],
    params: list[str],
    *,
    command: list[str] | None = None,
    method: str | None = None,
) -> dict:
    c = pod.container(cfg, pool, args, command)
    del c["name"]  # Argo names the main container "main"
    labels = pod.labels(cfg, stage, _p("dataset") if "dataset" in params else None, method, pool)
    t: dict = {"name": name, "inputs": _inputs(*params)} if params else {"name": name}
    t["metadata"] = {"labels": labels}
    sched = pod.scheduling(cfg, pool)
    for key in ("nodeSelector", "tolerations", "priorityClassName"):
        if key in sched:
            t[key] = sched[key]
    t["activeDeadlineSeconds"] = cfg.k8s.active_deadline_seconds
    t["retryStrategy"] = {
        "limit": cfg.k8s.retry_limit,
        "retryPolicy": "Always",
        "expression": RETRY_EXPRESSION,
        "backoff": {"duration": "1m", "factor": 2, "maxDuration": "1h"},
    }
    t["container"] = c
    return t


def _launcher(cfg: RunConfig) -> list[str] | None:
    return pod.launcher(cfg, Step(name="", stage="train", args=[], pool="train"))


def templates(cfg: RunConfig) -> list[dict]:
    k = cfg.k8s
    ds = _p("dataset")
    shards = k.relabel_shards
    out = [
        _main(cfg),
        _dataset_dag(cfg),
    ]
    if cfg.pipeline.methods:
        out.append(_method_dag(cfg))
    out += [
        _container_template(cfg, "data", "data", "cpu", data_args(ds, _p("out")), ["dataset", "out"]),
        _container_template(
            cfg,
            "train-tf",
            "train",
            "train",
            train_args("tf", _p("data"), _p("out")),
            ["dataset", "data", "out"],
            command=_launcher(cfg),
            method="tf",
        ),
    ]
    relabel = ["dataset", "data", "model", "out"]
    if shards == 1:
        args = relabel_args(_p("data"), _p("model"), _p("out"))
        out.append(_container_template(cfg, "relabel", "relabel", "gpu", args, relabel))
    else:
        args = relabel_args(_p("data"), _p("model"), _p("out"), shard=f"{_p('shard')}/{shards}")
        out.append(_container_template(cfg, "relabel", "relabel", "gpu", args, relabel + ["shard"]))
        args = relabel_args(_p("data"), _p("model"), _p("out"), assemble=shards)
        out.append(_container_template(cfg, "relabel-assemble", "relabel-assemble", "cpu", args, relabel))
    if cfg.pipeline.methods:
        args = train_args(_p("method"), _p("data"), _p("out"), base=_p("base"))
        t = _container_template(
            cfg, "train", "train", "train", args, ["dataset", "method", "data", "base", "out"], command=_launcher(cfg)
        )
        t["metadata"]["labels"]["dorl.dev/method"] = _p("method")
        out.append(t)
    args = evaluate_args(_p("method"), _p("model"), _p("data"), _p("out"))
    t = _container_template(cfg, "evaluate", "evaluate", "gpu", args, ["dataset", "method", "model", "data", "out"])
    t["metadata"]["labels"]["dorl.dev/method"] = _p("method")
    out.append(t)
    report = next(s for s in plan(cfg) if s.stage == "report")
    out.append(_container_template(cfg, "report", "report", "cpu", report.args, []))
    return out


def _task(name: str, template: str, depends: str | None = None, **params: str) -> dict:
    t: dict = {"name": name, "template": template}
    if depends:
        t["depends"] = depends
    if params:
        t["arguments"] = _args(**params)
    return t


def _main(cfg: RunConfig) -> dict:
    fan = _task("dataset", "dataset", dataset="{{item}}")
    fan["withItems"] = list(cfg.pipeline.datasets)
    return {"name": "main", "dag": {"tasks": [fan, _task("report", "report", depends="dataset")]}}


def _dataset_dag(cfg: RunConfig) -> dict:
    ds = _p("dataset")
    uri = {s: layout.stage_uri(cfg, ds, s) for s in ("data", "tf", "relabel", "eval/tf")}
    tasks = [
        _task("data", "data", dataset=ds, out=uri["data"]),
        _task("train-tf", "train-tf", "data", dataset=ds, data=uri["data"], out=uri["tf"]),
        _task(
            "eval-tf",
            "evaluate",
            "train-tf",
            dataset=ds,
            method="tf",
            model=uri["tf"],
            data=uri["data"],
            out=uri["eval/tf"],
        ),
    ]
    relabel = {"dataset": ds, "data": uri["data"], "model": uri["tf"], "out": uri["relabel"]}
    shards = cfg.k8s.relabel_shards
    if shards == 1:
        tasks.append(_task("relabel", "relabel", "train-tf", **relabel))
        relabelled = "relabel"
    else:
        fan = _task("relabel", "relabel", "train-tf", **relabel, shard="{{item}}")
        fan["withSequence"] = {"count": str(shards)}
        tasks.append(fan)
        tasks.append(_task("relabel-assemble", "relabel-assemble", "relabel", **relabel))
        relabelled = "relabel-assemble"
    if cfg.pipeline.methods:
        fan = _task("method", "method", relabelled, dataset=ds, method="{{item}}")
        fan["withItems"] = list(cfg.pipeline.methods)
        tasks.append(fan)
    return {"name": "dataset", "inputs": _inputs("dataset"), "dag": {"tasks": tasks}}


def _method_dag(cfg: RunConfig) -> dict:
    ds, m = _p("dataset"), _p("method")
    data = layout.stage_uri(cfg, ds, "data")
    model = layout.stage_uri(cfg, ds, m)
    tasks = [
        _task(
            "train",
            "train",
            dataset=ds,
            method=m,
            data=layout.stage_uri(cfg, ds, "relabel"),
            base=layout.stage_uri(cfg, ds, "tf"),
            out=model,
        ),
        _task(
            "evaluate",
            "evaluate",
            "train",
            dataset=ds,
            method=m,
            model=model,
            data=data,
            out=layout.stage_uri(cfg, ds, "eval/" + m),
        ),
    ]
    return {"name": "method", "inputs": _inputs("dataset", "method"), "dag": {"tasks": tasks}}


def workflow_template(cfg: RunConfig) -> dict | None:
    """The WorkflowTemplate, or None when the run needs multi-node training (Jobs only, see k8s/README.md)."""
    check(cfg)
    if cfg.k8s.nodes > 1:
        return None
    k = cfg.k8s
    spec: dict = {"entrypoint": "main"}
    sa = k.argo_service_account or k.service_account
    if sa:
        spec["serviceAccountName"] = sa
    spec["podMetadata"] = {"labels": {"dorl.dev/run": cfg.run, "app.kubernetes.io/instance": cfg.run}}
    spec["securityContext"] = pod.pod_security()
    if k.image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": s} for s in k.image_pull_secrets]
    spec["volumes"] = pod.volumes(cfg)
    spec["podGC"] = {"strategy": "OnWorkflowSuccess"}
    spec["ttlStrategy"] = {"secondsAfterCompletion": k.ttl_seconds_after_finished}
    spec["templates"] = templates(cfg)
    meta = {"name": template_name(cfg), "namespace": k.namespace, "labels": pod.labels(cfg, "workflow")}
    return {"apiVersion": API_VERSION, "kind": "WorkflowTemplate", "metadata": meta, "spec": spec}


def workflow(cfg: RunConfig) -> dict | None:
    """A Workflow that runs the template (what `dorl k8s submit --mode argo` creates)."""
    if cfg.k8s.nodes > 1:
        return None
    meta = {
        "generateName": f"{template_name(cfg)}-",
        "namespace": cfg.k8s.namespace,
        "labels": pod.labels(cfg, "workflow"),
    }
    spec = {"workflowTemplateRef": {"name": template_name(cfg)}}
    return {"apiVersion": API_VERSION, "kind": "Workflow", "metadata": meta, "spec": spec}


def require_argo(cfg: RunConfig) -> None:
    if cfg.k8s.nodes > 1:
        raise ConfigError(
            "config key 'k8s.nodes': multi-node training runs as Indexed Jobs; submit with --mode jobs "
            "(an Argo step is one pod)"
        )
