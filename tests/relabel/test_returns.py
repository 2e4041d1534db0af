"""Return bins, and the training sets relabel writes (each method's own rows: tests/methods/test_<method>.py)."""

import pytest

from dorl import config, methods
from dorl.config import RelabelConfig
from dorl.errors import ConfigError
from dorl.relabel.returns import edges, to_returns
from dorl.stages.relabel import training_sets
from tests.methods.helpers import candidates


def test_binary_return_is_reward_above_threshold():
    cfg = RelabelConfig()
    assert edges(cfg) == [0.6]
    assert to_returns([-0.2, 0.6, 0.6000001, 1.0], edges(cfg)).tolist() == [0, 0, 1, 1]


def test_n_bins():
    cfg = RelabelConfig(return_bins=4)
    assert edges(cfg) == pytest.approx([0.2, 0.4, 0.6])
    assert to_returns([-1.0, 0.15, 0.3, 0.5, 0.61], edges(cfg)).tolist() == [0, 0, 1, 2, 3]
    assert edges(RelabelConfig(return_bins=3, return_edges=[0.1, 0.9])) == [0.1, 0.9]
    with pytest.raises(ConfigError, match="2 ascending values"):
        edges(RelabelConfig(return_bins=3, return_edges=[0.9, 0.1]))
    with pytest.raises(ConfigError, match="at least 2 bins"):
        edges(RelabelConfig(return_bins=1))


def test_every_registered_method_gets_its_set_shuffled_with_a_seed():
    cfg = config.load(sets=["relabel.return_bins=4", "relabel.seed=1"])
    sets = training_sets(cfg, candidates([3, 2, 0]), "train")
    assert list(sets) == methods.relabelled()  # tf trains on conversations, not on candidates
    again = training_sets(cfg, candidates([3, 2, 0]), "train")
    assert all(again[m].equals(sets[m]) for m in sets)
    other = training_sets(config.load(sets=["relabel.return_bins=4", "relabel.seed=2"]), candidates([3, 2, 0]), "train")
    assert any(not other[m].equals(sets[m]) for m in sets)  # a different shuffle
