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
    from dorl.evaluate.cli import evaluate
    from dorl.report.table import METHOD_ORDER
    from dorl.train.cli import train

    assert list(METHODS) == methods.relabelled() and list(METHOD_ORDER) == methods.names()
    for command in (train, evaluate):
        choice = next(p for p in command.params if p.name == "method").type
        assert list(choice.choices) == methods.names()
