"""dt, the specification: Decision Transformer on the relabelled candidates.

- Training line: context' + <return token of the candidate> + <_rep_start_> + candidate + <_rep_end_>,
  where context' asks for the high return (<_reward_one_>) before every earlier agent turn (the reference).
- Return tokens: <_reward_zero_>, <_reward_one_> for the default 2 bins; <_return_0_> … <_return_{N-1}_>
  for N > 2 bins, added to the tokenizer.
- Evaluation prompt: context' + <top return token> + <_rep_start_>; the trained model's manifest records
  the tokens (`info.return_tokens`) where evaluation reads them.
"""

import pandas as pd
import pytest

from dorl import config, methods
from dorl.engine.models import load_base_tokenizer
from dorl.methods.dt import dt_line, dt_prompt, return_tokens
from dorl.text import REP_START, REWARD_ONE, REWARD_ZERO, render_conversation
from tests.fixtures import make_relabel_artifact
from tests.methods.helpers import candidates, train_and_evaluate

TURNS = [("customer", "I need help"), ("agent", "Sure."), ("customer", "Thanks")]
CONTEXT = render_conversation(TURNS)
RESPONSE = "You are welcome, bye now."


def test_lines_and_prompts_are_the_references():
    # written out by hand from the reference's DT format (docs/methods.md): every earlier <_rep_start_>
    # asks for the high return, the target's return token goes right before its <_rep_start_>.
    assert dt_line(CONTEXT, RESPONSE, REWARD_ZERO) == (
        "<_soc_><_cus_start_>I need help<_cus_end_><_reward_one_><_rep_start_>Sure.<_rep_end_>"
        "<_cus_start_>Thanks<_cus_end_><_reward_zero_><_rep_start_>You are welcome, bye now.<_rep_end_>"
    )
    assert dt_prompt(CONTEXT) == (
        "<_soc_><_cus_start_>I need help<_cus_end_><_reward_one_><_rep_start_>Sure.<_rep_end_>"
        "<_cus_start_>Thanks<_cus_end_><_reward_one_><_rep_start_>"
    )


def test_return_tokens():
    assert return_tokens(2) == [REWARD_ZERO, REWARD_ONE]
    assert return_tokens(4) == ["<_return_0_>", "<_return_1_>", "<_return_2_>", "<_return_3_>"]


def test_training_set_binary():
    dt = methods.get("dt", config.load()).training_set(candidates([1, 1, 0]), return_bins=2)
    assert list(dt.columns) == ["text", "context", "response", "return"] and len(dt) == 3
    text = dict(zip(dt["response"], dt["text"], strict=True))
    assert text[""] == (
        "<_soc_><_cus_start_>hi<_cus_end_><_reward_one_><_rep_start_>hello<_rep_end_><_cus_start_>my jeans<_cus_end_>"
        "<_reward_zero_><_rep_start_><_rep_end_>"
    )
    assert text["jeans"].endswith("<_reward_one_><_rep_start_>jeans<_rep_end_>")


def test_training_set_n_bins():
    dt = methods.get("dt", config.load()).training_set(candidates([3, 2, 0]), return_bins=4)
    text = dict(zip(dt["response"], dt["text"], strict=True))
    assert text["jeans"].endswith("<_return_2_><_rep_start_>jeans<_rep_end_>")
    assert text["I can help with your jeans."].endswith(
        "<_return_3_><_rep_start_>I can help with your jeans.<_rep_end_>"
    )


def test_more_bins_add_their_tokens_to_the_tokenizer(tmp_path, data_artifact, tiny_model_artifact):
    art = make_relabel_artifact(str(tmp_path / "relabel3"), data_artifact, return_bins=3)
    m = methods.get("dt", config.load(preset="tiny"))
    tok = m.tokenizer(art, tiny_model_artifact)
    assert len(tok) == len(load_base_tokenizer(tiny_model_artifact)) + 3
    assert tok.tokenize("a<_return_1_><_rep_start_>")[-2:] == ["<_return_1_>", REP_START]
    lm = m.model(tok, tiny_model_artifact)
    assert lm.get_input_embeddings().weight.shape[0] == len(tok) == lm.config.vocab_size


