"""tf_top: fine-tune the base model on the candidates in the top return bin, as plain lines.

The top bin holds the human response (always) and the candidates whose reward exceeds
`relabel.threshold` (with the default edges). Trains with the `finetune` section; evaluated
like tf (context + <_rep_start_>, greedy then beam search).
"""

from __future__ import annotations

from dorl.methods.lines import Lines


class TfTop(Lines):
    def rows(self, candidates, return_bins: int):
        return candidates["return"] == return_bins - 1
