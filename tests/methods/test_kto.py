"""kto, the specification: KTO's loss on every scored candidate, desirable when its return is the top bin.

- Training set: every candidate as prompt, completion, label; after the shuffle, each row's KL completion is TRL
  1.16's pairing (every `micro_batch_size` rows' completions rotated by one).
- Loss and gradient: equal to TRL 1.16's `KTOTrainer.compute_loss` on the same batch, made by TRL's own data
  path (tokens, KL pairs, collation) with its reference model run by TRL; dorl's reference log-probs (of the
  completions and of the KL completions) are computed once, before training. β, λ_D, λ_U, the reference
  log-probs and the KL term all change the loss (the test uses values where each does).
- The KL estimate of a training step (`before_step`) over one micro-batch is TRL's; over several, their mean.
- Config section `kto` (`kto.train` for the optimisation); evaluated like tf.
"""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from dorl import config, methods
from dorl.methods.kto import kl_logps, kl_pairs, kto_loss
from dorl.methods.preference import encode_pairs
from tests.methods import peers
from tests.methods.helpers import CTX, candidates
from tests.methods.test_dpo import one_process

BETA, DESIRABLE, UNDESIRABLE = 0.3, 1.5, 0.7  # none TRL's default: dropping one would still pass at the defaults
SETS = [f"kto.beta={BETA}", f"kto.desirable_weight={DESIRABLE}", f"kto.undesirable_weight={UNDESIRABLE}"]


def test_training_set_labels_the_top_return_bin_desirable():
    m = methods.get("kto", config.load())
    rows = m.training_set(candidates([2, 1, 0]), return_bins=3)
    assert rows["completion"].tolist() == ["I can help with your jeans.<_rep_end_>", "jeans<_rep_end_>", "<_rep_end_>"]
    assert rows["label"].tolist() == [True, False, False]
    assert rows["prompt"].tolist() == [CTX + "<_rep_start_>"] * 3


def test_kl_completions_rotate_within_each_chunk_as_trl():
    assert kl_pairs(list("abcdefg"), 3) == list("cabfdeg")


def test_settings():
    m = methods.get("kto", config.load(sets=SETS))
    assert m.config_section == "kto.train" and m.train_config().lr == 1e-6
    assert m.config()["kto"] == {"beta": BETA, "desirable_weight": DESIRABLE, "undesirable_weight": UNDESIRABLE}


# ---------------------------------------------------------------- equal to TRL


def rows_of(data_artifact, n: int = 16) -> pd.DataFrame:
    """`n` completions of the fixture's contexts: human responses (desirable) and other contexts' (not)."""
    ex = pd.read_parquet(data_artifact.path("examples/train.parquet")).head(n)
    resp = ex["response"].tolist()
    cands = pd.DataFrame(
        {
            "context": ex["context"],
            "candidate_index": 0,
            "candidate": [r if i % 3 else resp[(i + 5) % n] for i, r in enumerate(resp)],
            "reward": [1.0 if i % 3 else 0.1 for i in range(n)],
            "return": [1 if i % 3 else 0 for i in range(n)],
        }
    )
    return methods.get("kto", config.load()).training_set(cands, return_bins=2)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from tests.fixtures import make_tiny_model_dir

    path = tmp_path_factory.mktemp("kto-tiny")
    make_tiny_model_dir(path, seed=0)
    return path


