"""A trained folder in plain transformers: the chat template gives dorl's prompt, generate stops where dorl does."""

from __future__ import annotations

import json

import pytest

from dorl import model_folder
from dorl.methods.dt import dt_prompt
from dorl.text import REP_END, prompt, render_conversation
from tests.fixtures import dialogues, make_tiny_model_dir

CONVERSATION = [
    {"role": "assistant", "content": "Hi, how can I help you today?"},
    {"role": "user", "content": "My jeans arrived broken."},
]
CONTEXT = "<_soc_><_rep_start_>Hi, how can I help you today?<_rep_end_><_cus_start_>My jeans arrived broken.<_cus_end_>"


@pytest.fixture
def folder(tmp_path):
    path = tmp_path / "model"
    make_tiny_model_dir(path)
    return path


@pytest.mark.parametrize("method,reply", [("tf", None), ("dt", "<_return_2_>")])
def test_chat_template_is_dorls_prompt(folder, method, reply):
    from transformers import AutoTokenizer

    model_folder.finish(folder, method=method, reply_token=reply, facts={"dataset": "abcd"})
    tok = AutoTokenizer.from_pretrained(folder)
    text = tok.apply_chat_template(CONVERSATION, add_generation_prompt=True, tokenize=False)
    assert text == (dt_prompt(CONTEXT, reply) if reply else prompt(CONTEXT))
    # a system message is context, rendered as the data renders it (dorl.text); other roles are refused
    system = [{"role": "system", "content": "Be brief."}, *CONVERSATION]
    text = tok.apply_chat_template(system, add_generation_prompt=True, tokenize=False)
    assert text == text_of(render_conversation([("system", "Be brief."), ("agent", CONVERSATION[0]["content"]),
                                                ("customer", CONVERSATION[1]["content"])]), reply)  # fmt: skip
    with pytest.raises(Exception, match="know the roles user"):
        tok.apply_chat_template([{"role": "tool", "content": "x"}], tokenize=False)


def text_of(context: str, reply: str | None) -> str:
    return dt_prompt(context, reply) if reply else prompt(context)


def test_generation_config_and_lengths(folder):
    from transformers import AutoTokenizer, GenerationConfig

    model_folder.finish(folder, method="tf", max_new_tokens=7)
    tok = AutoTokenizer.from_pretrained(folder)
    n_positions = json.loads((folder / "config.json").read_text())["n_positions"]
    assert tok.model_max_length == n_positions and tok.truncation_side == "left"
    gen = GenerationConfig.from_pretrained(folder)
    assert tok.convert_tokens_to_ids(REP_END) in gen.eos_token_id and gen.max_new_tokens == 7
    assert not gen.do_sample and gen.num_beams == 1
    long = prompt(" ".join(t for _, turns in dialogues(20) for _, t in turns))
    ids = tok(long, truncation=True, max_length=96)["input_ids"]
    assert ids == tok(long)["input_ids"][-96:]  # dorl's left truncation
    card = (folder / "README.md").read_text()
    assert "pipeline_tag: text-generation" in card and "<_rep_end_>" in card
