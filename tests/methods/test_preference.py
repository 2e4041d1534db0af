"""What dpo and kto share: an example is a prompt and two completions, each sequence (prompt + one completion) at
most `max_length` tokens: the whole prompt when it fits, else its end (the same tokens in both sequences), and the
start of each completion."""

import pytest

from dorl.methods.preference import encode_pairs, split_pair
from dorl.text import render_conversation
from dorl.tokenizer import build_tokenizer
from tests.fixtures import dialogues

PROMPT = render_conversation([("customer", "I need to return my jeans, they arrived broken.")]) + "<_rep_start_>"
A, B = "Sure, may I have your name?<_rep_end_>", "No.<_rep_end_>"


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer("bpe", texts=[render_conversation(t) for _, t in dialogues(40)], vocab_size=400)


def ids(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("room", [0, 2, 30, 400])  # tokens to spare beyond the prompt and the longer completion
def test_a_pair_that_fits_keeps_everything_and_splits_into_two_sequences(tok, room):
    n = len(ids(tok, PROMPT)) + len(ids(tok, A)) + room
    first, second = split_pair(encode_pairs(tok, [PROMPT], [A], [B], max_length=n)[0])
    assert first["input_ids"].tolist() == ids(tok, PROMPT + A) and first["label_start"] == len(ids(tok, PROMPT))
    assert second["input_ids"].tolist() == ids(tok, PROMPT + B) and second["label_start"] == len(ids(tok, PROMPT))


def test_a_long_pair_keeps_the_end_of_the_prompt_in_both_and_the_start_of_each_completion(tok):
    p, a, b = ids(tok, PROMPT), ids(tok, A), ids(tok, B)
    n = len(a) + 5  # room for the longer completion and five prompt tokens
    first, second = split_pair(encode_pairs(tok, [PROMPT], [A], [B], max_length=n)[0])
    assert first["input_ids"].tolist() == p[-5:] + a and second["input_ids"].tolist() == p[-5:] + b
    short = encode_pairs(tok, [PROMPT], [A], [B], max_length=3)[0]  # shorter than a completion: its start only
    first, second = split_pair(short)
    assert first["input_ids"].tolist() == a[:3] and second["input_ids"].tolist() == b[:3] and first["label_start"] == 0
