"""dpo, the specification: DPO's sigmoid loss on the best and the worst candidate of each context.

- Training set: per context the highest-reward candidate (chosen) and the lowest (rejected), ties broken by the
  lower candidate index; a context whose candidates all scored the same is skipped.
- Loss and gradient: equal to TRL 1.16's `DPOTrainer.compute_loss` on the same batch (TRL tokenizes, collates and
  runs its own reference model; dorl's reference log-probs are computed once, before training), with and
  without cDPO's label smoothing (TRL 1.16 keeps that formula as its `aot` loss for one pair at a time).
- Config section `dpo` (`dpo.train` for the optimisation: the DPO paper's lr, batch and warm-up); evaluated like tf.
"""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from dorl import config, methods
from dorl.engine.dist import Dist
from dorl.methods.dpo import dpo_loss
from dorl.methods.preference import encode_pairs
from dorl.text import prompt
from tests.methods import peers
from tests.methods.helpers import CTX

BETA = 0.3  # not TRL's default 0.1: a test that dropped β would still pass at the default


def scored(contexts: list[list[tuple[str, float]]]) -> pd.DataFrame:
    """A candidates table: each context's (candidate, reward) list, candidate 0 first."""
    rows = [(f"d{i}", 1, f"{CTX}<_cus_start_>case {i}<_cus_end_>", k, c, r)
            for i, cands in enumerate(contexts) for k, (c, r) in enumerate(cands)]  # fmt: skip
    df = pd.DataFrame(rows, columns=["dialogue_id", "turn_index", "context", "candidate_index", "candidate", "reward"])
    return df.assign(response=df["candidate"], **{"return": (df["reward"] > 0.5).astype(int)})


def test_training_set_pairs_the_best_and_the_worst_candidate_and_skips_ties():
    m = methods.get("dpo", config.load())
    cands = scored([
        [("human", 1.0), ("good", 0.9), ("bad", 0.1), ("worse", 0.05)],
        [("human", 1.0), ("twin", 1.0), ("low", 0.2), ("low too", 0.2)],  # ties: the lower index wins both ends
        [("human", 0.4), ("same", 0.4)],  # no preference: skipped
    ])  # fmt: skip
    rows = m.training_set(cands, return_bins=2)
    assert rows["chosen"].tolist() == ["human<_rep_end_>", "human<_rep_end_>"]
    assert rows["rejected"].tolist() == ["worse<_rep_end_>", "low<_rep_end_>"]
    assert rows["prompt"].tolist() == [prompt(c) for c in cands["context"].unique()[:2]]
    assert rows["chosen_reward"].tolist() == [1.0, 1.0] and rows["rejected_reward"].tolist() == [0.05, 0.2]


def test_two_dialogues_opening_alike_are_two_contexts():
    m = methods.get("dpo", config.load())
    cands = scored([[("a", 1.0), ("b", 0.0)], [("c", 1.0), ("d", 0.5)]]).assign(context="<_soc_>")
    assert m.training_set(cands, return_bins=2)["rejected"].tolist() == ["b<_rep_end_>", "d<_rep_end_>"]


def test_settings():
    m = methods.get("dpo", config.load(sets=["dpo.beta=0.5", "dpo.label_smoothing=0.1"]))
    assert m.config_section == "dpo.train" and m.train_config().lr == 1e-6 and m.train_config().batch_size == 64
    assert m.config()["dpo"] == {"beta": 0.5, "label_smoothing": 0.1}
    with pytest.raises(Exception, match="label_smoothing"):
        config.load(sets=["dpo.label_smoothing=0.5"])


# ---------------------------------------------------------------- equal to TRL


def one_process() -> Dist:
    return Dist(rank=0, world=1, local_rank=0, device=torch.device("cpu"))


def pairs(data_artifact) -> pd.DataFrame:
    """Twelve contexts of the fixture dialogues, each with the human response and two others."""
    ex = pd.read_parquet(data_artifact.path("examples/train.parquet")).head(12)
    others = ex["response"].tolist()
    contexts = [[(r, 1.0), (others[(i + 3) % 12], 0.5), (others[(i + 7) % 12], 0.25)]
                for i, r in enumerate(ex["response"])]  # fmt: skip
    cands = scored(contexts).assign(context=[c for c in ex["context"] for _ in range(3)])
    return methods.get("dpo", config.load()).training_set(cands, return_bins=2)


