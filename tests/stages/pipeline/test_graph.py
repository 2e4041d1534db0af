"""The stage graph exists once: `dorl pipeline`'s plan, the rendered Jobs and the Argo DAG all match it, with and
without `pipeline.seeds` (that the Jobs and Argo run the same commands: tests/k8s/test_argo_matches_jobs.py)."""

import kubernetes_validate
import pytest

from dorl import config, methods
from dorl.errors import ConfigError
from dorl.k8s.plan import CONFIG_PATH, job_name, job_parts, plan
from dorl.k8s.render import render
from dorl.k8s.workflow import workflow_template
from dorl.stages.graph import nodes
from dorl.stages.pipeline import plan as pipeline_plan
from tests.conftest import run_dorl
from tests.k8s.conftest import EXAMPLE
from tests.k8s.schemas import K8S_VERSION, errors


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
        *[k for m in cfg.pipeline.methods for k in (f"abcd/train/{m}", f"abcd/evaluate/{m}")],
    ]  # fmt: skip
    assert cfg.pipeline.methods == methods.defaults()  # the control and the paper's methods (the baselines: `compare`)
    assert graph[-1].key == "report" and len(graph[-1].after) == 2 * (1 + len(cfg.pipeline.methods))


def test_jobs_are_the_graph_nodes():
    for sets in ([], ["k8s.relabel_shards=3"], ["k8s.relabel_shards=3", "pipeline.seeds=[0, 1]"]):
        cfg = _cfg(*sets)
        shards = "k8s.relabel_shards=3" in sets
        steps = {s.name: s for s in plan(cfg)}
        for n in nodes(cfg):
            step = steps[job_name(cfg, *job_parts(n))]
            assert step.stage == n.stage
            if shards and n.stage == "relabel":
                assert step.args == n.args(CONFIG_PATH, ["--shard", "$(JOB_COMPLETION_INDEX)/3"])
                continue
            assert step.args == n.args(CONFIG_PATH)
            assert step.after == [steps_name(cfg, a, shards) for a in n.after]
        assert len(steps) == len(nodes(cfg)) + (2 if shards else 0)  # + one assembling Job per dataset


def steps_name(cfg, key, shards):
    n = next(x for x in nodes(cfg) if x.key == key)
    parts = job_parts(n)
    return job_name(cfg, *parts, "assemble") if shards and n.stage == "relabel" else job_name(cfg, *parts)


def test_argo_dag_is_the_graph():
    cfg = _cfg("pipeline.scorers=[ilql_scorer]", "eval.num_responses=2", "k8s.relabel_shards=1")
    wt = workflow_template(cfg)
    [main] = [t for t in wt["spec"]["templates"] if "dag" in t]
    tasks = {t["name"]: t for t in main["dag"]["tasks"]}
    g = nodes(cfg)
    task = {n.key: "-".join(job_parts(n)).replace("_", "-") for n in g}
    assert list(tasks) == list(task.values())  # one task per node, in the graph's order (scorers included)
    for n in g:
        depends = tasks[task[n.key]].get("depends")
        assert (depends.split(" && ") if depends else []) == [task[a] for a in n.after]


# ---------------------------------------------------------------- pipeline.seeds

R = "/r/x"


def _local(*sets: str):
    return config.load(sets=["root=/r", "run=x", *sets])


def test_without_seeds_the_graph_is_todays():
    g = nodes(_local("pipeline.methods=[tf_top, dt]"))
    assert [n.key for n in g] == [
        "abcd/data", "abcd/train/tf", "abcd/relabel", "abcd/evaluate/tf",
        "abcd/train/tf_top", "abcd/evaluate/tf_top", "abcd/train/dt", "abcd/evaluate/dt", "report",
    ]  # fmt: skip
    assert [n.out for n in g] == [
        f"{R}/abcd/data", f"{R}/abcd/tf", f"{R}/abcd/relabel", f"{R}/abcd/eval/tf",
        f"{R}/abcd/tf_top", f"{R}/abcd/eval/tf_top", f"{R}/abcd/dt", f"{R}/abcd/eval/dt", f"{R}/report",
    ]  # fmt: skip
    assert all(n.seed is None and "--seed" not in n.args() for n in g)
    assert g[4].args() == [
        "train", "--method", "tf_top", "--data", f"{R}/abcd/relabel", "--base", f"{R}/abcd/tf",
        "--out", f"{R}/abcd/tf_top",
    ]  # fmt: skip


