"""kto: Kahneman-Tversky Optimization (Ethayarajh et al. 2024) on every scored candidate, desirable or not.

Training set: every candidate, as TRL's unpaired format: prompt (context + <_rep_start_>), completion
(candidate + <_rep_end_>), label = desirable when its return is the top bin (the human response always is),
with its reward and return; after the rows are shuffled (`relabel.seed`), each gets the completion its KL term
reads: TRL 1.16's pairing, the completions of every `micro_batch_size` consecutive rows rotated by one (row i
takes row i-1's, the first the last's), so a prompt meets another context's completion.

Loss, as TRL 1.16's `KTOTrainer` (`loss_type="kto"`) computes it on a batch:

    r    = log π(completion) − log π_ref(completion)                       (summed over its tokens)
    z0   = max(0, mean over the batch of log π(KL completion) − log π_ref(KL completion)), no gradient
    loss = λ_D · (1 − σ(β (r − z0)))  for a desirable completion,  λ_U · (1 − σ(β (z0 − r)))  otherwise,
           averaged over the batch

π_ref = the base model: both of its log-probs are computed once before training and recorded in the training set
(`ref`, `ref_kl`), which TRL's pairing allows (it is fixed per row). The policy's KL log-probs change every step:
they are one forward pass without gradient over the KL sequences (`before_step`). dorl takes the mean over the
whole optimizer step (every micro-batch of every process) where TRL takes it over one micro-batch of every
process: the same whenever TRL runs without gradient accumulation, and independent of how the step is split.
Settings: the `kto` section (`KTOConfig`, below; `kto.train` its optimisation). Evaluated like tf.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from typing import ClassVar

import numpy as np

from dorl.config import TrainConfig
from dorl.config.loader import default, param
from dorl.methods.lines import FinetuneConfig
from dorl.methods.preference import Preference, completion, float_fields, split_pair
from dorl.store import Artifact
from dorl.text import prompt

log = logging.getLogger("dorl.train")


@dataclass
class KTOTrainConfig(FinetuneConfig):
    """KTO's optimisation: TRL's `KTOConfig` learning rate (1e-6), dorl's methods' otherwise."""

    lr: float = default(TrainConfig, "lr", 1e-6)


@dataclass
class KTOConfig:
    """KTO on every candidate, desirable when its return is the top bin (the run config's `kto` section)."""

    RANGES: ClassVar[dict] = {"beta": "> 0", "desirable_weight": "> 0", "undesirable_weight": "> 0"}
    train: KTOTrainConfig = param(factory=KTOTrainConfig, help="Optimisation settings of KTO.")
    beta: float = param(0.1, "β: the inverse strength of the pull toward the reference model (KTO paper, TRL: 0.1).")
    desirable_weight: float = param(1.0, "λ_D: weight of the desirable completions' losses (KTO paper, TRL: 1).")
    undesirable_weight: float = param(1.0, "λ_U: weight of the undesirable completions' losses (KTO paper, TRL: 1).")


def kl_pairs(completions: list[str], chunk: int) -> list[str]:
    """TRL's KL completions: every `chunk` consecutive rows' completions rotated by one."""
    out = []
    for i in range(0, len(completions), chunk):
        part = completions[i : i + chunk]
        out += [part[-1], *part[:-1]]
    return out


def kl_logps(lm, batch: dict):
    """log π of the batch's KL sequences, without gradient."""
    import torch

    from dorl.engine.causal_lm import sequence_logps

    with torch.no_grad():
        return sequence_logps(lm, batch["kl_input_ids"], batch["kl_labels"])


def kto_loss(lm, input_ids, labels, kl_input_ids, kl_labels, ref, ref_kl, desirable, kl=None, *, beta: float,
             desirable_weight: float, undesirable_weight: float, **_):  # fmt: skip
    """(mean loss over the batch's completions, stats). `kl`: the step's estimate z0 (training, `before_step`);
    None: this batch's own, as TRL computes it."""
    import torch

    from dorl.engine.causal_lm import sequence_logps

    logps = sequence_logps(lm, input_ids, labels)
    if kl is None:
        own = kl_logps(lm, {"kl_input_ids": kl_input_ids, "kl_labels": kl_labels}) - ref_kl.to(logps.dtype)
        kl = own.mean().clamp(min=0)
    kl = torch.as_tensor(kl, dtype=logps.dtype, device=logps.device).detach()
    ratio = logps - ref.to(logps.dtype)
    chosen = desirable_weight * (1 - torch.sigmoid(beta * (ratio - kl)))
    rejected = undesirable_weight * (1 - torch.sigmoid(beta * (kl - ratio)))
    losses = torch.where(desirable, chosen, rejected)
    return losses.mean(), {"kl": kl, "logratio": ratio.detach().mean()}


class KTO(Preference):
    loss_label = "KTO loss per completion"
    config_section = "kto.train"
    reference_columns = ("ref", "ref_kl")

    def training_set(self, candidates, return_bins: int):
        import pandas as pd

        return pd.DataFrame(
            {
                "prompt": [prompt(c) for c in candidates["context"]],
                "completion": [completion(c) for c in candidates["candidate"]],
                "label": (candidates["return"] == return_bins - 1).to_numpy(dtype=bool),
                "reward": candidates["reward"].to_numpy(dtype=np.float64),
                "return": candidates["return"].to_numpy(dtype=np.int64),
                "context": candidates["context"].tolist(),
            }
        )

    def training_sets(self, data: Artifact) -> dict:
        """The shuffled rows, each with its KL completion (paired after the shuffle, as TRL pairs its dataset)."""
        rows = super().training_sets(data)
        chunk = self.train_config().micro_batch_size
        return {split: f.assign(kl_completion=kl_pairs(f["completion"].tolist(), chunk)) for split, f in rows.items()}

    def pairs(self, rows):
        return rows["prompt"].tolist(), rows["completion"].tolist(), rows["kl_completion"].tolist()

    def example_fields(self, rows) -> dict:
        return {"desirable": rows["label"].to_numpy(dtype=bool)}

    def datasets(self, data: Artifact, tok, rows: dict):
        sets = super().datasets(data, tok, rows)
        self._balance(rows["train"]["label"].to_numpy(dtype=bool))
        return sets

    def _balance(self, label: np.ndarray) -> None:
        """TRL's check of Eq. (8) of the KTO paper: λ_D·n_D / (λ_U·n_U) should lie in [1, 4/3]."""
        s = self.settings()
        n_d, n_u = max(int(label.sum()), 1), max(int((~label).sum()), 1)
        self._info["desirable"] = {"desirable": int(label.sum()), "undesirable": int((~label).sum())}
        ratio = s.desirable_weight * n_d / (s.undesirable_weight * n_u)
        self._info["desirable"]["weighted_ratio"] = ratio
        if not 1.0 <= ratio <= 4 / 3:
            lo, hi = n_u * s.undesirable_weight / n_d, n_u * s.undesirable_weight / n_d * 4 / 3
            log.warning(
                "kto: %d desirable and %d undesirable completions weigh %.2f:1 (the KTO paper's Eq. 8 asks for 1 to "
                "4/3); kto.desirable_weight in [%.2f, %.2f] would bring it there", n_d, n_u, ratio, lo, hi,
            )  # fmt: skip

    def sequence_lengths(self, examples: list[dict]) -> list[int]:
        """The completions train; the KL sequences only run forward (as TRL, whose token count leaves them out)."""
        return [int(e["prompt_len"]) + int(e["first_len"]) for e in examples]

    def collate(self, examples: list[dict]) -> dict:
        import torch

        from dorl.engine.causal_lm import collate_causal

        main, kl = zip(*(split_pair(e) for e in examples), strict=True)
        batch = collate_causal(list(main), self.pad_id)
        other = collate_causal(list(kl), self.pad_id)
        batch.update(kl_input_ids=other["input_ids"], kl_labels=other["labels"])
        batch["desirable"] = torch.tensor([bool(e["desirable"]) for e in examples])
        return {**batch, **float_fields(examples, self.reference_columns)}

    def wrap(self, lm):
        from dorl.engine.causal_lm import LMLoss

        s = self.settings()
        fn = partial(kto_loss, beta=s.beta, desirable_weight=s.desirable_weight,
                     undesirable_weight=s.undesirable_weight)  # fmt: skip
        return LMLoss(lm, fn)

    def before_step(self, module, batches: list[dict], dist) -> None:
        """z0 of the step: the mean of log π − log π_ref over every KL sequence of the step, all processes, at 0
        or above, given to each micro-batch's loss."""
        import torch

        total = count = 0.0
        for b in batches:
            diff = kl_logps(module.lm, b).double() - b["ref_kl"].to(torch.float64)
            total, count = total + float(diff.sum()), count + len(diff)
        total, count = dist.all_sum([total, count])
        kl = max(total / max(count, 1.0), 0.0)
        for b in batches:
            b["kl"] = torch.tensor(kl, dtype=torch.float32, device=b["input_ids"].device)
