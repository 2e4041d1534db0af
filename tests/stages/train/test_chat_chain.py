"""The chat format end to end with a tokenizer that carries a chat template (GPT-2's BPE + ChatML in a local folder):
tf -> relabel -> tf_top / dt / ilql -> evaluate -> `dorl generate` / `dorl chat`, tiny model, 2 steps each. Every
stage prompts with the template (and the system prompt); the saved folders answer in plain transformers as dorl
does. (The rendering itself, token by token: tests/test_prompts.py.)"""

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from dorl import config
from dorl.cli import cli
from dorl.errors import ConfigError
from dorl.model_folder import SAMPLE
from dorl.prompts import CHATML, PromptFormat, own_template
from dorl.text import REWARD_ONE, render_conversation
from tests.fixtures import make_chat_template_folder

pytestmark = pytest.mark.slow  # seven stages in one chain

METHODS = ("tf_top", "dt", "ilql")
EVALUATED = ("dt", "ilql")  # DT's return token, ILQL's own decoding (tf and tf_top prompt as ILQL: checked below)
SYSTEM = "You are a helpful clothes-shop agent."


def chat_sets(folder) -> list[str]:
    return [
        "model.source=config", "model.tokenizer=pretrained", f"model.name={folder}", "model.prompt_format=chat",
        f"model.system_prompt={SYSTEM}",
        "tf.max_steps=2", "tf.max_length=128", "tf.batch_size=8", "tf.micro_batch_size=8",
        *[f"{s}.{k}" for s in ("finetune", "ilql.train") for k in ("max_steps=2", "batch_size=8",
                                                                     "micro_batch_size=8", "max_length=128")],
        "relabel.splits=[train, validation]", "relabel.num_candidates=2", "relabel.num_beams=2",
        "relabel.max_new_tokens=4", "relabel.reward=bleu",
        "eval.n_examples=4", "eval.batch_size=4", "eval.max_new_tokens=4", "eval.num_responses=2", "ilql.beta=1",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def chain(tmp_path_factory, data_artifact):
    """Every stage once; the prompts relabel and evaluation generated from, as they reached the decoder."""
    import dorl.methods.base as base
    import dorl.relabel.candidates as candidates
    from dorl.stages.evaluate import evaluate
    from dorl.stages.relabel import relabel
    from dorl.stages.train import train

    root = tmp_path_factory.mktemp("chat")
    make_chat_template_folder(root / "template")
    cfg = config.load(preset="tiny", sets=chat_sets(root / "template"))
    seen: dict[str, list[str]] = {"relabel": [], "evaluate": []}
    mp = pytest.MonkeyPatch()
    from dorl.methods.ilql import ILQL

    real_generate = candidates.generate

    def spy_generate(model, tok, prompts, *a, **k):
        seen["relabel"] += prompts
        return real_generate(model, tok, prompts, *a, **k)

    def spy(cls):  # the prompts a method's `respond` decodes from
        real = cls.respond

        def respond(self, model_dir, prompts, *a, **k):
            seen["evaluate"].append((self.name, list(prompts)))
            return real(self, model_dir, prompts, *a, **k)

        mp.setattr(cls, "respond", respond)

    mp.setattr(candidates, "generate", spy_generate)
    spy(base.Method)
    spy(ILQL)
    try:
        out = {"cfg": cfg, "seen": seen}
        out["tf"] = train(cfg, method="tf", data_uri=data_artifact.uri, out_uri=str(root / "tf")).artifact
        out["relabel"] = relabel(
            cfg, data_uri=data_artifact.uri, base_uri=out["tf"].uri, out_uri=str(root / "relabel")
        ).artifact
        for m in METHODS:
            out[m] = train(cfg, method=m, data_uri=out["relabel"].uri, base_uri=out["tf"].uri,
                           out_uri=str(root / m)).artifact  # fmt: skip
        for m in EVALUATED:
            out[f"eval/{m}"] = evaluate(
                cfg, method=m, model_uri=out[m].uri, data_uri=data_artifact.uri, out_uri=str(root / f"eval-{m}")
            ).artifact
    finally:
        mp.undo()
    return out


def fmt_of(art) -> PromptFormat:
    from dorl.methods.base import prompt_format

    return prompt_format(art.local_dir())


def test_tf_records_the_format_and_trains_on_rendered_conversations(chain):
    tf = chain["tf"]
    fmt = fmt_of(tf)
    assert (fmt.kind, fmt.system_prompt, fmt.end) == ("chat", SYSTEM, "<|im_end|>")
    assert tf.info["prompt_format"] == {"format": "chat", "end": "<|im_end|>", "system_prompt": SYSTEM}
    assert tf.json("tokenizer_config.json")["dorl_prompt_format"]["format"] == "chat"
    # the folder's template is the one it was trained with (the tokenizer's), plus the system prompt
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tf.local_dir())
    messages = [{"role": "user" if s == "customer" else "assistant", "content": t} for s, t in SAMPLE]
    rendered = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert rendered == fmt.prompt(render_conversation(SAMPLE)) and rendered.startswith(f"<|im_start|>system\n{SYSTEM}")
    assert own_template(tok.chat_template) == CHATML  # the template it was trained with, inside the wrapper