def test_seeds_repeat_each_methods_training_and_evaluation():
    g = nodes(_local("pipeline.datasets=[abcd, multiwoz22]", "pipeline.methods=[tf_top, dt]", "pipeline.seeds=[0, 1]"))
    by_key = {n.key: n for n in g}
    assert len(by_key) == len(g) and len({n.out for n in g}) == len(g)  # two seeds are two nodes, two artifacts
    assert [n.key for n in g if n.dataset == "abcd"] == [
        "abcd/data", "abcd/train/tf", "abcd/relabel", "abcd/evaluate/tf",
        "abcd/seed-0/train/tf_top", "abcd/seed-0/evaluate/tf_top", "abcd/seed-0/train/dt", "abcd/seed-0/evaluate/dt",
        "abcd/seed-1/train/tf_top", "abcd/seed-1/evaluate/tf_top", "abcd/seed-1/train/dt", "abcd/seed-1/evaluate/dt",
    ]  # fmt: skip
    # data, tf, relabel and tf's evaluation once per dataset, where they are without seeds
    for stage, out in [("data", "data"), ("train/tf", "tf"), ("relabel", "relabel"), ("evaluate/tf", "eval/tf")]:
        assert by_key[f"abcd/{stage}"].out == f"{R}/abcd/{out}" and by_key[f"abcd/{stage}"].seed is None
    train = by_key["abcd/seed-1/train/dt"]
    assert train.out == f"{R}/abcd/seed-1/dt" and train.after == ("abcd/relabel",)
    assert train.kwargs() == {
        "method": "dt", "seed": 1, "data_uri": f"{R}/abcd/relabel", "base_uri": f"{R}/abcd/tf",
        "out_uri": f"{R}/abcd/seed-1/dt",
    }  # fmt: skip
    assert train.args()[:5] == ["train", "--method", "dt", "--seed", "1"]
    assert train.title == "abcd: train dt (seed 1)"
    ev = by_key["abcd/seed-1/evaluate/dt"]
    assert ev.out == f"{R}/abcd/seed-1/eval/dt" and ev.after == (train.key,)
    assert dict(ev.inputs)["model_uri"] == train.out and "--seed" not in ev.args()  # its model carries the seed
    # the report reads every evaluation: tf once and each method per seed, for each dataset
    report = g[-1]
    evals = [n for n in g if n.stage == "evaluate"]
    assert len(evals) == 2 * (1 + 2 * 2)
    assert dict(report.inputs)["eval_uris"] == tuple(e.out for e in evals)
    assert report.after == tuple(e.key for e in evals)
    seen = set()
    for n in g:  # each node after the nodes it needs
        assert set(n.after) <= seen, n.key
        seen.add(n.key)


def test_bad_seeds_are_refused():
    with pytest.raises(ConfigError, match=r"config key 'pipeline.seeds': 1 is listed twice"):
        _local("pipeline.seeds=[1, 2, 1]")
    with pytest.raises(ConfigError, match=r"config key 'pipeline.seeds': -3 is out of range; allowed: >= 0"):
        _local("pipeline.seeds=[0, -3]")
    r = run_dorl("pipeline", "--preset", "tiny", "--seeds", "0,0", "--set", "root=/nonexistent")
    assert r.returncode == 2 and "listed twice" in r.stderr and "Traceback" not in r.stderr
    r = run_dorl("train", "--method", "dt", "--seed", "-1", "--data", "/nonexistent", "--out", "/nonexistent/o")
    assert r.returncode == 2 and "--seed" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("option", ["--datasets", "--methods", "--seeds"])
@pytest.mark.parametrize("value", ["", " , "])
def test_an_empty_list_option_is_a_usage_error(option, value, tmp_path):
    """`--methods ''` meant all methods and `--seeds ''` none: now all three say the same, one line, exit 2."""
    from click.testing import CliRunner

    from dorl.cli import cli

    r = CliRunner().invoke(cli, ["pipeline", "--preset", "tiny", option, value, "--set", f"root={tmp_path}"])
    assert isinstance(r.exception, ConfigError), r.output
    assert str(r.exception) == (
        f"{option} {value!r}: an empty list; leave {option} out to use pipeline.{option[2:]}, or name some"
    )
    assert not list(tmp_path.iterdir())  # nothing started


def test_an_empty_seeds_option_exits_2_with_one_line(tmp_path):
    r = run_dorl("pipeline", "--preset", "tiny", "--seeds", "", "--set", f"root={tmp_path}")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "--seeds '': an empty list" in r.stderr


def k8s(*sets: str):
    return config.load(file=EXAMPLE, sets=["pipeline.methods=[tf_top, dt]", *sets])


