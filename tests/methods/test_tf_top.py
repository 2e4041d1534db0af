"""tf_top, the specification: fine-tune the base model on the candidates in the top return bin.

- Training set: every candidate whose return is the top bin (the human response always is; with the
  default edges, the candidates with reward > relabel.threshold), as plain lines
  context + <_rep_start_> + candidate + <_rep_end_>.
- Config section `finetune`; evaluated like tf (context + <_rep_start_>, greedy then beam search).
"""

from dorl import config, methods
from dorl.text import prompt
from tests.methods.helpers import CTX, candidates


def test_training_set_is_the_top_bin_as_plain_lines():
    m = methods.get("tf_top", config.load())
    top = m.training_set(candidates([1, 1, 0]), return_bins=2)
    assert set(top["text"]) == {
        CTX + "<_rep_start_>I can help with your jeans.<_rep_end_>",
        CTX + "<_rep_start_>jeans<_rep_end_>",
    }
    assert list(top.columns) == ["text", "context", "response", "return"]
    assert set(m.training_set(candidates([3, 2, 0]), return_bins=4)["response"]) == {"I can help with your jeans."}


def test_config_section_and_prompt():
    m = methods.get("tf_top", config.load(sets=["finetune.lr=0.25"]))
    assert m.train_config().lr == 0.25 and m.config_section == "finetune"
    assert m.prompt(CTX, {}) == prompt(CTX)