def dorl_batch(m, tok, ref, rows):
    """dorl's batch of `rows`: its tokens and the reference log-probs computed once (`DPO.reference`)."""

    class Module(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lm = ref

    m.bind(tok)
    ex = encode_pairs(tok, *m.pairs(rows), max_length=512)
    cols = m.reference(Module(), {"train": ex}, one_process())["train"]
    for k, v in cols.items():
        ex.fields[k] = v
    return ex, m.collate([ex[i] for i in range(len(ex))])


def trl_batch(tmp_path, tok, ref, policy, rows, **kw):
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    data = Dataset.from_dict({k: rows[k].tolist() for k in ("prompt", "chosen", "rejected")})
    trainer = DPOTrainer(model=policy, ref_model=ref, args=peers.args(DPOConfig, tmp_path, len(rows), **kw),
                         train_dataset=data, processing_class=tok)  # fmt: skip
    prepared = [trainer.train_dataset[i] for i in range(len(rows))]
    return trainer, prepared, trainer.data_collator(prepared)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from tests.fixtures import make_tiny_model_dir

    path = tmp_path_factory.mktemp("dpo-tiny")
    make_tiny_model_dir(path, seed=0)
    return path


def test_loss_and_gradient_equal_trl_dpo(tmp_path, tiny, data_artifact):
    ref, policy = peers.models(tiny)
    tok = peers.tokenizer(tiny)
    rows = pairs(data_artifact)
    m = methods.get("dpo", config.load(sets=[f"dpo.beta={BETA}"]))
    ex, batch = dorl_batch(m, tok, ref, rows)
    trainer, prepared, theirs = trl_batch(tmp_path, tok, ref, policy, rows, beta=BETA)
    for i, p in enumerate(prepared):  # the same tokens: TRL's data path and dorl's
        a, b = int(ex[i]["prompt_len"]), int(ex[i]["prompt_len"] + ex[i]["first_len"])
        assert ex[i]["input_ids"][:a].tolist() == p["prompt_ids"]
        assert ex[i]["input_ids"][a:b].tolist() == p["chosen_ids"]
        assert ex[i]["input_ids"][b:].tolist() == p["rejected_ids"]

    ours, our_grads = peers.loss_and_grads(policy, lambda: dpo_loss(policy, **batch, beta=BETA, label_smoothing=0)[0])
    want, trl_grads = peers.loss_and_grads(policy, lambda: trainer.compute_loss(trainer.model, theirs))
    assert ours == pytest.approx(want, rel=1e-5)
    assert abs(want - torch.nn.functional.softplus(torch.tensor(0.0)).item()) > 1e-3  # the policy has moved
    peers.assert_same_grads(our_grads, trl_grads)


def test_label_smoothing_is_conservative_dpo_as_trl_computes_it(tmp_path, tiny, data_artifact):
    """cDPO's -(1-ε)·logσ(βΔ) - ε·logσ(-βΔ): TRL 1.16's sigmoid loss ignores `label_smoothing`; its `aot` loss
    computes this formula for a batch of one pair (sorting one pair changes nothing)."""
    eps = 0.2
    ref, policy = peers.models(tiny)
    tok = peers.tokenizer(tiny)
    rows = pairs(data_artifact).head(4)
    m = methods.get("dpo", config.load(sets=[f"dpo.beta={BETA}", f"dpo.label_smoothing={eps}"]))
    _, batch = dorl_batch(m, tok, ref, rows)
    trainer, prepared, _ = trl_batch(tmp_path, tok, ref, policy, rows, beta=BETA, loss_type=["aot"],
                                     label_smoothing=eps)  # fmt: skip

    def trl_mean():
        return sum(trainer.compute_loss(trainer.model, trainer.data_collator([p])) for p in prepared) / len(prepared)

    ours, our_grads = peers.loss_and_grads(policy, lambda: dpo_loss(policy, **batch, beta=BETA, label_smoothing=eps)[0])
    want, trl_grads = peers.loss_and_grads(policy, trl_mean)
    assert ours == pytest.approx(want, rel=1e-5)
    peers.assert_same_grads(our_grads, trl_grads)
    plain = float(dpo_loss(policy, **batch, beta=BETA, label_smoothing=0)[0])
    assert abs(plain - ours) > 1e-3  # ε changes the loss
