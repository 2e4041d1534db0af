"""The stage graph exists once: `dorl pipeline`'s plan, the rendered Jobs and the Argo DAG all match it."""

from dorl import config, methods
from dorl.k8s.plan import CONFIG_PATH, job_name, job_parts, plan
from dorl.k8s.workflow import workflow_template
from dorl.pipeline import plan as pipeline_plan
from dorl.stages.graph import nodes


def _cfg(*sets):
    return config.load(sets=["root=s3://b/runs", "run=g", "pipeline.datasets=[abcd, taskmaster3]", *sets])


def test_pipeline_runs_the_graph_in_order():
    cfg = _cfg()
    graph = nodes(cfg)
    assert [s.node for s in pipeline_plan(cfg)] == graph
    seen = set()
    for n in graph:  # each after what it reads
        assert set(n.after) <= seen
        seen.add(n.key)
    assert [n.key for n in graph if n.dataset == "abcd"] == [
        "abcd/data", "abcd/train/tf", "abcd/relabel", "abcd/evaluate/tf",
        *[k for m in methods.relabelled() for k in (f"abcd/train/{m}", f"abcd/evaluate/{m}")],
    ]  # fmt: skip
    assert graph[-1].key == "report" and len(graph[-1].after) == 2 * len(methods.names())


def test_jobs_are_the_graph_nodes():
    for sets in ([], ["k8s.relabel_shards=3"]):
        cfg = _cfg(*sets)
        steps = {s.name: s for s in plan(cfg)}
        for n in nodes(cfg):
            step = steps[job_name(cfg, *job_parts(n))]
            assert step.stage == n.stage
            if "k8s.relabel_shards=3" in sets and n.stage == "relabel":
                assert step.args == n.args(CONFIG_PATH, ["--shard", "$(JOB_COMPLETION_INDEX)/3"])
                continue
            assert step.args == n.args(CONFIG_PATH)
            assert step.after == [steps_name(cfg, a, sets) for a in n.after]
        assert len(steps) == len(nodes(cfg)) + (2 if sets else 0)  # + one assembling Job per dataset


def steps_name(cfg, key, sets):
    n = next(x for x in nodes(cfg) if x.key == key)
    parts = job_parts(n)
    return job_name(cfg, *parts, "assemble") if sets and n.stage == "relabel" else job_name(cfg, *parts)


def test_argo_dag_is_the_graph():
    wt = workflow_template(_cfg())
    tasks = {t["name"]: {x["name"]: x for x in t["dag"]["tasks"]} for t in wt["spec"]["templates"] if "dag" in t}
    assert set(tasks["dataset"]) == {"data", "train-tf", "relabel", "eval-tf", "method"}
    assert tasks["dataset"]["relabel"]["depends"] == "train-tf" and tasks["dataset"]["eval-tf"]["depends"] == "train-tf"
    assert tasks["dataset"]["method"]["withItems"] == methods.relabelled()
    assert tasks["method"]["evaluate"]["depends"] == "train"
    assert tasks["main"]["report"]["depends"] == "dataset"
