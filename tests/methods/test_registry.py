"""The method registry: every place reads it, and adding a method is one module plus one registry line.

The throw-away method below is `tf_top` with another threshold (its lines: the candidates whose reward
exceeds 0.3), registered under a new name, relabelled, trained and evaluated end to end on the tiny model.
"""

import pandas as pd

from dorl import methods
from dorl.methods.lines import Lines
from tests.fixtures import make_relabel_artifact
from tests.methods.helpers import train_and_evaluate


class TfAboveHalfThreshold(Lines):
    """tf_top at reward > 0.3 instead of the top return bin: the whole method."""

    def rows(self, candidates, return_bins: int):
        return candidates["reward"] > 0.3


def test_a_new_method_is_one_class_and_one_registry_line(tmp_path, data_artifact, tiny_model_artifact, monkeypatch):
    monkeypatch.setitem(methods.REGISTRY, "tf_top03", "tests.methods.test_registry:TfAboveHalfThreshold")
    relabel = make_relabel_artifact(str(tmp_path / "relabel"), data_artifact)  # relabel writes its training set
    cand = pd.read_parquet(relabel.path("candidates/train.parquet"))
    lines = pd.read_parquet(relabel.path("methods/tf_top03/train.parquet"))
    assert len(lines) == int((cand["reward"] > 0.3).sum()) > 0
    model, ev = train_and_evaluate(tmp_path, "tf_top03", relabel, tiny_model_artifact, data_artifact)
    assert model.stage == "train/tf_top03" and model.info["data"]["train"]["lines"] == len(lines)
    assert ev.json("metrics.json")["method"] == "tf_top03" and ev.info["n_examples"] > 0


def test_every_place_reads_the_registry():
    from dorl.config import METHODS
    from dorl.report.table import METHOD_ORDER
    from dorl.stages.evaluate import evaluate_cmd as evaluate
    from dorl.stages.train import train_cmd as train

    assert list(METHODS) == methods.relabelled() and list(METHOD_ORDER) == methods.evaluated()
    for command, names in ((train, methods.names()), (evaluate, methods.evaluated())):
        choice = next(p for p in command.params if p.name == "method").type
        assert list(choice.choices) == names


def test_a_scorer_has_no_training_set_and_no_train_node():
    """ilql_scorer trains nothing: not a training method (no relabelled set, not in pipeline.methods, no
    `dorl train` choice); `pipeline.scorers` adds only its evaluation, after ilql and the candidates' model."""
    from dorl import config
    from dorl.errors import ConfigError
    from dorl.stages.graph import nodes

    assert "ilql_scorer" in methods.evaluated() and "ilql_scorer" not in methods.names()
    assert methods.get("ilql_scorer", config.load()).training_set(None, 2) is None
    assert config.load().pipeline.scorers == []  # off by default: the default graph is unchanged
    cfg = config.load(sets=["pipeline.scorers=[ilql_scorer]", "pipeline.methods=[dt, ilql]"])
    by_key = {n.key: n for n in nodes(cfg)}
    assert not any(k.endswith("train/ilql_scorer") for k in by_key)
    ev = by_key["abcd/evaluate/ilql_scorer"]
    assert ev.after == ("abcd/train/ilql", "abcd/train/dt")
    args = ev.args()
    assert args[args.index("--model") + 1] == by_key["abcd/train/ilql"].out
    assert args[args.index("--candidates-from") + 1] == by_key["abcd/train/dt"].out
    assert "abcd/evaluate/ilql_scorer" in by_key["report"].after
    bad = config.load(sets=["pipeline.scorers=[ilql_scorer]", "pipeline.methods=[ilql]"])
    try:
        nodes(bad)
    except ConfigError as e:
        assert "dt" in str(e)
    else:
        raise AssertionError("a scorer without its candidates' method must be refused")
