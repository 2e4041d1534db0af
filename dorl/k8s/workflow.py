"""The run as an Argo WorkflowTemplate: one DAG task per step of the plan (`dorl.k8s.plan`, the stage graph's nodes
as the Jobs run them), so that Argo and the Jobs run the same commands, datasets, seeds, scorers and shards included.

main:  abcd-data ─► abcd-train-tf ─► abcd-relabel (withSequence: shards) ─► abcd-relabel-assemble ─► abcd-train-dt ─►
         abcd-eval-dt ─► report;  abcd-train-tf ─► abcd-eval-tf ─► report;  … one task per Job

A task is named after its Job (without `dorl-<run>-`) and `depends` on the tasks of the Jobs it waits for. Its
template is shared by the steps whose commands have one shape: data, train-tf, train, relabel, relabel-assemble,
evaluate, evaluate-scorer, report. A template's args are its steps' args with the values of the options in PARAMS
as `{{inputs.parameters.*}}`, and the task passes those values, so each task runs its Job's command word for word
(a relabel shard: `--shard {{item}}/N` over `withSequence`, where the Indexed Job has `$(JOB_COMPLETION_INDEX)/N`).

Every container template runs the Jobs' pod (`dorl.k8s.pod`) and retries by the exit-code contract
(RETRY_EXPRESSION); stages are idempotent (a complete output is skipped, an unfinished one resumes), so a retried
step picks up where the killed one stopped. Multi-node training (k8s.nodes > 1): the train templates are resource
templates that apply the step's JobSet (`dorl.k8s.jobset`, named as with `--mode jobs`) and wait for its terminal
state. JobSet restarts its own group; the step itself is retried (k8s.retry_limit) when its executor pod is lost
or the API call fails, and a retry applies the same manifest, which adopts the JobSet the first attempt made
(same name, same config hash) instead of failing with AlreadyExists; a JobSet that failed stays failed, so a retry
of a failed one fails again in seconds.

Bounded: every container step attempt by k8s.active_deadline_seconds, a JobSet step by its JobSet's own bound,
(max_restarts + 1) x active_deadline_seconds, and the Workflow by k8s.workflow_deadline_seconds; an exit handler
deletes the run's JobSets when the Workflow did not succeed (they would otherwise run on until the Workflow is
deleted).
"""

from __future__ import annotations

from dataclasses import replace

from dorl.config import RunConfig
from dorl.k8s import pod
from dorl.k8s.jobset import check_names, jobset
from dorl.k8s.plan import SHARD_INDEX, Step, job_name, plan
from dorl.k8s.rbac import workflow_service_account
from dorl.k8s.yamltext import dump

API_VERSION = "argoproj.io/v1alpha1"
# The exit-code contract (dorl/errors.py): never retry a user error (2); retry a transient fault (75) and a pod
# that errored (deleted, evicted, node lost) up to k8s.transient_retry_limit times; a crash (any other code)
# only k8s.retry_limit times. `retries` counts the retries so far.
RETRY_EXPRESSION = (
    f'asInt(lastRetry.exitCode) != {pod.USER_ERROR_EXIT} && (lastRetry.status == "Error" || '
    f"asInt(lastRetry.exitCode) == {pod.TRANSIENT_EXIT} || asInt(retries) < {{crash_limit}})"
)
# option of a stage command -> the template parameter that carries its value (every other word is the template's)
PARAMS = {
    "--dataset": "dataset",
    "--method": "method",
    "--seed": "seed",
    "--data": "data",
    "--base": "base",
    "--model": "model",
    "--candidates-from": "candidates",
    "--out": "out",
    "--shard": "shard",
}


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


def template_name(cfg: RunConfig) -> str:
    return f"dorl-{cfg.run}"


# ---------------------------------------------------------------- a step -> its template and its values


def _split(step: Step) -> tuple[Step, dict[str, str]]:
    """The step as its template runs it (the values of PARAMS' options, its name, dataset and method as
    placeholders) and {parameter: value}: the dataset first (a label, also where the command has no --dataset),
    then the options in command order."""
    values = {"dataset": step.dataset} if step.dataset else {}
    args = []
    for before, word in zip([None, *step.args], step.args):
        name = PARAMS.get(before)
        if name is not None:
            values[name] = word
            word = _p(name)
        args.append(word)
    if step.nodes > 1:  # the JobSet's name: its pods' hostnames and the rendezvous endpoint
        values = {"name": step.name, **values}
    shared = replace(
        step,
        name=_p("name"),
        args=args,
        after=[],
        dataset=_p("dataset") if step.dataset else None,
        method=_p("method") if "method" in values else None,
    )
    return shared, values


def _template_of(step: Step, values: dict) -> str:
    """The stage, told apart where one stage has two command shapes: the base model is trained on the data alone
    (no --base: train-tf), a scorer's evaluation reads another model's candidates (evaluate-scorer), your own scored
    rows are relabelled without beams (no --base: relabel-scored)."""
    if step.stage == "train" and "base" not in values:
        return f"train-{step.method}"
    if step.stage == "relabel" and "base" not in values:  # your own scored rows alone (no beams)
        return "relabel-scored"
    if step.stage == "evaluate" and "candidates" in values:
        return "evaluate-scorer"
    return step.stage


def _container_template(cfg: RunConfig, name: str, step: Step, params: list[str]) -> dict:
    c = pod.container(cfg, step.pool, step.args, pod.launcher(cfg, step))  # the shard is a parameter: not indexed
    del c["name"]  # Argo names the main container "main"
    t: dict = {"name": name, "inputs": {"parameters": [{"name": n} for n in params]}}
    t["metadata"] = pod.pod_metadata(cfg, {**pod.step_labels(cfg, step), **pod.queue_labels(cfg)})
    sched = pod.scheduling(cfg, step.pool)
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


