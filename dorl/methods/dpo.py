"""dpo: Direct Preference Optimization (Rafailov et al. 2023) on the best and worst candidate of each context.

Training set: for every context of the scored candidates, the candidate with the highest reward (chosen: the
human response, reward 1, unless a generated one ties it) and the one with the lowest (rejected), ties broken by
the lower candidate index; a context whose best and worst rewards are equal has no preference and is skipped.
Rows: prompt (context + <_rep_start_>), chosen and rejected (candidate + <_rep_end_>), their rewards.

Loss, per pair, as TRL 1.16's `DPOTrainer` (`loss_type="sigmoid"`), with conservative DPO's label smoothing ε
(Mitchell 2023; earlier TRL releases' sigmoid loss; TRL 1.16 keeps that formula as `loss_type="aot"` for a batch of
one pair):

    Δ = (log π(chosen) − log π_ref(chosen)) − (log π(rejected) − log π_ref(rejected))
    loss = −(1 − ε) · log σ(β Δ) − ε · log σ(−β Δ),   averaged over the pairs of the step

log π = the completion's summed token log-probs (`dorl.engine.causal_lm.sequence_logps`); π_ref = the base model,
its log-probs computed once before training (`dorl.methods.preference`) and recorded in the training set as
`ref_chosen` / `ref_rejected`. Settings: the `dpo` section (`DPOConfig`, below; `dpo.train` its optimisation,
the DPO paper's by default). Evaluated like tf: greedy, then beam search.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import ClassVar, Literal

import numpy as np

from dorl.config import TrainConfig
from dorl.config.loader import default, param
from dorl.methods.lines import FinetuneConfig
from dorl.methods.preference import Preference, completion, context_ids, float_fields, split_pair
from dorl.text import prompt


@dataclass
class DPOTrainConfig(FinetuneConfig):
    """DPO's optimisation: the DPO paper's (Appendix B: lr 1e-6, batch 64, 150 warm-up steps, then constant;
    RMSprop there, AdamW here), dorl's methods' otherwise (5 epochs, 512 tokens, the best checkpoint kept)."""

    lr: float = default(TrainConfig, "lr", 1e-6)
    batch_size: int = default(TrainConfig, "batch_size", 64)
    warmup_steps: int = default(TrainConfig, "warmup_steps", 150)
    scheduler: Literal["cosine", "linear", "constant"] = default(TrainConfig, "scheduler", "constant")


@dataclass
class DPOConfig:
    """DPO on the best and worst candidate of each context (the run config's `dpo` section)."""

    RANGES: ClassVar[dict] = {"beta": "> 0", "label_smoothing": "[0, 0.5)"}
    train: DPOTrainConfig = param(factory=DPOTrainConfig, help="Optimisation settings of DPO (batch = pairs).")
    beta: float = param(0.1, "β: the inverse strength of the pull toward the reference model (DPO paper: 0.1).")
    label_smoothing: float = param(
        0.0,
        "ε of conservative DPO (cDPO): the chance a preference label is wrong; the loss becomes "
        "-(1-ε)·logσ(βΔ) - ε·logσ(-βΔ). 0 = DPO.",
    )


def dpo_loss(lm, input_ids, labels, ref_chosen, ref_rejected, *, beta: float, label_smoothing: float, **_):
    """(mean loss over the batch's pairs, stats): rows 0..B-1 of `input_ids` are the chosen sequences, B..2B-1 the
    rejected ones (TRL's layout)."""
    import torch.nn.functional as F

    from dorl.engine.causal_lm import sequence_logps

    chosen, rejected = sequence_logps(lm, input_ids, labels).chunk(2)
    delta = (chosen - ref_chosen.to(chosen.dtype)) - (rejected - ref_rejected.to(rejected.dtype))
    z = beta * delta
    losses = -(1 - label_smoothing) * F.logsigmoid(z) - label_smoothing * F.logsigmoid(-z)
    stats = {"reward_accuracy": (delta > 0).float().mean(), "reward_margin": z.detach().mean()}
    return losses.mean(), stats


class DPO(Preference):
    loss_label = "DPO loss per pair"
    config_section = "dpo.train"
    reference_columns = ("ref_chosen", "ref_rejected")

    def training_set(self, candidates, return_bins: int):
        import pandas as pd

        frame = candidates.reset_index(drop=True).assign(_ctx=context_ids(candidates))
        by = ["_ctx", "reward", "candidate_index"]
        best = frame.sort_values(by, ascending=[True, False, True], kind="stable").groupby("_ctx").head(1)
        worst = frame.sort_values(by, ascending=[True, True, True], kind="stable").groupby("_ctx").head(1)
        best, worst = best.set_index("_ctx").sort_index(), worst.set_index("_ctx").sort_index()
        keep = (best["reward"] > worst["reward"]).to_numpy()
        best, worst = best[keep], worst[keep]
        return pd.DataFrame(
            {
                "prompt": [prompt(c) for c in best["context"]],
                "chosen": [completion(c) for c in best["candidate"]],
                "rejected": [completion(c) for c in worst["candidate"]],
                "chosen_reward": best["reward"].to_numpy(dtype=np.float64),
                "rejected_reward": worst["reward"].to_numpy(dtype=np.float64),
                "context": best["context"].tolist(),
            }
        )

    def pairs(self, rows):
        return rows["prompt"].tolist(), rows["chosen"].tolist(), rows["rejected"].tolist()

    def collate(self, examples: list[dict]) -> dict:
        from dorl.engine.causal_lm import collate_causal

        chosen, rejected = zip(*(split_pair(e) for e in examples), strict=True)
        batch = collate_causal([*chosen, *rejected], self.pad_id)  # one forward of both, as TRL
        return {**batch, **float_fields(examples, self.reference_columns)}

    def wrap(self, lm):
        from dorl.engine.causal_lm import LMLoss

        s = self.settings()
        return LMLoss(lm, partial(dpo_loss, beta=s.beta, label_smoothing=s.label_smoothing))
