"""The Jobs and the Argo WorkflowTemplate run the same stage invocations, in an order where every artifact a step
reads is written by a step it waits for: for every combination the config allows of methods, scorers (re-ranking a
relabelled method's or the base model's candidates), seeds, datasets, relabel shards and nodes.

Both renderings are expanded here the way the cluster would run them, without reading how they were built:
Indexed Jobs into one invocation per index, Argo DAG tasks through `withItems` / `withSequence`, nested DAGs,
`{{inputs.parameters.*}}` / `{{item}}` and the JobSet manifests of resource templates. An invocation is the
`dorl ...` argv of a container (one per relabel shard; a multi-node JobSet's pods all run one).
"""

from __future__ import annotations

import functools
import itertools
import json
import re
from dataclasses import dataclass, replace

import pytest
import yaml

from dorl import config
from dorl.errors import ConfigError
from dorl.k8s.render import render

READS = ("--data", "--base", "--model", "--candidates-from", "--eval")
METHODS = ["tf_all", "tf_top", "dt", "ilql"]
BASELINES = ["kto", "dpo", "awr"]  # the `compare` preset's: each alone and all with the paper's (every subset: 8x)


@dataclass(frozen=True)
class Run:
    argv: tuple[str, ...]
    after: frozenset  # the argvs of every invocation it waits for, transitively


def _values(argv, flag: str) -> list[str]:
    return [argv[i + 1] for i, w in enumerate(argv) if w == flag]


def _unresolved(argv) -> list[str]:
    return [w for w in argv if "{{" in w or "$(" in w]


# ---------------------------------------------------------------- the Jobs, as `dorl k8s submit --mode jobs` runs them


def _pod_argvs(obj: dict) -> list[tuple[str, ...]]:
    """One argv per index of an Indexed Job (relabel shards); one for a JobSet (every node runs the same)."""
    if obj["kind"] == "JobSet":
        [rj] = obj["spec"]["replicatedJobs"]
        return [tuple(rj["template"]["spec"]["template"]["spec"]["containers"][0]["args"])]
    spec = obj["spec"]
    args = spec["template"]["spec"]["containers"][0]["args"]
    if spec.get("completionMode") != "Indexed":
        return [tuple(args)]
    return [tuple(a.replace("$(JOB_COMPLETION_INDEX)", str(i)) for a in args) for i in range(spec["completions"])]


def job_runs(m) -> list[Run]:
    objects = m.objects()
    runs: dict[str, list[Run]] = {}
    for step in m.steps:  # the order submit_jobs follows: each step once every one in `after` succeeded
        annotation = objects[step.name]["metadata"].get("annotations", {}).get("dorl.dev/after")
        assert annotation == (",".join(step.after) or None), step.name  # what the objects say is what submit reads
        above = frozenset(a for name in step.after for r in runs[name] for a in (r.argv, *r.after))
        runs[step.name] = [Run(argv, above) for argv in _pod_argvs(objects[step.name])]
    return [r for rs in runs.values() for r in rs]


# ---------------------------------------------------------------- the WorkflowTemplate, as Argo runs it


def _fill(text: str, params: dict[str, str], item=None) -> str:
    if "{{" not in text:
        return text

    def one(m):
        expr = m.group(1).strip()
        if expr == "item":
            return str(item)
        if expr.startswith("item."):
            return str(item[expr[5:]])
        if expr.startswith("inputs.parameters."):
            return params[expr[len("inputs.parameters.") :]]
        raise AssertionError(f"unknown Argo expression {{{{{expr}}}}}")

    return re.sub(r"\{\{(.*?)\}\}", one, text)


@functools.cache
def _manifest(text: str) -> dict:
    return yaml.load(text, Loader=yaml.CSafeLoader)


def _depends(expr: str | None) -> list[str]:
    if not expr:
        return []
    names = [w.strip() for w in expr.split("&&")]
    assert all(re.fullmatch(r"[A-Za-z0-9-]+", n) for n in names), expr  # plain AND of tasks: each must succeed
    return names


