"""Your own datasets on the cluster: the data stage reads the source from S3 in a pod, a dataset relabelled from your
scored rows alone runs on a CPU pod without beams or shards, and the Jobs and Argo run the same invocations."""

from __future__ import annotations

import itertools

import pytest

from dorl import config
from dorl.errors import ConfigError
from dorl.k8s.render import render
from tests.k8s.test_argo_matches_jobs import argo_runs, check_same_runs

BASE = ["root=s3://b/runs", "run=own", "data.sources.mine.path=s3://b/logs/chats.jsonl"]


def _cfg(candidates: str, *sets: str):
    scored = [] if candidates == "beams" else ["data.sources.mine.scored=s3://b/logs/scored.jsonl"]
    return config.load(sets=[*BASE, f"data.sources.mine.candidates={candidates}", *scored, *sets])


@pytest.mark.parametrize(
    ("candidates", "shards", "seeds", "nodes"),
    list(itertools.product(["beams", "scored", "both"], [1, 3], ["[]", "[0, 1]"], [1, 2])),
)
def test_jobs_and_argo_run_the_same_invocations(candidates, shards, seeds, nodes):
    cfg = _cfg(
        candidates,
        "pipeline.datasets=[abcd, mine]",
        f"k8s.relabel_shards={shards}",
        f"pipeline.seeds={seeds}",
        f"k8s.nodes={nodes}",
    )
    assert check_same_runs(cfg)
    argo = argo_runs(render(cfg).workflow_template)
    [data] = [r.argv for r in argo if r.argv[:4] == ("data", "prepare", "--dataset", "mine")]
    assert "--source" not in data  # the pod reads data.sources.mine.path from the run config
    relabels = [r.argv for r in argo if r.argv[0] == "relabel" and "s3://b/runs/own/mine/relabel" in r.argv]
    if candidates == "scored":  # your rows alone: one invocation, no base model, no shards
        assert relabels == [("relabel", "--data", "s3://b/runs/own/mine/data", "--out", "s3://b/runs/own/mine/relabel",
                             "--config", "/etc/dorl/run.yaml")]  # fmt: skip
    else:
        assert all("--base" in r for r in relabels) and len(relabels) == (shards + 1 if shards > 1 else 1)


def test_a_scored_only_relabel_runs_on_a_cpu_pod_after_the_data():
    m = render(_cfg("scored", "pipeline.datasets=[mine]", "k8s.relabel_shards=4"))
    [step] = [s for s in m.steps if s.stage == "relabel"]
    assert step.pool == "cpu" and step.shards == 1 and step.after == ["dorl-own-mine-data"]
    container = m.objects()[step.name]["spec"]["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in str(container["resources"])
    both = render(_cfg("both", "pipeline.datasets=[mine]"))
    [step] = [s for s in both.steps if s.stage == "relabel"]
    assert step.pool == "gpu" and step.after == ["dorl-own-mine-train-tf"]


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["data.sources.mine.path=/home/me/chats.jsonl"], "data.sources.mine.path': pods read your files from S3"),
        (["data.sources.mine.candidates=scored", "data.sources.mine.scored=scored.jsonl"],
         "data.sources.mine.scored': pods read your files from S3"),
        (["data.sources.my_logs.path=s3://b/x.jsonl", "data.sources.my-logs.path=s3://b/y.jsonl",
          "pipeline.datasets=[my_logs, my-logs]"], "'my-logs' and 'my_logs' would name the same Jobs"),
        (["data.sources.support_conversations.path=s3://b/x.jsonl", "pipeline.datasets=[support_conversations]",
          "run=" + "r" * 20], "dataset 'support_conversations' takes the rest of the Job names"),
    ],
)  # fmt: skip
def test_what_cannot_run_on_a_cluster_is_refused(sets, message):
    cfg = config.load(sets=[*BASE, "pipeline.datasets=[mine]", *sets])
    with pytest.raises(ConfigError, match=message):
        render(cfg)
