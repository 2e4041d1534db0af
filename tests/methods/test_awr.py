"""awr, the specification: teacher forcing on every candidate, each line's tokens weighted by
min(exp(advantage / temperature), max_weight), the weights of a training step divided by their mean over it.

- Advantage = the candidate's score (`awr.score`: return or reward) minus its context's mean score
  (`awr.baseline: context_mean`) or the score itself (`none`); standardised with the training set's mean and
  std (`awr.standardize`, AWR's code).
- Loss and gradient of a step of two micro-batches, through dorl's collate, `before_step` and loss: equal to a
  direct computation written here from HF's logits, line by line.
- With equal weights (a huge temperature) it is tf_all's loss.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from dorl import config, methods
from dorl.engine.causal_lm import CausalLMLoss, collate_causal
from dorl.methods.awr import advantages
from dorl.methods.lines import encode_lines
from tests.methods import peers
from tests.methods.helpers import CTX
from tests.methods.test_dpo import one_process

T, CLIP = 0.5, 3.0  # not the defaults (1, 20): at T = 0.5 some weights reach the clip


def table(rewards: list[list[float]]) -> pd.DataFrame:
    rows = [(f"d{i}", 1, f"{CTX}case {i}", k, f"answer {i}.{k}", r)
            for i, rs in enumerate(rewards) for k, r in enumerate(rs)]  # fmt: skip
    df = pd.DataFrame(rows, columns=["dialogue_id", "turn_index", "context", "candidate_index", "candidate", "reward"])
    return df.assign(response=df["candidate"], **{"return": (df["reward"] > 0.5).astype(int)})


def test_advantage_is_the_score_minus_its_contexts_mean_score():
    t = table([[1.0, 0.5, 0.0], [1.0, 1.0]])
    assert advantages(t, "reward", "context_mean").tolist() == [0.5, 0.0, -0.5, 0.0, 0.0]
    assert advantages(t, "return", "context_mean").tolist() == pytest.approx([2 / 3, -1 / 3, -1 / 3, 0.0, 0.0])
    assert advantages(t, "reward", "none").tolist() == [1.0, 0.5, 0.0, 1.0, 1.0]
    m = methods.get("awr", config.load(sets=["awr.score=reward"]))
    rows = m.training_set(t, return_bins=2)
    assert rows["advantage"].tolist() == [0.5, 0.0, -0.5, 0.0, 0.0] and len(rows) == len(t)  # every candidate


def test_settings_are_checked():
    with pytest.raises(Exception, match="awr.temperature"):
        config.load(sets=["awr.temperature=0"])
    m = methods.get("awr", config.load(sets=["awr.max_weight=5"]))
    assert m.config_section == "awr.train" and m.config()["awr"]["max_weight"] == 5.0


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from tests.fixtures import make_tiny_model_dir

    path = tmp_path_factory.mktemp("awr-tiny")
    make_tiny_model_dir(path, seed=0)
    return path


def step(tiny, data_artifact, *sets: str):
    """dorl's training step over two micro-batches of 6 lines, the first 12 of 18: (loss, gradients, model, the
    step's lines, their advantages, the advantages of all 18, tokenizer)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ex = pd.read_parquet(data_artifact.path("examples/train.parquet")).head(6)
    others = ex["response"].tolist()[::-1]
    t = table([[1.0, 0.6, 0.1], [0.9, 0.8, 0.0], [1.0, 0.2, 0.1]] * 2).assign(
        context=[c for c in ex["context"] for _ in range(3)],
        candidate=[x for r, o in zip(ex["response"], others, strict=True) for x in (r, o, r[: len(r) // 2])],
    )
    m = methods.get("awr", config.load(sets=["awr.score=reward", f"awr.temperature={T}", f"awr.max_weight={CLIP}",
                                             *sets]))  # fmt: skip
    tok = AutoTokenizer.from_pretrained(tiny)
    m.bind(tok)
    rows = m.training_set(t, return_bins=2)
    train, _ = m.datasets(None, tok, {"train": rows, "validation": rows})
    lm = AutoModelForCausalLM.from_pretrained(tiny).eval()
    module = CausalLMLoss(lm)
    batches = [m.collate([train[i] for i in range(k, k + 6)]) for k in (0, 6)]
    m.before_step(module, batches, one_process())
    counts = [m.target_count(b) for b in batches]

    def loss():
        return sum(module(**b)[0] * n for b, n in zip(batches, counts, strict=True)) / sum(counts)

    value, grads = peers.loss_and_grads(lm, loss)
    adv = rows["advantage"].to_numpy()
    return value, grads, lm, rows["text"].tolist()[:12], adv[:12], adv, tok


def direct(lm, tok, texts, weights) -> torch.Tensor:
    """Σ_lines w · Σ_response tokens -log p / Σ_lines response tokens, from HF's logits of each line alone."""
    total, count = 0.0, 0
    ex = encode_lines(tok, texts, 512)
    for i, w in enumerate(weights):
        ids = torch.tensor(ex[i]["input_ids"], dtype=torch.long)[None]
        start = int(ex[i]["label_start"])
        logp = torch.log_softmax(lm(input_ids=ids).logits[0, :-1].float(), -1)
        nll = -logp[torch.arange(ids.shape[1] - 1), ids[0, 1:]][start - 1 :]
        total, count = total + w * nll.sum(), count + len(nll)
    return total / count


def test_a_step_equals_the_direct_computation(tiny, data_artifact):
    got, got_grads, lm, texts, adv, every, tok = step(tiny, data_artifact)
    z = (adv - every.mean()) / (every.std() + 1e-5)  # standardised with the whole training set's statistics
    w = np.minimum(np.exp(z / T), CLIP)
    assert (w == CLIP).any() and (w < 1).any()  # the clip and the temperature both in play
    w = w / w.mean()  # over the step: both micro-batches
    want, want_grads = peers.loss_and_grads(lm, lambda: direct(lm, tok, texts, w))
    assert got == pytest.approx(want, rel=1e-5)
    peers.assert_same_grads(got_grads, want_grads)
    unweighted = float(direct(lm, tok, texts, np.ones(len(w))).detach())
    assert abs(unweighted - got) > 1e-3


def test_equal_weights_are_tf_alls_loss(tiny, data_artifact):
    got, _, lm, texts, _, _, tok = step(tiny, data_artifact, f"awr.temperature={1e9}")
    ex = encode_lines(tok, texts, 512)
    with torch.no_grad():
        loss, _ = CausalLMLoss(lm)(**collate_causal([ex[i] for i in range(len(ex))]))
    assert got == pytest.approx(float(loss), rel=1e-5)
    assert math.isfinite(got)
