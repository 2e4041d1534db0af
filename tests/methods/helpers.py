"""What the method specifications share: a candidates table written by hand, and a tiny end-to-end run."""

import pandas as pd

from dorl import config

CTX = "<_soc_><_cus_start_>hi<_cus_end_><_rep_start_>hello<_rep_end_><_cus_start_>my jeans<_cus_end_>"
# a few steps of every method on the tiny model: fast, not for quality
FAST = [
    "finetune.max_steps=2", "finetune.batch_size=8", "finetune.micro_batch_size=8", "finetune.max_length=128",
    "ilql.train.max_steps=2", "ilql.train.batch_size=8", "ilql.train.micro_batch_size=8",
    "ilql.train.max_length=128", "eval.n_examples=4", "eval.batch_size=4", "eval.max_new_tokens=4",
]  # fmt: skip


def candidates(returns, rewards=(1.0, 0.7, 0.0)) -> pd.DataFrame:
    """One split's candidates table: the human response (candidate 0) and two model candidates."""
    return pd.DataFrame(
        {
            "context": [CTX] * 3,
            "candidate_index": [0, 1, 2],
            "candidate": ["I can help with your jeans.", "jeans", ""],
            "reward": list(rewards),
            "return": returns,
        }
    )


def fast_config(*sets: str):
    return config.load(preset="tiny", sets=[*FAST, *sets])


def train_and_evaluate(tmp_path, method: str, relabel, base, data, *sets: str, spy=None):
    """`dorl train` then `dorl evaluate` for `method`, in this process; (model, evaluation) artifacts."""
    from dorl.stages.evaluate import evaluate
    from dorl.stages.train import train

    cfg = fast_config(*sets)
    model = train(cfg, method=method, data_uri=relabel.uri, base_uri=base.uri, out_uri=str(tmp_path / method)).artifact
    ev = evaluate(
        cfg, method=method, model_uri=model.uri, data_uri=data.uri, out_uri=str(tmp_path / f"eval-{method}")
    ).artifact
    return model, ev
