"""awr: advantage-weighted regression (Peng et al. 2019; A-LoL, Baheti et al. 2024, for language models): teacher
forcing on every candidate, each weighted by how much better than its context's other candidates it scored.

Training set: every candidate as a line (as tf_all), with its score (`awr.score`: the binned `return` or the raw
`reward`) and its advantage A = score − the mean score of its context's candidates (`awr.baseline:
context_mean`, the Monte-Carlo value of the candidates' policy at that context, A-LoL's baseline with the
candidates as its samples) or the score itself (`none`). With `awr.standardize` (AWR's code) the advantages are
standardised with the training set's mean and standard deviation: (A − mean) / (std + 1e-5).

Loss: each line's token cross-entropies weighted by w = min(exp(A / temperature), max_weight), the weights of a
training step divided by their mean over the step's lines (every micro-batch and process), then the mean over
the step's target tokens, as for tf_all (with equal weights it is tf_all's loss):

    loss = Σ_lines (w / mean_step(w)) · Σ_tokens CE  /  Σ_lines tokens

Validation weighs by w over the validation set's mean weight (a fixed objective for keep-best, on training's
scale). The weight is a property of the data, not of the
model: AWR costs what tf_all costs. Settings: the `awr` section (`AWRConfig`, below; `awr.train` its
optimisation, the other line methods' defaults).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import ClassVar, Literal

import numpy as np

from dorl.config.loader import param
from dorl.methods.lines import FinetuneConfig, Lines
from dorl.methods.preference import context_ids
from dorl.methods.registry import entry
from dorl.store import Artifact

STD_EPS = 1e-5  # AWR's ADV_EPS


@dataclass
class AWRConfig:
    """Advantage-weighted teacher forcing on every candidate (the run config's `awr` section)."""

    RANGES: ClassVar[dict] = {"temperature": "> 0", "max_weight": "> 0"}
    train: FinetuneConfig = param(factory=FinetuneConfig, help="Optimisation settings of AWR (as the line methods').")
    score: Literal["return", "reward"] = param(
        "return", "What a candidate scored: its binned 'return' (as DT and ILQL) or its raw 'reward'."
    )
    baseline: Literal["context_mean", "none"] = param(
        "context_mean",
        "Advantage = score minus the mean score of the context's candidates ('context_mean'), or the score itself "
        "('none').",
    )
    standardize: bool = param(
        True, "Standardise the advantages with the training set's mean and std before weighting (AWR's code)."
    )
    temperature: float = param(1.0, "Weight = exp(advantage / temperature) (AWR's code: 1.0, on standardised ones).")
    max_weight: float = param(20.0, "Upper clip of the weights (AWR's code: 20).")


def advantages(candidates, score: str, baseline: str) -> np.ndarray:
    values = candidates[score].to_numpy(dtype=np.float64)
    if baseline == "none":
        return values
    ctx = context_ids(candidates)
    means = np.bincount(ctx, weights=values) / np.bincount(ctx)
    return values - means[ctx]


def weights(adv: np.ndarray, temperature: float, max_weight: float) -> np.ndarray:
    """min(exp(adv / temperature), max_weight), without overflowing."""
    return np.exp(np.minimum(adv / temperature, math.log(max_weight)))


class AWR(Lines):
    loss_label = "advantage-weighted cross-entropy (nats/token)"
    config_section = "awr.train"

    def train_config(self):
        return self.settings().train

    def config(self) -> dict:
        extra = {k: v for k, v in asdict(self.settings()).items() if k != "train"}
        return {"method": self.name, "train": asdict(self.train_config()), entry(self.name).section: extra}

    def rows(self, candidates, return_bins: int):
        return np.ones(len(candidates), dtype=bool)

    def training_set(self, candidates, return_bins: int):
        s = self.settings()
        frame = super().training_set(candidates, return_bins)
        frame["reward"] = candidates["reward"].to_numpy(dtype=np.float64)
        frame["advantage"] = advantages(candidates, s.score, s.baseline)
        return frame

    def datasets(self, data: Artifact, tok, rows: dict):
        s = self.settings()
        train, val = super().datasets(data, tok, rows)
        adv = rows["train"]["advantage"].to_numpy(dtype=np.float64)
        mean, std = float(adv.mean()), float(adv.std())  # the training set's, for both splits
        self._info["advantage"] = {"score": s.score, "baseline": s.baseline, "mean": mean, "std": std,
                                   "standardized": s.standardize}  # fmt: skip
        for split, ex in (("train", train), ("validation", val)):
            a = rows[split]["advantage"].to_numpy(dtype=np.float64)
            if s.standardize:
                a = (a - mean) / (std + STD_EPS)
            w = weights(a, s.temperature, s.max_weight)
            if len(w):
                self._info[split]["weight"] = {"min": float(w.min()), "mean": float(w.mean()), "max": float(w.max()),
                                               "clipped": float(np.mean(w >= s.max_weight))}  # fmt: skip
            # Over its split's mean: validation's fixed objective on the scale of training's (whose steps divide
            # by their own mean again, in `before_step`)
            ex.fields["weight"] = w / w.mean() if len(w) else w
        return train, val

    def collate(self, examples: list[dict]) -> dict:
        import torch

        batch = super().collate(examples)
        batch["weight"] = torch.tensor([float(e["weight"]) for e in examples], dtype=torch.float64)
        return batch

    def before_step(self, module, batches: list[dict], dist) -> None:
        """Divide the step's weights by their mean over every line of the step (all processes)."""
        total = sum(float(b["weight"].sum()) for b in batches)
        total, count = dist.all_sum([total, float(sum(len(b["weight"]) for b in batches))])
        mean = total / count
        for b in batches:
            b["weight"] = b["weight"] / mean
