"""tf_human: the same-recipe control. Fine-tune the base model on the human responses alone (candidate 0 of each
context in relabel's table), as plain lines, with the recipe of the line methods: the `finetune` section, loss on
the response, keep-best by validation loss, evaluated like tf.

It answers the question every method's gain raises: how much of it is a second round of fine-tuning on (context,
response) lines, which tf_top, tf_all and dt get and tf does not? A method beats offline RL's premise only where
it beats tf_human too.

Same steps: the human lines are fewer than tf_top's (the top bin holds the human response and the candidates above
relabel.threshold), so the same epochs would be fewer optimizer steps. Unless finetune.max_steps is set, tf_human
trains as many steps as tf_top trains on the same relabel artifact (finetune.epochs over tf_top's training lines),
and records them as its max_steps (the configuration its manifest keeps).
"""

from __future__ import annotations

import dataclasses

from dorl.config import TrainConfig
from dorl.errors import DataError
from dorl.methods.lines import Lines
from dorl.store import Artifact

MATCHED = "tf_top"  # the method whose optimizer steps the control trains for


class TfHuman(Lines):
    def __init__(self, cfg, name):
        super().__init__(cfg, name)
        self._steps: int | None = None

    def rows(self, candidates, return_bins: int):
        return candidates["candidate_index"] == 0

    def check_inputs(self, data: Artifact, base: Artifact | None) -> None:
        super().check_inputs(data, base)
        if not data.info.get("candidates", {}).get("human", True):
            raise DataError(
                f"{data.uri}: tf_human trains on the human responses (candidate 0), which a relabel artifact of your "
                "own scored rows alone does not have; leave tf_human out of pipeline.methods for it"
            )
        if self.cfg.finetune.max_steps is None:
            self._steps = matched_steps(self.cfg, data)

    def train_config(self) -> TrainConfig:
        tc = self.cfg.finetune
        return tc if self._steps is None else dataclasses.replace(tc, max_steps=self._steps)

    def info(self) -> dict:
        return {**super().info(), **({"steps_matched_to": MATCHED} if self._steps is not None else {})}


def matched_steps(cfg, data: Artifact) -> int:
    """The optimizer steps tf_top trains on the relabel artifact `data`: finetune.epochs x its steps per epoch."""
    from dorl import methods
    from dorl.engine.data import steps_per_epoch
    from dorl.methods.training_set import read_candidates, relabel_facts

    _, bins = relabel_facts(data)
    top = methods.get(MATCHED, cfg)
    lines = int(top.rows(read_candidates(data, "train", bins), bins).sum())
    return cfg.finetune.epochs * steps_per_epoch(lines, cfg.finetune.batch_size)