def test_relabel_prompts_with_the_template(chain, data_artifact):
    fmt = fmt_of(chain["tf"])
    contexts = [c for s in ("train", "validation") for c in
                pd.read_parquet(data_artifact.path(f"examples/{s}.parquet"))["context"]]  # fmt: skip
    assert sorted(chain["seen"]["relabel"]) == sorted(fmt.prompt(c) for c in contexts)
    cand = pd.read_parquet(chain["relabel"].path("candidates/train.parquet"))
    assert not cand["candidate"].str.contains("<|im_end|>", regex=False).any()  # the stop token ends, is not kept


def test_every_method_trains_on_chat_lines(chain):
    fmt = fmt_of(chain["tf"])
    top = pd.read_parquet(chain["tf_top"].path("training_set/train.parquet"))
    assert (top["prompt"] == [fmt.prompt(c) for c in top["context"]]).all()
    assert (top["text"] == top["prompt"] + top["response"] + "<|im_end|>").all()
    dt = pd.read_parquet(chain["dt"].path("training_set/train.parquet"))
    ret = {0: "<_reward_zero_>", 1: "<_reward_one_>"}
    want = [fmt.prompt(c, ret[r], REWARD_ONE) for c, r in zip(dt["context"], dt["return"], strict=True)]
    assert dt["prompt"].tolist() == want
    ilql = pd.read_parquet(chain["ilql"].path("training_set/train.parquet"))
    assert ilql["prompt"].str.endswith("<|im_start|>assistant\n").all()
    assert ilql["response"].str.endswith("<|im_end|>").all()


def test_evaluation_prompts_with_the_template(chain):
    from dorl import csvsafe

    asked: dict[str, list[str]] = {}
    for name, prompts in chain["seen"]["evaluate"]:  # the first call: DT then asks for its lowest return too
        asked.setdefault(name, prompts)
    assert set(asked) == set(EVALUATED)
    low = [p for name, p in chain["seen"]["evaluate"] if name == "dt"][1]
    assert all(p.endswith("<|im_start|>assistant\n<_reward_zero_>") for p in low)
    fmt = fmt_of(chain["tf"])
    ret = {"dt": "<_reward_one_>", "ilql": ""}  # DT asks for the top of 2 return bins
    for m in EVALUATED:
        contexts = csvsafe.read(chain[f"eval/{m}"].path("predictions.csv"), keep_default_na=False)["context"]
        assert asked[m] == [fmt.prompt(c, ret[m], REWARD_ONE if ret[m] else "") for c in contexts]
        assert chain[f"eval/{m}"].json("metrics.json")["n_examples"] == 4 == len(contexts)


@pytest.mark.parametrize("method", ["dt", "ilql"])
def test_generate_and_plain_transformers_agree(chain, method, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = tmp_path / "pulled"
    res = CliRunner().invoke(cli, ["artifacts", "pull", chain[method].uri, str(folder)])
    assert res.exit_code == 0, res.output
    sets = [a for s in chat_sets(tmp_path) for a in ("--set", s) if "model.name" not in s] + ["--set", "ilql.beta=0"]
    res = CliRunner().invoke(cli, ["generate", "--model", str(folder), "--context", render_conversation(SAMPLE),
                                   "--json", "-k", "1", "--preset", "tiny", *sets])  # fmt: skip
    assert res.exit_code == 0, res.output
    [row] = [json.loads(line) for line in res.output.splitlines() if line.startswith("{")]
    tok = AutoTokenizer.from_pretrained(folder)
    messages = [{"role": "user" if s == "customer" else "assistant", "content": t} for s, t in SAMPLE]
    assert tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) == row["prompt"]
    assert row["prompt"].startswith(f"<|im_start|>system\n{SYSTEM}<|im_end|>")
    if method == "dt":
        assert row["prompt"].endswith("<|im_start|>assistant\n<_reward_one_>")
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert tok.convert_tokens_to_ids("<|im_end|>") in model.generation_config.eos_token_id
    inputs = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", truncation=True,
                                     max_length=96)  # fmt: skip
    out = model.generate(**inputs, max_new_tokens=4)
    assert tok.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip() == row["responses"][0]
    assert "chat format" in (folder / "README.md").read_text()


def test_chat_in_the_terminal(chain):
    args = ["chat", "--model", chain["tf_top"].uri, "-k", "1", "--preset", "tiny"]
    res = CliRunner().invoke(cli, args, input="my jeans are torn\n\n/quit\n")
    assert res.exit_code == 0, res.output
    assert "agent: " in res.output


def test_a_method_must_name_its_base_models_format(chain, tmp_path):
    from dorl.stages.train import train

    cfg = config.load(preset="tiny", sets=["finetune.max_steps=1"])  # prompt_format=dorl
    with pytest.raises(ConfigError, match="trained with the chat format; set model.prompt_format=chat"):
        train(
            cfg, method="tf_top", data_uri=chain["relabel"].uri, base_uri=chain["tf"].uri, out_uri=str(tmp_path / "x")
        )
    assert not (tmp_path / "x").exists()
