"""The run as an Argo WorkflowTemplate: one DAG fanned out over datasets, then over methods.

main:     dataset (withItems: datasets) -> report
dataset:  data -> train-tf -> relabel (withSequence: shards) [-> relabel-assemble] -> method (withItems: methods)
          train-tf -> eval-tf
method:   train -> evaluate

The tasks and their dependencies are the stage graph's (`dorl.stages.graph`), built with one
placeholder dataset and method.

Each container template takes the S3 URIs of its inputs and output as parameters. Stages are
idempotent (a complete output is skipped, an unfinished one resumes), so a retried step picks up
where the killed one stopped; a user error (exit 2) is not retried.
"""

from __future__ import annotations

from dorl import methods
from dorl.config import RunConfig
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
from dorl.stages import graph
from dorl.stages.graph import FLAGS, Node

API_VERSION = "argoproj.io/v1alpha1"
# The exit-code contract (dorl/errors.py): never retry a user error (2); retry a transient fault (75) and a pod
# that errored (deleted, evicted, node lost) up to k8s.transient_retry_limit times; a crash (any other code)
# only k8s.retry_limit times. `retries` counts the retries so far.
RETRY_EXPRESSION = (
    f'asInt(lastRetry.exitCode) != {pod.USER_ERROR_EXIT} && (lastRetry.status == "Error" || '
    f"asInt(lastRetry.exitCode) == {pod.TRANSIENT_EXIT} || asInt(retries) < {{crash_limit}})"
)


def retry_strategy(cfg: RunConfig) -> dict:
    """Backoff from the last failure (1m, 2m, 4m... capped at 30m); no maxDuration (it counts from the first
    attempt, so a step failing after hours would never be retried)."""
    return {
        "limit": str(max(cfg.k8s.transient_retry_limit, cfg.k8s.retry_limit)),
        "retryPolicy": "Always",
        "expression": RETRY_EXPRESSION.format(crash_limit=cfg.k8s.retry_limit),
        "backoff": {"duration": "1m", "factor": "2", "cap": "30m"},
    }


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
    t["metadata"] = pod.pod_metadata(cfg, {**labels, **pod.queue_labels(cfg)})
    sched = pod.scheduling(cfg, pool)
    for key in ("schedulerName", "nodeSelector", "tolerations", "priorityClassName"):
        if key in sched:
            t[key] = sched[key]
    init = pod.init_containers(cfg)
    if init:
        t["initContainers"] = init
    t["activeDeadlineSeconds"] = str(cfg.k8s.active_deadline_seconds)
    t["retryStrategy"] = retry_strategy(cfg)
    t["container"] = c
    return t


def _jobset_template(cfg: RunConfig, name: str, args: list[str], params: list[str], method: str) -> dict:
    """Multi-node training: the step creates the JobSet and waits for its terminal state (JobSet restarts
    its own group, so the step is not retried; the JobSet is owned by, and deleted with, the Workflow)."""
    from dorl.k8s.jobset import jobset
    from dorl.k8s.render import dump

    m = "{{=sprig.replace('_', '-', inputs.parameters.method)}}" if method == _p("method") else method
    js_name = f"dorl-{cfg.run}-{_p('dataset')}-train-{m}"
    step = Step(name=js_name, stage="train", args=args, pool="train", dataset=_p("dataset"), method=method)
    step.nodes = cfg.k8s.nodes
    manifest = jobset(cfg, step, args=args, name=js_name)
    return {
        "name": name,
        "inputs": _inputs(*params),
        "resource": {
            "action": "create",
            "setOwnerReference": True,
            "successCondition": "status.terminalState == Completed",
            "failureCondition": "status.terminalState == Failed",
            "manifest": dump(manifest),
        },
    }


def _launcher(cfg: RunConfig) -> list[str] | None:
    return pod.launcher(cfg, Step(name="", stage="train", args=[], pool="train"))


def _train_template(cfg: RunConfig, name: str, args: list[str], params: list[str], method: str) -> dict:
    if cfg.k8s.nodes > 1:
        return _jobset_template(cfg, name, args, params, method)
    return _container_template(cfg, name, "train", "train", args, params, command=_launcher(cfg), method=method)


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
        _train_template(cfg, "train-tf", train_args("tf", _p("data"), _p("out")), ["dataset", "data", "out"], "tf"),
    ]
    relabel = ["dataset", "data", "base", "out"]
    if shards == 1:
        args = relabel_args(_p("data"), _p("base"), _p("out"))
        out.append(_container_template(cfg, "relabel", "relabel", "gpu", args, relabel))
    else:
        args = relabel_args(_p("data"), _p("base"), _p("out"), shard=f"{_p('shard')}/{shards}")
        out.append(_container_template(cfg, "relabel", "relabel", "gpu", args, relabel + ["shard"]))
        args = relabel_args(_p("data"), _p("base"), _p("out"), assemble=shards)
        out.append(_container_template(cfg, "relabel-assemble", "relabel-assemble", "cpu", args, relabel))
    if cfg.pipeline.methods:
        args = train_args(_p("method"), _p("data"), _p("out"), base=_p("base"))
        out.append(_train_template(cfg, "train", args, ["dataset", "method", "data", "base", "out"], _p("method")))
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