def setup(tmp_path, tiny, data_artifact, batch: int = 8):
    """dorl's batch and TRL's of the same rows, from each one's data path, with the models ordered so that the
    KL term is positive (else it is clamped to 0 and the KL completions' reference log-probs would not count)."""
    from datasets import Dataset
    from trl import KTOConfig, KTOTrainer

    ref, policy = peers.models(tiny)
    tok = peers.tokenizer(tiny)
    rows = rows_of(data_artifact)
    rows = rows.assign(kl_completion=kl_pairs(rows["completion"].tolist(), batch))
    m = methods.get("kto", config.load(sets=[*SETS, f"kto.train.micro_batch_size={batch}"]))
    m.bind(tok)
    ex = encode_pairs(tok, *m.pairs(rows), max_length=512)
    ex.fields["desirable"] = rows["label"].to_numpy()

    def with_reference(ref_lm):
        module = torch.nn.Module()
        module.lm = ref_lm
        for k, v in m.reference(module, {"train": ex}, one_process())["train"].items():
            ex.fields[k] = v
        return m.collate([ex[i] for i in range(batch)])

    ours = with_reference(ref)
    if float((kl_logps(policy, ours) - ours["ref_kl"]).mean()) <= 0:
        ref, policy = policy, ref
        ours = with_reference(ref)
    data = Dataset.from_dict({"prompt": rows["prompt"].tolist(), "completion": rows["completion"].tolist(),
                              "label": rows["label"].tolist()})  # fmt: skip
    args = peers.args(KTOConfig, tmp_path, batch, beta=BETA, desirable_weight=DESIRABLE,
                      undesirable_weight=UNDESIRABLE)  # fmt: skip
    trainer = KTOTrainer(model=policy, ref_model=ref, args=args, train_dataset=data, processing_class=tok)
    prepared = [trainer.train_dataset[i] for i in range(batch)]
    for i, p in enumerate(prepared):  # the same tokens and KL pairs: TRL's data path and dorl's
        a, b = int(ex[i]["prompt_len"]), int(ex[i]["prompt_len"] + ex[i]["first_len"])
        assert ex[i]["input_ids"][:a].tolist() == p["prompt_ids"]
        assert ex[i]["input_ids"][a:b].tolist() == p["completion_ids"]
        assert ex[i]["input_ids"][b:].tolist() == p["KL_completion_ids"]
    return m, policy, ours, trainer, trainer.data_collator(prepared)


def test_loss_and_gradient_equal_trl_kto(tmp_path, tiny, data_artifact):
    m, policy, ours, trainer, theirs = setup(tmp_path, tiny, data_artifact)
    assert ours["desirable"].any() and not ours["desirable"].all()
    fn = dict(beta=BETA, desirable_weight=DESIRABLE, undesirable_weight=UNDESIRABLE)
    got, got_grads = peers.loss_and_grads(policy, lambda: kto_loss(policy, **ours, **fn)[0])
    want, want_grads = peers.loss_and_grads(policy, lambda: trainer.compute_loss(trainer.model, theirs))
    assert got == pytest.approx(want, rel=1e-5)
    peers.assert_same_grads(got_grads, want_grads)
    # the KL term is in play (positive, unclamped) and matters
    kl = float(kto_loss(policy, **ours, **fn)[1]["kl"])
    assert kl > 1e-3
    assert float(kto_loss(policy, **ours, kl=0.0, **fn)[0]) != pytest.approx(want, rel=1e-3)


def test_the_steps_kl_estimate_is_trls_on_one_micro_batch_and_the_mean_over_several(tmp_path, tiny, data_artifact):
    m, policy, ours, trainer, theirs = setup(tmp_path, tiny, data_artifact)
    module = torch.nn.Module()
    module.lm = policy
    batch = dict(ours)
    m.before_step(module, [batch], one_process())
    want = float(trainer.compute_loss(trainer.model, theirs))
    fn = dict(beta=BETA, desirable_weight=DESIRABLE, undesirable_weight=UNDESIRABLE)
    assert float(kto_loss(policy, **batch, **fn)[0]) == pytest.approx(want, rel=1e-5)
    # two halves of the batch: one estimate, their mean (not each half's own)
    halves = [{k: v[:4] if torch.is_tensor(v) else v for k, v in ours.items()},
              {k: v[4:] if torch.is_tensor(v) else v for k, v in ours.items()}]  # fmt: skip
    m.before_step(module, halves, one_process())
    assert float(halves[0]["kl"]) == float(halves[1]["kl"]) == pytest.approx(float(batch["kl"]), rel=1e-6)
