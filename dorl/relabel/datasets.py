"""The training set of every method, built from the candidates table (one row per candidate).

- tf_top: the candidates in the top return bin (the human response always is), as plain lines.
- tf_all: all candidates, as plain lines.
- dt:     all candidates, with the return token of each (`dorl.text.dt_line`).
- ilql:   prompt (context + <_rep_start_>), response (candidate + <_rep_end_>), reward and return.

Each set is shuffled with a seed derived from `relabel.seed`, the method and the split.
"""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd

from dorl.text import REP_END, dt_line, line, prompt

METHOD_SETS = ("tf_top", "tf_all", "dt", "ilql")


def shuffled(frame: pd.DataFrame, seed: int, method: str, split: str) -> pd.DataFrame:
    rng = np.random.default_rng([seed, zlib.crc32(f"{method}/{split}".encode())])
    return frame.iloc[rng.permutation(len(frame))].reset_index(drop=True)


def method_sets(table: pd.DataFrame, tokens: list[str], seed: int, split: str) -> dict[str, pd.DataFrame]:
    """`table`: the candidates table of one split; `tokens[k]`: the DT token of return k."""
    top = len(tokens) - 1
    ctx, cand, ret = table["context"].tolist(), table["candidate"].tolist(), table["return"].tolist()

    def plain(rows) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "text": [line(ctx[i], cand[i]) for i in rows],
                "context": [ctx[i] for i in rows],
                "response": [cand[i] for i in rows],
                "return": np.asarray([ret[i] for i in rows], dtype=np.int64),
            }
        )

    every = range(len(table))
    sets = {
        "tf_top": plain([i for i in every if ret[i] == top]),
        "tf_all": plain(every),
        "dt": pd.DataFrame(
            {
                "text": [dt_line(ctx[i], cand[i], tokens[ret[i]]) for i in every],
                "context": ctx,
                "response": cand,
                "return": np.asarray(ret, dtype=np.int64),
            }
        ),
        "ilql": pd.DataFrame(
            {
                "prompt": [prompt(c) for c in ctx],
                "response": [c + REP_END for c in cand],
                "reward": table["reward"].astype(np.float64).to_numpy(),
                "return": np.asarray(ret, dtype=np.int64),
            }
        ),
    }
    return {m: shuffled(f, seed, m, split) for m, f in sets.items()}
