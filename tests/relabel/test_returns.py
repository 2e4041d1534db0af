"""Return bins (the relabel artifact records them; each method's rows from them: tests/methods/test_<method>.py)."""

import pytest

from dorl import config
from dorl.config import RelabelConfig
from dorl.errors import ConfigError
from dorl.relabel.returns import edges, to_returns


def test_binary_return_is_reward_above_threshold():
    cfg = RelabelConfig()
    assert edges(cfg) == [0.6]
    assert to_returns([-0.2, 0.6, 0.6000001, 1.0], edges(cfg)).tolist() == [0, 0, 1, 1]


def test_n_bins():
    cfg = RelabelConfig(return_bins=4)
    assert edges(cfg) == pytest.approx([0.2, 0.4, 0.6])
    assert to_returns([-1.0, 0.15, 0.3, 0.5, 0.61], edges(cfg)).tolist() == [0, 0, 1, 2, 3]
    assert edges(RelabelConfig(return_bins=3, return_edges=[0.1, 0.9])) == [0.1, 0.9]


@pytest.mark.parametrize(
    "sets, match",
    [
        (["relabel.return_bins=3", "relabel.return_edges=[0.9, 0.1]"], "is not 2 ascending values"),
        (["relabel.return_bins=1"], r"'relabel.return_bins': 1 is out of range; allowed: >= 2"),
    ],
)
def test_bins_that_cannot_be_are_refused_by_the_config(sets, match):
    with pytest.raises(ConfigError, match=match):
        config.load(sets=sets)
