"""tf_all, the specification: fine-tune the base model on every relabelled candidate, as plain lines
(context + <_rep_start_> + candidate + <_rep_end_>), whatever its return. Config section `finetune`;
evaluated like tf."""

from dorl import config, methods
from dorl.text import prompt
from tests.methods.helpers import CTX, candidates


def test_training_set_is_every_candidate():
    m = methods.get("tf_all", config.load())
    every = m.training_set(candidates([1, 1, 0]), return_bins=2)
    assert every["text"].tolist() == [CTX + f"<_rep_start_>{c}<_rep_end_>" for c in candidates([1, 1, 0])["candidate"]]
    assert every["return"].tolist() == [1, 1, 0]
    assert m.prompt(CTX, {}) == prompt(CTX)
