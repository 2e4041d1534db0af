"""A method with settings of its own, written as a user adds one: this module and one registry line
(tests/methods/test_registry.py adds the line). It is tf_top at a threshold of its choosing: its lines are the
candidates whose reward exceeds `reward_above.threshold`.

    "reward_above": Entry("tests.methods.reward_above:RewardAbove", "reward_above",
                          "tests.methods.reward_above:RewardAboveConfig"),
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from dorl.config.loader import param
from dorl.methods.lines import Lines


@dataclass
class RewardAboveConfig:
    """Lines of the candidates whose reward exceeds a threshold."""

    RANGES: ClassVar[dict] = {"threshold": "[0, 1]"}
    threshold: float = param(0.3, "Candidates whose reward exceeds this become training lines.")


class RewardAbove(Lines):
    """Trains with the `finetune` settings (the default), chooses its lines with its own."""

    def rows(self, candidates, return_bins: int):
        return candidates["reward"] > self.settings().threshold