@pytest.mark.parametrize("seeds", ["[]", "[0, 1, 2]"])
def test_seeded_jobs_are_the_graphs_nodes_and_validate(seeds):
    cfg = k8s("k8s.relabel_shards=1", f"pipeline.seeds={seeds}")
    g, steps = nodes(cfg), plan(cfg)
    assert len(steps) == len(g) and len({s.name for s in steps}) == len(steps)
    job = {n.key: s.name for n, s in zip(g, steps)}
    for n, s in zip(g, steps):
        assert s.args == n.args(CONFIG_PATH)
        assert s.after == [job[a] for a in n.after]
    if seeds != "[]":
        assert job["abcd/seed-2/train/dt"] == "dorl-example-abcd-train-dt-s2"
        assert job["abcd/seed-2/evaluate/dt"] == "dorl-example-abcd-eval-dt-s2"
        assert job["abcd/train/tf"] == "dorl-example-abcd-train-tf"
    for obj in render(cfg).jobs.values():
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_seeded_job_names_fit_kubernetes_limits():
    m = render(k8s("run=" + "a" * 20, "pipeline.datasets=[taskmaster3]", "pipeline.seeds=[0, 10]", "k8s.nodes=16"))
    assert "dorl-" + "a" * 20 + "-taskmaster3-train-tf-top-s10" in m.jobsets  # multi-node training: JobSets
    for name in m.jobsets:
        assert len(name) + len("-n-0-15") <= 63, name  # the hostname of the last node's pod
    with pytest.raises(ConfigError, match=r"config key 'run'.*at most 20 .*\(pipeline.seeds"):
        render(k8s("run=" + "a" * 21, "pipeline.seeds=[0, 10]"))


def _dag_tasks(wt: dict) -> dict:
    [main] = [t for t in wt["spec"]["templates"] if "dag" in t]
    return {task["name"]: task for task in main["dag"]["tasks"]}


def test_argo_runs_every_method_and_seed():
    wt = workflow_template(k8s("pipeline.seeds=[0, 1]"))
    assert errors(wt) == []
    tasks = _dag_tasks(wt)
    assert [n for n in tasks if "-train-" in n] == [
        "abcd-train-tf", "abcd-train-tf-top-s0", "abcd-train-dt-s0", "abcd-train-tf-top-s1", "abcd-train-dt-s1",
    ]  # fmt: skip
    train = {p["name"]: p["value"] for p in tasks["abcd-train-dt-s1"]["arguments"]["parameters"]}
    root = "s3://dorl-example/runs/example/abcd"
    assert train == {"dataset": "abcd", "method": "dt", "seed": "1", "data": f"{root}/relabel", "base": f"{root}/tf",
                     "out": f"{root}/seed-1/dt"}  # fmt: skip
    evaluate = {p["name"]: p["value"] for p in tasks["abcd-eval-dt-s1"]["arguments"]["parameters"]}
    assert evaluate["out"] == f"{root}/seed-1/eval/dt" and evaluate["model"] == f"{root}/seed-1/dt"
    assert tasks["abcd-eval-dt-s1"]["depends"] == "abcd-train-dt-s1"
    templates = {t["name"]: t for t in wt["spec"]["templates"]}
    assert templates["train"]["container"]["args"][:5] == [
        "train", "--method", "{{inputs.parameters.method}}", "--seed", "{{inputs.parameters.seed}}",
    ]  # fmt: skip
    assert "--seed" not in templates["train-tf"]["container"]["args"]  # tf is trained once
    assert tasks["abcd-eval-tf"]["template"] == "evaluate"
    # the report reads every evaluation, as the Jobs' report does, and waits for each
    report = next(s for s in plan(k8s("pipeline.seeds=[0, 1]")) if s.stage == "report")
    assert templates["report"]["container"]["args"][:-4] == report.args[:-4]
    assert report.args.count("--eval") == 1 + 2 * 2
    assert tasks["report"]["depends"].split(" && ") == [n.removeprefix("dorl-example-") for n in report.after]
    # without seeds: no seed parameter
    plain = workflow_template(k8s())
    assert "--seed" not in next(t for t in plain["spec"]["templates"] if t["name"] == "train")["container"]["args"]


def test_a_dataset_of_scored_rows_alone_has_no_control():
    """tf_human trains on the human responses, which a relabel of your scored rows alone does not have: the graph
    leaves it out for that dataset only (it trained on nothing and failed the run before), and keeps it elsewhere."""
    cfg = _cfg(
        "pipeline.datasets=[abcd, mine]",
        "data.sources.mine.path=s3://b/mine.jsonl",
        "data.sources.mine.scored=s3://b/scored.jsonl",
        "data.sources.mine.candidates=scored",
    )
    assert "tf_human" in cfg.pipeline.methods
    trained = {(n.dataset, n.method) for n in nodes(cfg) if n.stage == "train"}
    assert ("abcd", "tf_human") in trained and ("mine", "tf_human") not in trained
    assert ("mine", "tf_top") in trained
