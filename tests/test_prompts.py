"""The two prompt formats (dorl/prompts.py): a chat-format prompt is the tokenizer's own apply_chat_template
output, responses end with the template's end-of-turn token, DT's return token sits right before the response,
ILQL's actions are the response's tokens and that token; the dorl format is unchanged; bad settings fail in one
clear line. (The chat format end to end: tests/stages/train/test_chat_chain.py.)"""

import numpy as np
import pytest

from dorl import config, methods, prompts
from dorl.engine.causal_lm import IGNORE, collate_causal
from dorl.errors import ConfigError
from dorl.methods.dt import dt_prompt, return_tokens
from dorl.methods.lines import encode_lines
from dorl.model_folder import SAMPLE
from dorl.prompts import PromptFormat
from dorl.text import REP_END, REWARD_ONE, prompt, render_conversation
from tests.fixtures import chat_tokenizer, make_chat_template_folder

SYSTEM = 'You help customers of a clothes shop; be brief. "Quotes" \\ and ünïcode stay as written.'
CONTEXT = render_conversation(SAMPLE)
RESPONSE = "Thanks Ana, I see the order."


@pytest.fixture(scope="module")
def tok():
    return chat_tokenizer(SYSTEM)


@pytest.fixture(scope="module")
def fmt(tok):
    return PromptFormat.of(tok)


def messages(system: str = SYSTEM, turn_token: str = "") -> list[dict]:
    """SAMPLE as chat messages, written out independently of dorl.prompts."""
    out = [{"role": "system", "content": system}] if system else []
    for speaker, text in SAMPLE:
        if speaker == "customer":
            out.append({"role": "user", "content": text})
        else:
            out.append({"role": "assistant", "content": turn_token + text})
    return out


def test_the_chat_prompt_is_apply_chat_template_with_the_generation_prompt(tok, fmt):
    want = tok.apply_chat_template(messages(), add_generation_prompt=True, tokenize=False)
    assert fmt.prompt(CONTEXT) == want
    assert want.endswith("<|im_start|>assistant\n") and want.startswith(f"<|im_start|>system\n{SYSTEM}<|im_end|>")
    assert fmt.end == "<|im_end|>"


def test_a_system_turn_of_the_context_replaces_the_system_prompt(tok, fmt):
    context = render_conversation([("system", "Own rules."), *SAMPLE])
    want = tok.apply_chat_template(messages("Own rules."), add_generation_prompt=True, tokenize=False)
    assert fmt.prompt(context) == want


def test_the_dorl_format_is_unchanged():
    dorl = PromptFormat()
    assert dorl.prompt(CONTEXT) == prompt(CONTEXT)
    assert dorl.prompt(CONTEXT, "<_return_2_>", REWARD_ONE) == dt_prompt(CONTEXT, "<_return_2_>")
    assert dorl.end == REP_END
    from dorl.tokenizer import build_tokenizer

    assert PromptFormat.of(build_tokenizer("gpt2")).kind == "dorl"  # a tokenizer recording no format


def test_a_chat_line_ends_with_the_end_of_turn_token_and_its_loss_starts_after_the_prompt(tok, fmt):
    m = methods.get("tf_top", config.load(sets=["model.prompt_format=chat", "model.chat_template=chatml"]))
    m.bind(tok)
    rows = m.training_set(_candidates(), 2)
    p, text = rows["prompt"][0], rows["text"][0]
    assert p == fmt.prompt(CONTEXT) and text == p + RESPONSE + "<|im_end|>"
    ex = encode_lines(tok, rows["text"].tolist(), 512, prompts=rows["prompt"].tolist())
    batch = collate_causal([ex[0]])
    ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
    n_prompt = len(tok(p, add_special_tokens=False)["input_ids"])
    assert labels[:n_prompt] == [IGNORE] * n_prompt
    assert tok.decode(labels[n_prompt:]) == RESPONSE + "<|im_end|>"
    assert labels[-1] == tok.convert_tokens_to_ids("<|im_end|>")
    assert tok.decode(ids[:n_prompt]).endswith("<|im_start|>assistant\n")  # the response starts right after it
    # left truncation keeps the end: the loss still starts where the prompt ends
    short = encode_lines(tok, [text], 12, prompts=[p])[0]
    assert short["input_ids"].tolist() == ids[-12:]
    assert short["label_start"] == 12 - (len(ids) - n_prompt)