# ---------------------------------------------------------------- the DAGs, from the stage graph
# A node of the graph (built with one placeholder dataset and method) -> (DAG, task, container template).


def _where(node: Node) -> tuple[str, str, str]:
    if node.stage == "report":
        return "main", "report", "report"
    if node.method not in (None, methods.BASE):
        return "method", node.stage, node.stage
    if node.stage == "train":
        return "dataset", "train-tf", "train-tf"
    if node.stage == "evaluate":
        return "dataset", "eval-tf", "evaluate"
    return "dataset", node.stage, node.stage


def _graph(cfg: RunConfig) -> list[Node]:
    return graph.nodes(cfg, datasets=[_p("dataset")], trained=[_p("method")] if cfg.pipeline.methods else [])


def _params(node: Node) -> dict[str, str]:
    """The task's arguments: the node's keyword arguments, named as the templates' parameters."""
    named = {FLAGS[k].lstrip("-"): v for k, v in node.kwargs().items() if k != "eval_uris"}
    return {"dataset": node.dataset, **named} if node.dataset else named


def _dags(cfg: RunConfig) -> dict[str, list[dict]]:
    nodes = _graph(cfg)
    where = {n.key: _where(n) for n in nodes}
    shards = cfg.k8s.relabel_shards
    dags: dict[str, list[dict]] = {"main": [], "dataset": [], "method": []}
    fan_after: list[str] = []  # what the per-method fan-out waits for
    for node in nodes:
        dag, task, template = where[node.key]
        same = [where[a][1] for a in node.after if where[a][0] == dag]
        fan_after += [where[a][1] for a in node.after if dag == "method" and where[a][0] == "dataset"]
        if dag == "main":
            dags["main"].append(_task("report", "report", depends="dataset"))
            continue
        params = _params(node)
        if node.stage == "train" and task == "train-tf":
            params.pop("method")
        if node.stage == "relabel" and shards > 1:
            fan = _task(task, template, " && ".join(same) or None, **params, shard="{{item}}")
            fan["withSequence"] = {"count": str(shards)}
            dags[dag] += [fan, _task("relabel-assemble", "relabel-assemble", task, **params)]
            where[node.key] = (dag, "relabel-assemble", "relabel-assemble")
            continue
        dags[dag].append(_task(task, template, " && ".join(same) or None, **params))
    if dags["method"]:
        fan = _task("method", "method", " && ".join(dict.fromkeys(fan_after)), dataset=_p("dataset"), method="{{item}}")
        fan["withItems"] = list(cfg.pipeline.methods)
        dags["dataset"].append(fan)
    return dags


def _main(cfg: RunConfig) -> dict:
    fan = _task("dataset", "dataset", dataset="{{item}}")
    fan["withItems"] = list(cfg.pipeline.datasets)
    return {"name": "main", "dag": {"tasks": [fan, *_dags(cfg)["main"]]}}


def _dataset_dag(cfg: RunConfig) -> dict:
    return {"name": "dataset", "inputs": _inputs("dataset"), "dag": {"tasks": _dags(cfg)["dataset"]}}


def _method_dag(cfg: RunConfig) -> dict:
    return {"name": "method", "inputs": _inputs("dataset", "method"), "dag": {"tasks": _dags(cfg)["method"]}}


def workflow_template(cfg: RunConfig) -> dict | None:
    """The WorkflowTemplate (multi-node training steps create a JobSet each)."""
    from dorl.k8s.rbac import workflow_service_account

    check(cfg)
    k = cfg.k8s
    spec: dict = {"entrypoint": "main"}
    spec["serviceAccountName"] = workflow_service_account(cfg)
    spec["podMetadata"] = {"labels": {"dorl.dev/run": cfg.run, "app.kubernetes.io/instance": cfg.run}}
    spec["securityContext"] = pod.pod_security()
    if k.image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": s} for s in k.image_pull_secrets]
    spec["volumes"] = pod.volumes(cfg, "train")  # the largest /dev/shm (a limit, not a reservation)
    spec["podGC"] = {"strategy": "OnWorkflowSuccess"}
    spec["ttlStrategy"] = {"secondsAfterCompletion": k.ttl_seconds_after_finished}
    spec["templates"] = templates(cfg)
    meta = {"name": template_name(cfg), "namespace": k.namespace, "labels": pod.labels(cfg, "workflow")}
    return {"apiVersion": API_VERSION, "kind": "WorkflowTemplate", "metadata": meta, "spec": spec}


def workflow(cfg: RunConfig) -> dict | None:
    """A Workflow that runs the template (what `dorl k8s submit --mode argo` creates)."""
    meta = {
        "generateName": f"{template_name(cfg)}-",
        "namespace": cfg.k8s.namespace,
        "labels": pod.labels(cfg, "workflow"),
    }
    spec = {"workflowTemplateRef": {"name": template_name(cfg)}}
    return {"apiVersion": API_VERSION, "kind": "Workflow", "metadata": meta, "spec": spec}


def require_argo(cfg: RunConfig) -> None:
    """Every run can go to Argo (kept for callers; multi-node steps are JobSet resource templates)."""
