"""tf_all: fine-tune the base model on every relabelled candidate, as plain lines.

Trains with the `finetune` section; evaluated like tf (context + <_rep_start_>, greedy then beam search).
"""

from __future__ import annotations

import numpy as np

from dorl.methods.lines import Lines


class TfAll(Lines):
    def rows(self, candidates, return_bins: int):
        return np.ones(len(candidates), dtype=bool)
