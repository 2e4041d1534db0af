"""The Argo WorkflowTemplate: valid against Argo's official JSON schema (api/jsonschema/schema.json, unknown keys
rejected), one DAG task per Job, retries by the exit-code contract, URIs passed as parameters, multi-node
training as a JobSet resource template. That Argo and the Jobs run the same commands: test_argo_matches_jobs.py."""

from __future__ import annotations

import copy

import pytest
import yaml

from dorl import config
from dorl.k8s.plan import plan
from dorl.k8s.render import render
from dorl.k8s.workflow import workflow, workflow_template
from tests.k8s.conftest import EXAMPLE
from tests.k8s.schemas import errors


def load(*sets: str):
    return config.load(file=EXAMPLE, sets=sets)


VARIANTS = {
    "example": [],
    "one shard, simulate": ["k8s.relabel_shards=1", "data.simulate=40"],
    "no methods, cpu": ["pipeline.methods=[]", "k8s.device=cpu", "k8s.gpus=3"],
    "three datasets, launcher": ["pipeline.datasets=[abcd, multiwoz22, taskmaster3]", "k8s.gpus=4"],
    "everything set": [
        "k8s.s3_secret=null",
        "k8s.argo_service_account=argo-workflow",
        "k8s.image_pull_secrets=[regcred]",
        "k8s.node_selector={pool: ml}",
        "k8s.gpu_node_selector={gpu: h100}",
        "k8s.priority_class=batch-low",
        "k8s.endpoint_url=http://minio.minio:9000",
        "k8s.launcher=deepspeed",
        "k8s.gpus=2",
        "k8s.queue=team-a",
        "k8s.scheduler_name=volcano",
        "k8s.annotations={team: nlp}",
        "k8s.tolerations=[{key: dedicated, operator: Equal, value: ml, effect: NoSchedule}]",
        "k8s.models_uri=s3://models/hub",
    ],
    "multi-node": ["k8s.nodes=2", "k8s.gpus=4", "k8s.queue=team-a"],
    "scorer, seeds, datasets, multi-node": [
        "pipeline.scorers=[ilql_scorer]",
        "eval.num_responses=2",
        "pipeline.seeds=[0, 1]",
        "pipeline.datasets=[abcd, taskmaster3]",
        "k8s.nodes=2",
    ],
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_workflow_template_and_workflow_validate_strictly(variant):
    cfg = load(*VARIANTS[variant])
    wt, wf = workflow_template(cfg), workflow(cfg)
    assert errors(wt) == []
    assert errors(wf) == []
    assert wt["kind"] == "WorkflowTemplate" and wf["spec"] == {"workflowTemplateRef": {"name": "dorl-example"}}


@pytest.mark.parametrize(
    "where",
    ["template key", "container key", "retry key", "dag task key", "spec key"],
)
def test_a_misspelled_key_is_rejected(where):
    wt = copy.deepcopy(workflow_template(load()))
    templates = {t["name"]: t for t in wt["spec"]["templates"]}
    if where == "template key":
        templates["train"]["retryStrategyy"] = templates["train"].pop("retryStrategy")
    elif where == "container key":
        templates["evaluate"]["container"]["volumeMount"] = []
    elif where == "retry key":
        templates["relabel"]["retryStrategy"]["expresion"] = templates["relabel"]["retryStrategy"].pop("expression")
    elif where == "dag task key":
        templates["main"]["dag"]["tasks"][1]["dependss"] = "abcd-data"
    else:
        wt["spec"]["entryPoint"] = "main"
    found = errors(wt)
    misspelled = {
        "template key": "retryStrategyy",
        "container key": "volumeMount",
        "retry key": "expresion",
        "dag task key": "dependss",
        "spec key": "entryPoint",
    }[where]
    assert any("Additional properties are not allowed" in e and repr(misspelled) in e for e in found), found
    assert errors(workflow_template(load())) == []  # the unmodified one passes: the schema is not just strict


def _tasks(wt: dict, template: str) -> dict:
    t = next(t for t in wt["spec"]["templates"] if t["name"] == template)
    return {task["name"]: task for task in t["dag"]["tasks"]}


def test_the_dag_has_one_task_per_job():
    cfg = load("pipeline.datasets=[abcd, taskmaster3]")
    wt = workflow_template(cfg)
    main = _tasks(wt, "main")
    steps = plan(cfg)
    assert list(main) == [s.name.removeprefix("dorl-example-") for s in steps]  # the Jobs' names and order
    deps = {name: t.get("depends") for name, t in main.items() if name.startswith("abcd-")}
    assert deps == {
        "abcd-data": None,
        "abcd-train-tf": "abcd-data",
        "abcd-relabel": "abcd-train-tf",
        "abcd-relabel-assemble": "abcd-relabel",
        "abcd-eval-tf": "abcd-train-tf",
        **{f"abcd-train-{m}": "abcd-relabel-assemble" for m in ("tf-all", "tf-top", "dt", "ilql")},
        **{f"abcd-eval-{m}": f"abcd-train-{m}" for m in ("tf-all", "tf-top", "dt", "ilql")},
    }
    assert main["report"]["depends"] == " && ".join(
        f"{ds}-eval-{m}" for ds in ("abcd", "taskmaster3") for m in ("tf", "tf-all", "tf-top", "dt", "ilql")
    )
    assert main["abcd-relabel"]["withSequence"] == {"count": "4"}
    assert [t["name"] for t in wt["spec"]["templates"]] == [
        "main", "data", "train-tf", "relabel", "relabel-assemble", "evaluate", "train", "report",
    ]  # fmt: skip
    one = _tasks(workflow_template(load("k8s.relabel_shards=1")), "main")
    assert "abcd-relabel-assemble" not in one and one["abcd-train-dt"]["depends"] == "abcd-relabel"
    assert "withSequence" not in one["abcd-relabel"]


def test_a_scorer_is_a_task_and_the_report_waits_for_it():
    """The audit's finding: the Jobs had ilql_scorer's evaluation, the Argo DAG did not, while its report read it."""
    wt = workflow_template(load("pipeline.scorers=[ilql_scorer]", "eval.num_responses=2"))
    assert errors(wt) == []
    main = _tasks(wt, "main")
    scorer = main["abcd-eval-ilql-scorer"]
    assert scorer["template"] == "evaluate-scorer"
    assert scorer["depends"] == "abcd-train-ilql && abcd-train-dt"
    assert "abcd-eval-ilql-scorer" in main["report"]["depends"].split(" && ")
    args = {p["name"]: p["value"] for p in scorer["arguments"]["parameters"]}
    assert args["candidates"] == "s3://dorl-example/runs/example/abcd/dt"


def test_artifacts_are_passed_as_s3_uri_parameters():
    wt = workflow_template(load())
    params = {p["name"]: p["value"] for p in _tasks(wt, "main")["abcd-train-tf-top"]["arguments"]["parameters"]}
    root = "s3://dorl-example/runs/example/abcd"
    assert params == {"dataset": "abcd", "method": "tf_top", "data": f"{root}/relabel", "base": f"{root}/tf",
                      "out": f"{root}/tf_top"}  # fmt: skip
    train = next(t for t in wt["spec"]["templates"] if t["name"] == "train")
    assert train["container"]["args"] == [
        "train", "--method", "{{inputs.parameters.method}}", "--data", "{{inputs.parameters.data}}",
        "--base", "{{inputs.parameters.base}}", "--out", "{{inputs.parameters.out}}", "--config", "/etc/dorl/run.yaml",
    ]  # fmt: skip
    assert train["metadata"]["labels"]["dorl.dev/method"] == "{{inputs.parameters.method}}"
    assert train["metadata"]["labels"]["dorl.dev/dataset"] == "{{inputs.parameters.dataset}}"
    shard = next(t for t in wt["spec"]["templates"] if t["name"] == "relabel")
    assert shard["container"]["args"][-4:-2] == ["--shard", "{{inputs.parameters.shard}}"]
    relabel = {p["name"]: p["value"] for p in _tasks(wt, "main")["abcd-relabel"]["arguments"]["parameters"]}
    assert relabel["shard"] == "{{item}}/4"


def test_every_step_retries_by_the_exit_code_contract():
    wt = workflow_template(load())
    containers = [t for t in wt["spec"]["templates"] if "container" in t]
    assert {t["name"] for t in containers} == {
        "data", "train-tf", "relabel", "relabel-assemble", "train", "evaluate", "report",
    }  # fmt: skip
    for t in containers:
        retry = t["retryStrategy"]
        assert retry["retryPolicy"] == "Always" and retry["limit"] == "12"
        assert retry["expression"] == (
            'asInt(lastRetry.exitCode) != 2 && (lastRetry.status == "Error" || '
            "asInt(lastRetry.exitCode) == 75 || asInt(retries) < 3)"
        )
        assert "maxDuration" not in retry["backoff"]  # it counts from the first attempt
        assert retry["backoff"] == {"duration": "1m", "factor": "2", "cap": "30m"}
        assert t["activeDeadlineSeconds"] == "172800"
        c = t["container"]
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert c["envFrom"] == [{"secretRef": {"name": "dorl-s3"}}]
    spec = wt["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["serviceAccountName"] == "dorl-example-workflow"  # rendered with the executor's Role (rbac.yaml)
    assert {v["name"] for v in spec["volumes"]} == {"config", "dshm", "scratch"}
    gpu = {t["name"]: t["container"]["resources"]["limits"].get("nvidia.com/gpu") for t in containers}
    assert gpu == {
        "data": None, "train-tf": "1", "relabel": "1", "relabel-assemble": None, "train": "1", "evaluate": "1",
        "report": None,
    }  # fmt: skip


def _expr_retry(expression: str, exit_code: int, status: str, retries: int) -> bool:
    """Evaluate the retry expression the way Argo's expr does for these operators (&&, ||, ==, !=, <)."""
    py = expression.replace("&&", " and ").replace("||", " or ")
    py = py.replace("asInt(lastRetry.exitCode)", str(exit_code)).replace("asInt(retries)", str(retries))
    py = py.replace("lastRetry.status", repr(status))
    return eval(py)  # noqa: S307 - our own constant expression, values substituted above


def test_the_retry_expression_means_the_contract():
    expr = workflow_template(load())["spec"]["templates"][-1]["retryStrategy"]["expression"]
    assert not _expr_retry(expr, 2, "Failed", 0)  # user error: never
    assert _expr_retry(expr, 75, "Failed", 10)  # transient: up to the limit (12)
    assert _expr_retry(expr, -1, "Error", 10)  # the pod was lost
    assert _expr_retry(expr, 1, "Failed", 2) and not _expr_retry(expr, 1, "Failed", 3)  # crash: 3 retries


def test_multi_node_training_is_a_jobset_resource_template():
    m = render(load("k8s.nodes=2", "k8s.gpus=4", "k8s.queue=team-a", "pipeline.seeds=[0, 1]"))
    wt = m.workflow_template
    templates = {t["name"]: t for t in wt["spec"]["templates"]}
    for name in ("train-tf", "train"):
        res = templates[name]["resource"]
        # retried when the step itself errs (its pod lost, the API down): `apply` adopts the JobSet the first
        # attempt made (same name and config hash) where `create` would fail with AlreadyExists
        assert templates[name]["retryStrategy"]["limit"] == "3"
        assert res["action"] == "apply" and res["setOwnerReference"] is True
        assert templates[name]["activeDeadlineSeconds"] == str(7 * 172800)  # the JobSet's own bound
        assert res["successCondition"] == "status.terminalState == Completed"
        assert res["failureCondition"] == "status.terminalState == Failed"
        js = yaml.safe_load(res["manifest"])
        assert js["kind"] == "JobSet" and js["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
        # the manifest validates once Argo has put in the parameters, and is the --mode jobs JobSet
        task = next(t for t in _tasks(wt, "main").values() if t["template"] == name)
        text = res["manifest"]
        for p in task["arguments"]["parameters"]:
            text = text.replace("{{inputs.parameters." + p["name"] + "}}", p["value"])
        assert "{{" not in text
        filled = yaml.safe_load(text)
        assert errors(filled) == []
        jobs_mode = m.jobsets[filled["metadata"]["name"]]
        assert filled["spec"] == jobs_mode["spec"]
        meta = dict(jobs_mode["metadata"])
        annotations = meta.pop("annotations")
        assert annotations.pop("dorl.dev/after") == task["depends"].replace("abcd-", "dorl-example-abcd-")
        assert filled["metadata"] == {**meta, "annotations": annotations}  # Argo orders by `depends`
        assert annotations == {"dorl.dev/config-hash": m.config_map["metadata"]["annotations"]["dorl.dev/config-hash"]}
    rbac = {r["metadata"]["name"]: r for r in m.rbac if r["kind"] == "Role"}
    assert {"apiGroups": ["jobset.x-k8s.io"], "resources": ["jobsets"]}.items() <= rbac["dorl-example-workflow"][
        "rules"
    ][1].items()


def test_two_command_shapes_never_share_a_template(monkeypatch):
    """A template is shared only by steps whose commands have one shape; naming two shapes alike is refused."""
    from dorl.k8s import workflow as wf

    monkeypatch.setattr(wf, "_template_of", lambda step, values: step.stage)  # train-tf == train
    with pytest.raises(RuntimeError, match="two command shapes would share the Argo template 'train'"):
        workflow_template(load("pipeline.scorers=[ilql_scorer]", "eval.num_responses=2"))
    monkeypatch.undo()
    assert errors(workflow_template(load("pipeline.scorers=[ilql_scorer]", "eval.num_responses=2"))) == []


def test_the_workflow_is_bounded_and_its_jobsets_deleted_when_it_fails():
    """The audit's finding: no deadline on the Workflow or its JobSet steps; a JobSet outlived a failed
    Workflow until the Workflow itself was deleted (3 days later)."""
    wt = workflow_template(load("k8s.nodes=2", "k8s.workflow_deadline_seconds=864000"))
    spec = wt["spec"]
    assert spec["activeDeadlineSeconds"] == 864000 and spec["onExit"] == "cleanup"
    templates = {t["name"]: t for t in spec["templates"]}
    [[step]] = templates["cleanup"]["steps"]
    assert step == {"name": "delete-jobsets", "template": "delete-jobsets", "when": "{{workflow.status}} != Succeeded"}
    delete = templates["delete-jobsets"]["resource"]
    assert delete == {"action": "delete", "flags": ["jobsets.jobset.x-k8s.io", "--selector", "dorl.dev/run=example"]}
    assert errors(wt) == []
    # the Workflow's pods may do it: list and delete JobSets
    rules = {r["metadata"]["name"]: r for r in render(load("k8s.nodes=2")).rbac if r["kind"] == "Role"}
    [jobsets] = [r for r in rules["dorl-example-workflow"]["rules"] if r["resources"] == ["jobsets"]]
    assert {"list", "delete", "get", "patch", "create"} <= set(jobsets["verbs"])
    single = workflow_template(load())["spec"]
    assert "onExit" not in single and single["activeDeadlineSeconds"] == 1209600