def _candidates():
    import pandas as pd

    return pd.DataFrame(
        {"context": [CONTEXT, CONTEXT], "candidate_index": [0, 1], "candidate": [RESPONSE, "ok"],
         "reward": [1.0, 0.2], "return": [1, 0]}
    )  # fmt: skip


def test_dt_asks_for_its_return_right_before_the_response(tok, fmt):
    import copy

    cfg = config.load(sets=["model.prompt_format=chat", "model.chat_template=chatml"])
    m = methods.get("dt", cfg)
    tok = copy.deepcopy(tok)
    tok.add_tokens(return_tokens(3), special_tokens=True)  # as DT's tokenizer() does
    m.bind(tok)
    rows = m.training_set(_candidates(), 3)
    low = rows[rows["return"] == 0].iloc[0]
    want = tok.apply_chat_template(messages(turn_token=REWARD_ONE), add_generation_prompt=True, tokenize=False)
    assert low["prompt"] == want + "<_return_0_>"  # every earlier agent turn asks for the high return
    ex = encode_lines(tok, [low["text"]], 512, prompts=[low["prompt"]])[0]
    ids, start = ex["input_ids"].tolist(), int(ex["label_start"])
    assert ids[start - 1] == tok.convert_tokens_to_ids("<_return_0_>")  # the last token the model reads
    assert tok.decode(ids[start:]) == "ok<|im_end|>"
    info = {"return_tokens": return_tokens(3)}
    assert m.prompt(CONTEXT, info, fmt) == want + "<_return_2_>"  # evaluation asks for the top return
    assert m.prompt(CONTEXT, info) == dt_prompt(CONTEXT, "<_return_2_>")  # no format given: dorl's


def test_ilql_acts_on_the_response_and_the_end_of_turn_token(tok, fmt):
    from dorl.ilql.data import Collator, ReturnStats, encode

    m = methods.get("ilql", config.load(sets=["model.prompt_format=chat", "model.chat_template=chatml"]))
    m.bind(tok)
    rows = m.training_set(_candidates(), 2)
    assert rows["prompt"][0] == fmt.prompt(CONTEXT) and rows["response"][0] == RESPONSE + "<|im_end|>"
    [s] = encode(rows.iloc[:1], tok, 512, ReturnStats.fit([0.0, 1.0]))
    batch = Collator(pad_id=0)([s])
    ids, states = batch["input_ids"][0].tolist(), batch["state_mask"][0].numpy()
    n_prompt = len(tok(rows["prompt"][0], add_special_tokens=False)["input_ids"])
    where = np.flatnonzero(states)
    # the state of action t is position t-1: the first state is the prompt's last token (the generation prompt's
    # newline), the actions are the response's tokens and <|im_end|>
    assert where[0] == n_prompt - 1 and where[-1] == len(ids) - 2
    assert tok.decode(ids[where[0] + 1 : where[-1] + 2]) == RESPONSE + "<|im_end|>"
    assert ids[-1] == tok.convert_tokens_to_ids("<|im_end|>")


def test_generation_stops_at_the_end_of_turn_token(tok):
    from dorl.generate import stop_token_ids

    assert stop_token_ids(tok)[0] == tok.convert_tokens_to_ids("<|im_end|>")
    from dorl.tokenizer import build_tokenizer

    assert stop_token_ids(build_tokenizer("gpt2"))[0] == build_tokenizer("gpt2").convert_tokens_to_ids(REP_END)


def test_the_format_survives_save_and_load(tok, tmp_path):
    from transformers import AutoTokenizer

    tok.save_pretrained(tmp_path)
    again = PromptFormat.of(AutoTokenizer.from_pretrained(tmp_path))
    assert again.facts() == {"format": "chat", "end": "<|im_end|>", "system_prompt": SYSTEM}
    assert again.prompt(CONTEXT) == PromptFormat.of(tok).prompt(CONTEXT)


@pytest.mark.parametrize("dt", [False, True])
def test_a_model_folders_template_renders_what_dorl_prompts(tok, fmt, dt):
    """Plain apply_chat_template on the folder's template (system prompt and DT's tokens added by its wrapper)
    equals dorl's prompt; dorl's own rendering of it (dorl_plain) is the trained template's; wrapping twice
    changes nothing."""
    import copy

    t = copy.deepcopy(tok)
    own = t.chat_template
    reply, turn = ("<_return_2_>", REWARD_ONE) if dt else ("", "")
    t.chat_template = prompts.folder_template(own, SYSTEM, turn, reply)
    plain = [m for m in messages(turn_token="") if m["role"] != "system"]
    assert t.apply_chat_template(plain, add_generation_prompt=True, tokenize=False) == fmt.prompt(CONTEXT, reply, turn)
    assert PromptFormat.of(t).prompt(CONTEXT) == fmt.prompt(CONTEXT)
    assert prompts.folder_template(t.chat_template, SYSTEM, turn, reply) == t.chat_template
    assert prompts.own_template(t.chat_template) == own


