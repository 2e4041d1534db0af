"""The Argo WorkflowTemplate: valid against a strict schema generated from hera's models (unknown keys
rejected), the DAG the pipeline needs, retries that skip user errors, URIs passed as parameters."""

from __future__ import annotations

import copy
import functools

import jsonschema
import pytest

from dorl import config
from dorl.errors import ConfigError
from dorl.k8s.workflow import RETRY_EXPRESSION, require_argo, workflow, workflow_template
from tests.k8s.conftest import EXAMPLE


def _close(node):
    """additionalProperties: false on every object with declared properties, so misspelled keys fail."""
    if isinstance(node, dict):
        if node.get("type") == "object" and "properties" in node:
            node["additionalProperties"] = False
        for v in node.values():
            _close(v)
    elif isinstance(node, list):
        for v in node:
            _close(v)
    return node


@functools.cache
def validator(kind: str) -> jsonschema.Draft202012Validator:
    from hera.workflows.models.io.argoproj.workflow.v1alpha1 import Workflow, WorkflowTemplate

    model = {"WorkflowTemplate": WorkflowTemplate, "Workflow": Workflow}[kind]
    return jsonschema.Draft202012Validator(_close(model.model_json_schema(by_alias=True)))


def _leaves(e) -> list[str]:
    # anyOf (every optional field is "X or null") hides the real cause in nested contexts
    return [m for c in e.context for m in _leaves(c)] if e.context else [e.message]


def errors(doc: dict) -> list[str]:
    return [m for e in validator(doc["kind"]).iter_errors(doc) for m in _leaves(e)]


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


def test_every_step_retries_transient_failures_but_not_user_errors():
    wt = workflow_template(load())
    containers = [t for t in wt["spec"]["templates"] if "container" in t]
    assert {t["name"] for t in containers} == {
        "data", "train-tf", "relabel", "relabel-assemble", "train", "evaluate", "report",
    }  # fmt: skip
    assert RETRY_EXPRESSION == 'lastRetry.status == "Error" || asInt(lastRetry.exitCode) != 2'
    for t in containers:
        retry = t["retryStrategy"]
        assert retry["retryPolicy"] == "Always" and retry["limit"] == 3
        assert retry["expression"] == RETRY_EXPRESSION
        assert t["activeDeadlineSeconds"] == 172800
        c = t["container"]
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert c["envFrom"] == [{"secretRef": {"name": "dorl-s3"}}]
    spec = wt["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert {v["name"] for v in spec["volumes"]} == {"config", "dshm", "scratch"}
    gpu = {t["name"]: t["container"]["resources"]["limits"].get("nvidia.com/gpu") for t in containers}
    assert gpu == {
        "data": None, "train-tf": "1", "relabel": "1", "relabel-assemble": None, "train": "1", "evaluate": "1",
        "report": None,
    }  # fmt: skip


def test_multi_node_runs_are_refused_for_argo():
    cfg = load("k8s.nodes=2")
    assert workflow_template(cfg) is None
    with pytest.raises(ConfigError, match="--mode jobs"):
        require_argo(cfg)
