"""Return bins, return tokens, and the methods' training lines, on small tables written by hand."""

import pandas as pd
import pytest

from dorl.config import RelabelConfig
from dorl.errors import ConfigError
from dorl.relabel.datasets import method_sets
from dorl.relabel.returns import edges, return_tokens, to_returns

CTX = "<_soc_><_cus_start_>hi<_cus_end_><_rep_start_>hello<_rep_end_><_cus_start_>my jeans<_cus_end_>"


def test_binary_return_is_reward_above_threshold():
    cfg = RelabelConfig()
    assert edges(cfg) == [0.6]
    assert to_returns([-0.2, 0.6, 0.6000001, 1.0], edges(cfg)).tolist() == [0, 0, 1, 1]
    assert return_tokens(2) == ["<_reward_zero_>", "<_reward_one_>"]


def test_n_bins():
    cfg = RelabelConfig(return_bins=4)
    assert edges(cfg) == pytest.approx([0.2, 0.4, 0.6])
    assert to_returns([-1.0, 0.15, 0.3, 0.5, 0.61], edges(cfg)).tolist() == [0, 0, 1, 2, 3]
    assert return_tokens(4) == ["<_return_0_>", "<_return_1_>", "<_return_2_>", "<_return_3_>"]
    assert edges(RelabelConfig(return_bins=3, return_edges=[0.1, 0.9])) == [0.1, 0.9]
    with pytest.raises(ConfigError, match="2 ascending values"):
        edges(RelabelConfig(return_bins=3, return_edges=[0.9, 0.1]))
    with pytest.raises(ConfigError, match="at least 2 bins"):
        edges(RelabelConfig(return_bins=1))


def table(returns):
    return pd.DataFrame(
        {
            "context": [CTX] * 3,
            "candidate": ["I can help with your jeans.", "jeans", ""],
            "reward": [1.0, 0.7, 0.0],
            "return": returns,
        }
    )


def test_method_lines_binary():
    sets = method_sets(table([1, 1, 0]), return_tokens(2), seed=1, split="train")
    tf_top = set(sets["tf_top"]["text"])
    assert tf_top == {
        "<_soc_><_cus_start_>hi<_cus_end_><_rep_start_>hello<_rep_end_><_cus_start_>my jeans<_cus_end_>"
        "<_rep_start_>I can help with your jeans.<_rep_end_>",
        "<_soc_><_cus_start_>hi<_cus_end_><_rep_start_>hello<_rep_end_><_cus_start_>my jeans<_cus_end_>"
        "<_rep_start_>jeans<_rep_end_>",
    }
    assert len(sets["tf_all"]) == 3 and set(sets["tf_all"]["text"]) >= tf_top
    dt = dict(zip(sets["dt"]["response"], sets["dt"]["text"], strict=True))
    assert dt[""] == (
        "<_soc_><_cus_start_>hi<_cus_end_><_reward_one_><_rep_start_>hello<_rep_end_><_cus_start_>my jeans<_cus_end_>"
        "<_reward_zero_><_rep_start_><_rep_end_>"
    )
    assert dt["jeans"] == (
        "<_soc_><_cus_start_>hi<_cus_end_><_reward_one_><_rep_start_>hello<_rep_end_><_cus_start_>my jeans<_cus_end_>"
        "<_reward_one_><_rep_start_>jeans<_rep_end_>"
    )
    ilql = sets["ilql"].set_index("response")
    assert ilql.loc["jeans<_rep_end_>", "prompt"] == CTX + "<_rep_start_>"
    assert ilql.loc["jeans<_rep_end_>", "reward"] == 0.7 and ilql.loc["<_rep_end_>", "return"] == 0
    assert list(sets["ilql"].columns) == ["prompt", "response", "reward", "return"]
    assert list(sets["dt"].columns) == ["text", "context", "response", "return"]


def test_method_lines_n_bins_and_seeded_shuffle():
    sets = method_sets(table([3, 2, 0]), return_tokens(4), seed=1, split="train")
    assert set(sets["tf_top"]["response"]) == {"I can help with your jeans."}
    dt = dict(zip(sets["dt"]["response"], sets["dt"]["text"], strict=True))
    assert dt["jeans"].endswith("<_return_2_><_rep_start_>jeans<_rep_end_>")
    again = method_sets(table([3, 2, 0]), return_tokens(4), seed=1, split="train")
    assert all(again[m].equals(sets[m]) for m in sets)