def test_end_of_turn_is_the_first_special_token_after_an_assistant_message(tok):
    import copy

    t = copy.deepcopy(tok)
    t.add_tokens(["<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>"], special_tokens=True)
    t.chat_template = (  # Llama 3's shape
        "{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n{{ m['content'] }}<|eot_id|>"
        "{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
    )
    assert prompts.end_of_turn(t) == "<|eot_id|>"
    t.chat_template = "{% for m in messages %}{{ m['content'] }}\n{% endfor %}"
    with pytest.raises(ConfigError, match="no special token"):
        prompts.end_of_turn(t)


@pytest.mark.parametrize(
    ("sets", "match"),
    [
        (["model.prompt_format=chat", "model.tokenizer=gpt2"], "tokenizer=gpt2 has none"),
        (["model.prompt_format=chat", "model.tokenizer=bpe", "model.source=config"], "tokenizer=bpe has none"),
        (["model.system_prompt=hi"], "'model.system_prompt'"),
        (["model.chat_template=chatml"], "'model.chat_template'"),
    ],
)
def test_bad_settings_fail_in_the_config(sets, match):
    with pytest.raises(ConfigError, match=match):
        config.load(sets=sets)


def test_a_tokenizer_without_a_template_is_refused_for_chat(tmp_path, data_artifact):
    """distilgpt2's tokenizer (= GPT-2's) has no chat template: tf refuses the chat format before writing."""
    from transformers import GPT2Config

    from dorl.tokenizer import gpt2_tokenizer

    gpt2_tokenizer().save_pretrained(tmp_path)
    GPT2Config(n_embd=64, n_layer=2, n_head=2).save_pretrained(tmp_path)
    sets = ["model.source=config", "model.tokenizer=pretrained", f"model.name={tmp_path}", "model.prompt_format=chat"]
    m = methods.get("tf", config.load(sets=sets))
    with pytest.raises(ConfigError, match="chat needs a tokenizer with a chat template"):
        m.check_inputs(data_artifact, None)
    make_chat_template_folder(tmp_path)  # with a template it passes
    m.check_inputs(data_artifact, None)


def test_the_format_is_part_of_tfs_identity_only_when_set():
    """A tf artifact made before the format existed keeps its identity; a chat tf is another artifact."""
    plain, chat = config.load(), config.load(sets=["model.prompt_format=chat", "model.chat_template=chatml"])
    assert "prompt_format" not in methods.get("tf", plain).config()["model"]
    assert methods.get("tf", chat).config()["model"]["prompt_format"] == "chat"


@pytest.mark.parametrize("facts", ["chat", {"format": "markdown"}, {"format": "chat", "system_prompt": 3}])
def test_a_malformed_recorded_format_is_one_data_error(tok, facts):
    import copy

    from dorl.errors import DataError

    t = copy.deepcopy(tok)
    t.init_kwargs[prompts.KEY] = facts
    with pytest.raises(DataError, match="tokenizer_config.json: dorl_prompt_format"):
        PromptFormat.of(t)


def test_a_template_that_refuses_a_conversation_names_the_record(tok):
    """Templates that insist on user-first alternation (Gemma's, Mistral's) refuse a conversation that opens with
    the agent: one line naming the file, record and field."""
    import copy

    from dorl.errors import DataError
    from dorl.methods.tf import rendered

    t = copy.deepcopy(tok)
    t.chat_template = (
        "{% if messages[0]['role'] != 'user' %}{{ raise_exception('Conversation roles must alternate "
        "user/assistant/user/assistant/...') }}{% endif %}" + prompts.CHATML
    )
    fmt = PromptFormat("chat", "", t, "<|im_end|>")
    ok = render_conversation([("customer", "hi"), ("agent", "hello")])
    assert rendered(fmt, [ok], "x") == [t.apply_chat_template(
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}], tokenize=False
    )]  # fmt: skip
    with pytest.raises(DataError, match=r"^data/conversations/train.parquet: record 1, field 'text': .*must alternate"):
        rendered(fmt, [ok, CONTEXT], "data/conversations/train.parquet")