def _expand(templates: dict, name: str, params: dict, above: frozenset) -> list[Run]:
    t = templates[name]
    declared = {p["name"] for p in t.get("inputs", {}).get("parameters", [])}
    assert declared == set(params), (name, declared, set(params))
    if "container" in t:
        return [Run(tuple(_fill(a, params) for a in t["container"]["args"]), above)]
    if "resource" in t:  # the JobSet it creates; every string in it a whole YAML scalar, so filled after parsing
        js = _manifest(t["resource"]["manifest"])
        assert js["kind"] == "JobSet"
        [rj] = js["spec"]["replicatedJobs"]
        container = rj["template"]["spec"]["template"]["spec"]["containers"][0]
        return [Run(tuple(_fill(a, params) for a in container["args"]), above)]
    tasks = {task["name"]: task for task in t["dag"]["tasks"]}
    done: dict[str, list[Run]] = {}
    while len(done) < len(tasks):  # in dependency order
        ready = [n for n, task in tasks.items() if n not in done and set(_depends(task.get("depends"))) <= set(done)]
        assert ready, f"a cycle or an unknown task in {name}: {sorted(set(tasks) - set(done))}"
        for n in ready:
            task = tasks[n]
            deps = _depends(task.get("depends"))
            before = above | {a for d in deps for r in done[d] for a in (r.argv, *r.after)}
            if "withItems" in task:
                items = task["withItems"]
            elif "withSequence" in task:
                items = list(range(int(task["withSequence"]["count"])))
            else:
                items = [None]
            done[n] = []
            passed = task.get("arguments", {}).get("parameters", [])
            for item in items:
                args = {p["name"]: _fill(p["value"], params, item) for p in passed}
                done[n] += _expand(templates, task["template"], args, frozenset(before))
    return [r for rs in done.values() for r in rs]


def argo_runs(wt: dict) -> list[Run]:
    templates = {t["name"]: t for t in wt["spec"]["templates"]}
    return _expand(templates, wt["spec"]["entrypoint"], {}, frozenset())


# ---------------------------------------------------------------- what both must satisfy


def check_artifacts(runs: list[Run], where: str) -> None:
    """Every artifact is committed by one invocation (relabel shards write parts, their assembler commits), and
    each one an invocation reads is committed by one it waits for."""
    writer: dict[str, tuple] = {}
    for r in runs:
        assert not _unresolved(r.argv), (where, r.argv)
        if "--shard" in r.argv:
            continue
        [out] = _values(r.argv, "--out")
        assert out not in writer, f"{where}: {out} written by {writer.get(out)} and {r.argv}"
        writer[out] = r.argv
    for r in runs:
        for flag in READS:
            for uri in _values(r.argv, flag):
                assert uri in writer, f"{where}: {r.argv[:3]} reads {flag} {uri}, which no step writes"
                assert writer[uri] in r.after, f"{where}: {r.argv[:3]} reads {uri} before {writer[uri][:3]} wrote it"
        for n in _values(r.argv, "--assemble"):
            [out] = _values(r.argv, "--out")
            shards = {s.argv for s in runs if "--shard" in s.argv and _values(s.argv, "--out") == [out]}
            assert {_values(s, "--shard")[0] for s in shards} == {f"{i}/{n}" for i in range(int(n))}, where
            assert shards <= r.after, f"{where}: assembling {out} does not wait for every shard"


AXES = {  # config key -> the values tried
    "pipeline.methods": [list(s) for k in range(len(METHODS) + 1) for s in itertools.combinations(METHODS, k)]
    + [[b] for b in BASELINES]
    + [METHODS + BASELINES],
    "pipeline.scorers": [[], ["ilql_scorer"]],
    "ilql.scorer_candidates": ["dt", "tf"],  # what ilql_scorer re-ranks: a relabelled method's or the base's
    "pipeline.seeds": [[], [0], [0, 1]],
    "pipeline.seed_scope": ["methods", "all"],  # all: tf, relabel and tf's evaluation per seed too
    "pipeline.datasets": [["abcd"], ["abcd", "multiwoz22", "taskmaster3"]],
    "k8s.relabel_shards": [1, 3],
    "k8s.nodes": [1, 2],
}
BASE = ["root=s3://b/runs", "run=eq", "eval.num_responses=2"]  # 2: a scorer has candidates to rank


def combinations():
    """{key: value} for every combination of AXES (the scorer's candidates varied only with the scorer on, the seed
    scope only with seeds)."""
    for values in itertools.product(*AXES.values()):
        combo = dict(zip(AXES, values))
        if not (combo["pipeline.scorers"] or combo["ilql.scorer_candidates"] == "dt"):
            continue
        if combo["pipeline.seeds"] or combo["pipeline.seed_scope"] == "methods":
            yield combo