def jobset_deadline(cfg: RunConfig) -> int:
    """The longest a JobSet can run: each attempt is bounded by its child Job's activeDeadlineSeconds and every
    restart is counted (dorl.k8s.jobset)."""
    return (cfg.k8s.max_restarts + 1) * cfg.k8s.active_deadline_seconds


def _jobset_template(cfg: RunConfig, name: str, step: Step, params: list[str]) -> dict:
    """Multi-node training: apply the step's JobSet and wait for its terminal state. `apply`, not `create`: a
    retry (the executor pod lost, the API unavailable) adopts the JobSet of the same name and config hash that the
    first attempt made. The JobSet is owned by, and deleted with, the Workflow."""
    k = cfg.k8s
    return {
        "name": name,
        "inputs": {"parameters": [{"name": n} for n in params]},
        "activeDeadlineSeconds": str(jobset_deadline(cfg)),
        "retryStrategy": {
            "limit": str(k.retry_limit),
            "retryPolicy": "Always",
            "backoff": {"duration": "1m", "factor": "2", "cap": "30m"},
        },
        "resource": {
            "action": "apply",
            "setOwnerReference": True,
            "successCondition": "status.terminalState == Completed",
            "failureCondition": "status.terminalState == Failed",
            "manifest": dump(jobset(cfg, step)),
        },
    }


def _cleanup_templates(cfg: RunConfig) -> list[dict]:
    """The exit handler of a run with JobSets: when the Workflow did not succeed (a failed step, its deadline),
    delete the run's JobSets, which would otherwise keep their GPUs until the Workflow itself is deleted."""
    delete = {
        "name": "delete-jobsets",
        "resource": {
            "action": "delete",  # Argo adds --ignore-not-found
            "flags": ["jobsets.jobset.x-k8s.io", "--selector", f"dorl.dev/run={cfg.run}"],
        },
    }
    cleanup = {
        "name": "cleanup",
        "steps": [
            [{"name": "delete-jobsets", "template": "delete-jobsets", "when": "{{workflow.status}} != Succeeded"}]
        ],
    }
    return [cleanup, delete]


# ---------------------------------------------------------------- the DAG


def _dag(cfg: RunConfig, steps: list[Step]) -> tuple[list[dict], list[dict]]:
    """(the tasks of the main DAG, one per step; the templates they run, in order of first use)."""
    prefix = job_name(cfg) + "-"
    task_name = {s.name: s.name.removeprefix(prefix) for s in steps}
    tasks: list[dict] = []
    templates: dict[str, dict] = {}
    made_of: dict[str, tuple] = {}  # template name -> what it was made of
    for step in steps:
        shared, values = _split(step)
        name = _template_of(step, values)
        if made_of.setdefault(name, (shared, list(values))) != (shared, list(values)):
            raise RuntimeError(f"two command shapes would share the Argo template {name!r} ({step.name})")
        if name not in templates:
            make = _jobset_template if step.nodes > 1 else _container_template
            templates[name] = make(cfg, name, shared, list(values))
        task: dict = {"name": task_name[step.name], "template": name}
        if step.after:
            task["depends"] = " && ".join(task_name[a] for a in step.after)
        if step.shards > 1:  # one pod per shard, as the Indexed Job's
            values["shard"] = values["shard"].replace(SHARD_INDEX, "{{item}}")
            task["withSequence"] = {"count": str(step.shards)}
        task["arguments"] = {"parameters": [{"name": k, "value": v} for k, v in values.items()]}
        tasks.append(task)
    return tasks, list(templates.values())


def workflow_template(cfg: RunConfig, steps: list[Step] | None = None) -> dict:
    """The WorkflowTemplate of the plan's steps (`steps`: plan(cfg), checked, when not given)."""
    if steps is None:
        steps = plan(cfg)
        check_names(cfg, steps)
    k = cfg.k8s
    tasks, templates = _dag(cfg, steps)
    spec: dict = {"entrypoint": "main"}
    spec["activeDeadlineSeconds"] = k.workflow_deadline_seconds
    spec["serviceAccountName"] = workflow_service_account(cfg)
    spec["podMetadata"] = {"labels": {"dorl.dev/run": cfg.run, "app.kubernetes.io/instance": cfg.run}}
    spec["securityContext"] = pod.pod_security()
    if k.image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": s} for s in k.image_pull_secrets]
    spec["volumes"] = pod.volumes(cfg, "train")  # the largest /dev/shm (a limit, not a reservation)
    spec["podGC"] = {"strategy": "OnWorkflowSuccess"}
    spec["ttlStrategy"] = {"secondsAfterCompletion": k.ttl_seconds_after_finished}
    spec["templates"] = [{"name": "main", "dag": {"tasks": tasks}}, *templates]
    if any(s.nodes > 1 for s in steps):
        spec["onExit"] = "cleanup"
        spec["templates"] += _cleanup_templates(cfg)
    meta = {"name": template_name(cfg), "namespace": k.namespace, "labels": pod.labels(cfg, "workflow")}
    return {"apiVersion": API_VERSION, "kind": "WorkflowTemplate", "metadata": meta, "spec": spec}


def workflow(cfg: RunConfig) -> dict:
    """A Workflow that runs the template (what `dorl k8s submit --mode argo` creates)."""
    meta = {
        "generateName": f"{template_name(cfg)}-",
        "namespace": cfg.k8s.namespace,
        "labels": pod.labels(cfg, "workflow"),
    }
    spec = {"workflowTemplateRef": {"name": template_name(cfg)}}
    return {"apiVersion": API_VERSION, "kind": "Workflow", "metadata": meta, "spec": spec}
