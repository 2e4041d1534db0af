"""The Argo WorkflowTemplate: valid against Argo's official JSON schema (api/jsonschema/schema.json, unknown keys
rejected), the DAG the pipeline needs, retries by the exit-code contract, URIs passed as parameters, multi-node
training as a JobSet resource template."""

from __future__ import annotations

import copy

import pytest
import yaml

from dorl import config
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
        templates["dataset"]["dag"]["tasks"][1]["dependss"] = "data"
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


def test_the_dag_fans_out_over_datasets_shards_and_methods():
    wt = workflow_template(load("pipeline.datasets=[abcd, taskmaster3]"))
    main = _tasks(wt, "main")
    assert main["dataset"]["withItems"] == ["abcd", "taskmaster3"]
    assert main["report"]["depends"] == "dataset"  # after every dataset's evaluations
    ds = _tasks(wt, "dataset")
    deps = {name: t.get("depends") for name, t in ds.items()}
    assert deps == {
        "data": None,
        "train-tf": "data",
        "eval-tf": "train-tf",
        "relabel": "train-tf",
        "relabel-assemble": "relabel",
        "method": "relabel-assemble",
    }
    assert ds["relabel"]["withSequence"] == {"count": "4"}
    assert ds["method"]["withItems"] == ["tf_all", "tf_top", "dt", "ilql"]
    method = _tasks(wt, "method")
    assert method["evaluate"]["depends"] == "train" and "depends" not in method["train"]
    one = _tasks(workflow_template(load("k8s.relabel_shards=1")), "dataset")
    assert "relabel-assemble" not in one and one["method"]["depends"] == "relabel"
    assert "withSequence" not in one["relabel"]


def test_artifacts_are_passed_as_s3_uri_parameters():
    wt = workflow_template(load())
    params = {p["name"]: p["value"] for p in _tasks(wt, "method")["train"]["arguments"]["parameters"]}
    root = "s3://dorl-example/runs/example/{{inputs.parameters.dataset}}"
    assert params == {
        "dataset": "{{inputs.parameters.dataset}}",
        "method": "{{inputs.parameters.method}}",
        "data": f"{root}/relabel",
        "base": f"{root}/tf",
        "out": f"{root}/{{{{inputs.parameters.method}}}}",
    }
    train = next(t for t in wt["spec"]["templates"] if t["name"] == "train")
    assert train["container"]["args"] == [
        "train", "--method", "{{inputs.parameters.method}}", "--data", "{{inputs.parameters.data}}",
        "--base", "{{inputs.parameters.base}}", "--out", "{{inputs.parameters.out}}", "--config", "/etc/dorl/run.yaml",
    ]  # fmt: skip
    shard = next(t for t in wt["spec"]["templates"] if t["name"] == "relabel")
    assert "{{inputs.parameters.shard}}/4" in shard["container"]["args"]


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
    wt = workflow_template(load("k8s.nodes=2", "k8s.gpus=4", "k8s.queue=team-a"))
    templates = {t["name"]: t for t in wt["spec"]["templates"]}
    for name in ("train-tf", "train"):
        res = templates[name]["resource"]
        assert "retryStrategy" not in templates[name]  # the JobSet restarts its own group
        assert res["action"] == "create" and res["setOwnerReference"] is True
        assert res["successCondition"] == "status.terminalState == Completed"
        assert res["failureCondition"] == "status.terminalState == Failed"
        js = yaml.safe_load(res["manifest"])
        assert js["kind"] == "JobSet" and js["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
        # the manifest validates once Argo has put in the parameters
        text = res["manifest"].replace("{{=sprig.replace('_', '-', inputs.parameters.method)}}", "tf-top")
        for p in ("dataset", "method", "data", "base", "out"):
            text = text.replace(
                "{{inputs.parameters." + p + "}}", {"dataset": "abcd", "method": "tf_top"}.get(p, "s3://b/x")
            )
        assert errors(yaml.safe_load(text)) == []
    rbac = {
        r["metadata"]["name"]: r
        for r in __import__("dorl.k8s.rbac", fromlist=["x"]).objects(load())
        if r["kind"] == "Role"
    }
    assert {"apiGroups": ["jobset.x-k8s.io"], "resources": ["jobsets"]}.items() <= rbac["dorl-example-workflow"][
        "rules"
    ][1].items()