def _with(base, combo: dict):
    """`base` with the combination's values set: what config.load(sets=...) gives (checked below), 15x faster."""
    sections: dict[str, dict] = {}
    for key, value in combo.items():
        section, name = key.split(".")
        sections.setdefault(section, {})[name] = value
    return replace(base, **{s: replace(getattr(base, s), **values) for s, values in sections.items()})


def _sets(combo: dict) -> list[str]:
    return BASE + [f"{k}={json.dumps(v)}" for k, v in combo.items()]  # JSON is YAML


def _counts(runs: list[Run]) -> dict:
    out: dict = {}
    for r in runs:
        out[r.argv] = out.get(r.argv, 0) + 1
    return out


def check_same_runs(cfg) -> bool:
    """True if the config renders (both renderings checked), False if it is refused (a scorer without its models)."""
    try:
        m = render(cfg)
    except ConfigError as e:
        assert "pipeline.scorers" in str(e), e
        return False
    jobs, argo = job_runs(m), argo_runs(m.workflow_template)
    assert _counts(jobs) == _counts(argo), set(_counts(jobs)) ^ set(_counts(argo))
    check_artifacts(jobs, "Jobs")
    check_artifacts(argo, "Argo")
    return True


def test_jobs_and_argo_run_the_same_invocations_in_every_combination():
    base = config.load(sets=BASE)
    combos = list(combinations())
    assert len(combos) == (16 + 3 + 1) * (1 + 2) * (1 + 2 * 2) * 2 * 2 * 2
    for combo in combos[::97]:  # the shortcut is the real thing
        assert repr(_with(base, combo)) == repr(config.load(sets=_sets(combo))), combo
    rendered = refused = 0
    for combo in combos:
        try:
            ok = check_same_runs(_with(base, combo))
        except AssertionError as e:
            raise AssertionError(f"{combo}: {e}") from None
        rendered, refused = rendered + ok, refused + (not ok)
    assert rendered and refused  # both kinds were met


def test_a_scorer_runs_in_both_and_the_report_waits_for_it():
    cfg = config.load(sets=[*BASE, "pipeline.scorers=[ilql_scorer]", "pipeline.seeds=[0, 1]"])
    assert check_same_runs(cfg)
    argo = argo_runs(render(cfg).workflow_template)
    scored = [r for r in argo if r.argv[:4] == ("evaluate", "--method", "ilql_scorer", "--model")]
    assert len(scored) == 2  # one per seed
    [report] = [r for r in argo if r.argv[0] == "report"]
    assert {s.argv for s in scored} <= report.after


def test_seeds_all_the_way_run_tf_and_relabel_per_seed_in_both():
    """pipeline.seed_scope=all: each seed has its own tf, relabel and tf evaluation, in the Jobs and in Argo, and each
    method of that seed trains on them."""
    cfg = config.load(sets=[*BASE, "pipeline.seeds=[0, 1]", "pipeline.seed_scope=all", "pipeline.methods=[dt]"])
    assert check_same_runs(cfg)
    argo = argo_runs(render(cfg).workflow_template)
    tf = [r.argv for r in argo if r.argv[:3] == ("train", "--method", "tf")]
    assert sorted(_values(a, "--seed")[0] for a in tf) == ["0", "1"]
    for seed in ("0", "1"):
        [dt] = [
            r.argv for r in argo if r.argv[:3] == ("train", "--method", "dt") and _values(r.argv, "--seed") == [seed]
        ]
        assert _values(dt, "--base") == [f"s3://b/runs/eq/abcd/seed-{seed}/tf"]
        assert _values(dt, "--data") == [f"s3://b/runs/eq/abcd/seed-{seed}/relabel"]
    [report] = [r.argv for r in argo if r.argv[0] == "report"]
    assert [e for e in _values(report, "--eval") if e.endswith("/eval/tf")] == [
        f"s3://b/runs/eq/abcd/seed-{s}/eval/tf" for s in (0, 1)
    ]


def test_the_checks_catch_a_missing_step_and_a_missing_dependency():
    """The checks above can fail: drop the scorer's evaluation, or the report's wait for it."""
    runs = argo_runs(render(config.load(sets=[*BASE, "pipeline.scorers=[ilql_scorer]"])).workflow_template)
    without = [r for r in runs if "ilql_scorer" not in r.argv]
    with pytest.raises(AssertionError, match="which no step writes"):
        check_artifacts(without, "Argo")
    scored = next(r.argv for r in runs if "ilql_scorer" in r.argv)
    early = [Run(r.argv, r.after - {scored}) for r in runs]
    with pytest.raises(AssertionError, match="before"):
        check_artifacts(early, "Argo")
