"""ILQL data: return standardisation, action states, rewards, truncation. (Its rows come from relabel's
candidates, whose records are checked where they are read: tests/methods/test_training_set.py.)"""

from __future__ import annotations

import pandas as pd
import pytest

from dorl.ilql.data import Collator, ReturnStats, Sample, encode
from dorl.text import REP_END, REP_START


def test_returns_are_standardised_over_the_data_set():
    stats = ReturnStats.fit([0, 1, 1, 1])
    # mean 0.75; unbiased variance ((0.75)^2 + 3 * (0.25)^2) / 3 = 0.25 -> std 0.5 (the reference's torch.std)
    assert (stats.mean, stats.std, stats.n) == (0.75, 0.5, 4)
    assert [stats.standardise(r) for r in (0, 1)] == [-1.5, 0.5]


def test_constant_returns_are_centred_not_divided_by_zero():
    stats = ReturnStats.fit([1.0, 1.0, 1.0])
    assert (stats.mean, stats.std) == (1.0, 1.0) and stats.standardise(1.0) == 0.0


def test_collate_marks_states_and_places_nothing_on_the_prompt():
    batch = Collator(pad_id=0)([Sample([5, 6, 7, 8, 9], n_actions=2, reward=1.5), Sample([5, 6, 7], 1, -0.5)])
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9], [5, 6, 7, 0, 0]]
    assert set(batch) == {"input_ids", "state_mask", "rewards"}
    # the actions are 8, 9 (row 0) and 7 (row 1); their states are the positions before them
    assert batch["state_mask"].int().tolist() == [[0, 0, 1, 1, 0], [0, 1, 0, 0, 0]]
    assert batch["rewards"].tolist() == [1.5, -0.5]


def frame(rows):
    return pd.DataFrame(rows, columns=["prompt", "response", "reward", "return"])


def test_encode_counts_response_tokens_and_truncates_the_prompt_first(tok):
    df = frame([("<_soc_>Hi there, how are you" + REP_START, "fine" + REP_END, 0.9, 1)])
    stats = ReturnStats(mean=0.5, std=0.5, n=2)
    [full] = encode(df, tok, 512, stats)
    n_prompt = len(tok(df.prompt[0], add_special_tokens=False)["input_ids"])
    n_resp = len(tok(df.response[0], add_special_tokens=False)["input_ids"])
    assert full.n_actions == n_resp and len(full.input_ids) == n_prompt + n_resp and full.reward == 1.0
    assert full.input_ids[-1] == tok.convert_tokens_to_ids(REP_END)
    [cut] = encode(df, tok, n_resp + 2, stats)
    assert cut.input_ids == full.input_ids[-(n_resp + 2) :] and cut.n_actions == n_resp
    [tiny] = encode(df, tok, n_resp, stats)  # even the response is cut: one token must stay as the first state
    assert tiny.n_actions == n_resp - 1


def test_encode_can_use_the_raw_reward(tok):
    df = frame([("a" + REP_START, "b" + REP_END, 0.25, 0), ("a" + REP_START, "c" + REP_END, 0.75, 1)])
    stats = ReturnStats.fit(df["reward"])
    assert [s.reward for s in encode(df, tok, 64, stats, value="reward")] == pytest.approx([-0.7071068, 0.7071068])
