"""What the line methods (tf_top, tf_all, dt) share: left truncation, labels masked up to the last
<_rep_start_>, batches padded to their longest line. (Malformed candidates: tests/methods/test_training_set.py.)"""

import numpy as np
import pytest
import torch

from dorl.engine.causal_lm import IGNORE, CausalLMLoss, collate_causal
from dorl.methods.dt import dt_line
from dorl.methods.lines import encode_lines
from dorl.text import REP_END, REP_START, REWARD_ONE, REWARD_ZERO, line, render_conversation
from dorl.tokenizer import build_tokenizer
from tests.fixtures import dialogues

TURNS = [("customer", "I need help"), ("agent", "Sure."), ("customer", "Thanks")]
CONTEXT = render_conversation(TURNS)
RESPONSE = "You are welcome, bye now."


@pytest.fixture(scope="module")
def tok():
    texts = [render_conversation(t) for _, t in dialogues(40)] + [CONTEXT + RESPONSE]
    return build_tokenizer("bpe", texts=texts, vocab_size=400)


def test_a_line_is_context_rep_start_response_rep_end():
    assert line(CONTEXT, RESPONSE) == CONTEXT + "<_rep_start_>You are welcome, bye now.<_rep_end_>"


@pytest.mark.parametrize("make", [lambda: line(CONTEXT, RESPONSE), lambda: dt_line(CONTEXT, RESPONSE, REWARD_ZERO)])
def test_labels_fall_on_the_response_and_rep_end_only(tok, make):
    text = make()
    ex = encode_lines(tok, [text], max_length=512)
    batch = collate_causal([ex[0]])
    ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
    assert ids == tok(text, add_special_tokens=False)["input_ids"]
    # expected, independently: the response's own tokens, then <_rep_end_>
    want = tok(RESPONSE, add_special_tokens=False)["input_ids"] + [tok.convert_tokens_to_ids(REP_END)]
    n_masked = len(ids) - len(want)
    assert labels[:n_masked] == [IGNORE] * n_masked
    assert labels[n_masked:] == want
    assert ids[n_masked - 1] == tok.convert_tokens_to_ids(REP_START)  # masked up to and including it


def test_left_truncation_keeps_the_end(tok):
    text = line(CONTEXT, RESPONSE)
    full = tok(text, add_special_tokens=False)["input_ids"]
    n_resp = len(tok(RESPONSE, add_special_tokens=False)["input_ids"]) + 1
    ex = encode_lines(tok, [text], max_length=n_resp + 3)
    assert ex[0]["input_ids"].tolist() == full[-(n_resp + 3) :]
    assert ex[0]["label_start"] == 3  # two context tokens and <_rep_start_> survive
    cut = encode_lines(tok, [text], max_length=n_resp - 2)  # <_rep_start_> cut off: all of it is response
    assert cut[0]["label_start"] == 0


def test_batches_pad_to_the_longest_line_and_the_loss_matches_hf(tok):
    from transformers import GPT2Config, GPT2LMHeadModel

    texts = [line(CONTEXT, RESPONSE), line("<_soc_>", "Hi"), dt_line(CONTEXT, "Ok.", REWARD_ONE)]
    ex = encode_lines(tok, texts, max_length=512)
    batch = collate_causal([ex[i] for i in range(3)], pad_id=7)
    assert batch["input_ids"].shape == (3, int(ex.lengths.max()))  # not 512
    assert batch["input_ids"][1, ex.lengths[1] :].eq(7).all() and batch["labels"][1, ex.lengths[1] :].eq(IGNORE).all()
    torch.manual_seed(0)
    lm = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=128, n_embd=32, n_layer=2, n_head=2)).eval()
    with torch.no_grad():
        loss, _ = CausalLMLoss(lm)(**batch)
    # HF's own loss per unpadded line (attention only over its real tokens), weighted by target count
    total, count = 0.0, 0
    for i in range(3):
        ids = torch.from_numpy(ex[i]["input_ids"].astype(np.int64))[None]
        labels = batch["labels"][i : i + 1, : ids.shape[1]]
        n = int((labels[:, 1:] != IGNORE).sum())
        with torch.no_grad():
            total += float(lm(input_ids=ids, labels=labels).loss) * n
        count += n
    assert float(loss) == pytest.approx(total / count, rel=1e-5)