def test_three_bins_train_and_evaluate_with_the_top_return_token(
    tmp_path, data_artifact, tiny_model_artifact, monkeypatch
):
    """relabel.return_bins: 3 -> DT trains on <_return_0..2_> and is evaluated asking for <_return_2_>
    (it was evaluated with <_reward_one_>, a token it never saw in that place)."""
    from dorl.methods.dt import DT

    relabel = make_relabel_artifact(str(tmp_path / "relabel3"), data_artifact, return_bins=3)
    seen = []
    respond = DT.respond

    def spy(self, model_dir, prompts, decode, num_responses):
        seen.extend(prompts)
        return respond(self, model_dir, prompts, decode, num_responses)

    monkeypatch.setattr(DT, "respond", spy)
    model, ev = train_and_evaluate(tmp_path, "dt", relabel, tiny_model_artifact, data_artifact)
    lines = pd.read_parquet(model.path("training_set/train.parquet"))["text"]  # what it trained on
    assert lines.str.contains("<_return_2_><_rep_start_>", regex=False).any()
    assert model.info["return_tokens"] == ["<_return_0_>", "<_return_1_>", "<_return_2_>"]
    n = ev.info["n_examples"]
    assert len(seen) == 2 * n > 0  # the top return's prompts, then the lowest's (how many responses change)
    assert all(p.endswith("<_return_2_><_rep_start_>") for p in seen[:n])
    assert all(p.endswith("<_return_0_><_rep_start_>") for p in seen[n:])
    pred = pd.read_csv(ev.path("predictions.csv"))
    assert [dt_prompt(c, "<_return_2_>") for c in pred["context"]] == seen[:n]


@pytest.mark.parametrize("bins", [2, 3])
def test_manifest_without_tokens_prompts_with_the_references(bins):
    m = methods.get("dt", config.load())
    assert m.prompt(CONTEXT, {}).endswith(REWARD_ONE + REP_START)
    assert m.prompt(CONTEXT, {"return_tokens": return_tokens(bins)}).endswith(return_tokens(bins)[-1] + REP_START)


def _token_task(uri, data_artifact):
    """A relabel artifact in which the return token alone decides the response: every context's candidate 0 (in the
    human response's place) is "Sure thing." with the top return, its one model candidate "No." with return 0."""
    from dorl.relabel.candidates import CHUNK_COLUMNS
    from dorl.stages.relabel import finalize, stage_config
    from dorl.store import run_stage

    cfg = config.load(sets=["relabel.num_candidates=1", "relabel.num_beams=1"])

    def body(ctx):
        rows, sizes = {}, {}
        for split in ("train", "validation", "test"):
            ex = pd.read_parquet(data_artifact.path(f"examples/{split}.parquet"))
            out = []
            for i, r in enumerate(ex.itertuples(index=False)):
                out.append((i, r.dialogue_id, r.turn_index, r.context, r.response, 0, "Sure thing.", 1.0))
                out.append((i, r.dialogue_id, r.turn_index, r.context, r.response, 1, "No.", 0.0))
            rows[split] = pd.DataFrame(out, columns=CHUNK_COLUMNS).astype({"turn_index": "int32",
                                                                            "candidate_index": "int32"})  # fmt: skip
            sizes[split] = len(ex)
        finalize(ctx, cfg, rows, sizes)

    return run_stage("relabel", uri, {**stage_config(cfg), "fixture": "token task"}, {"data": data_artifact}, body)


def test_evaluation_says_whether_dt_reads_its_return_token(tmp_path, data_artifact, tiny_model_artifact):
    """The audit: 0-5 of 187 responses changed with the token on MultiWOZ. Evaluation now measures it: here the
    token decides the response (top: "Sure thing.", bottom: "No."), and most greedy responses change with it."""
    relabel = _token_task(str(tmp_path / "relabel"), data_artifact).artifact
    sets = ["finetune.max_steps=200", "finetune.lr=5e-3", "finetune.scheduler=constant", "finetune.keep_best=false",
            "eval.n_examples=20", "eval.max_new_tokens=6"]  # fmt: skip
    model, ev = train_and_evaluate(tmp_path, "dt", relabel, tiny_model_artifact, data_artifact, *sets)
    token = ev.manifest["metrics"]["generation"]["return_token"]
    assert token["top"] == REWARD_ONE and token["bottom"] == REWARD_ZERO and token["n"] == ev.info["n_examples"]
    assert token["changed"] >= 0.8 * token["n"], token
