"""The chain with a model that is not GPT-2, through the real stages and commands: a Llama-shaped model (RoPE,
grouped-query attention, untied output embeddings) built by `model.source=config model.arch=llama` with GPT-2's
tokenizer trains (tf), relabels, trains every method, evaluates, generates, chats and loads in plain transformers;
a bf16 run on the CPU; the presets naming real checkpoints load from a local folder (no hub here).
tests/engine/test_families.py checks every family's mechanics."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from dorl import config, methods
from dorl.cli import cli
from dorl.model_folder import SAMPLE
from dorl.text import render_conversation
from tests.threads import one_thread  # noqa: F401  (autouse)

LLAMA = ["model.tokenizer=gpt2", "model.arch=llama", "model.n_head=4", "model.n_kv_head=2", "model.n_positions=256"]
FAST = ["tf.max_length=128", "tf.max_steps=2", "tf.batch_size=4", "tf.micro_batch_size=4"] + [
    f"{s}.{k}" for s in ("finetune", "ilql.train") for k in ("max_steps=1", "batch_size=4", "micro_batch_size=4")
]
RELABEL = ["relabel.num_candidates=2", "relabel.num_beams=2", "relabel.max_new_tokens=4", "relabel.reward=bleu"]
RELABEL += ["relabel.return_bins=3"]  # DT adds its own return tokens
DECODE = ["eval.n_examples=3", "eval.max_new_tokens=4", "eval.num_responses=2", "ilql.beta=0"]
SETS = LLAMA + FAST + RELABEL + DECODE + ["model.gradient_checkpointing=true"]  # every method's step recomputes


@pytest.fixture(scope="module")
def chain(tmp_path_factory, data_artifact):
    """tf, relabel and every method on the Llama-shaped model, through the stages."""
    from dorl.stages.relabel import relabel
    from dorl.stages.train import train

    root = tmp_path_factory.mktemp("llama-chain")
    cfg = config.load(preset="tiny", sets=SETS)
    out = {"tf": train(cfg, method="tf", data_uri=data_artifact.uri, out_uri=str(root / "tf")).artifact}
    out["relabel"] = relabel(cfg, data_uri=data_artifact.uri, base_uri=out["tf"].uri, out_uri=str(root / "rl")).artifact
    for m in methods.relabelled():
        out[m] = train(cfg, method=m, data_uri=out["relabel"].uri, base_uri=out["tf"].uri, out_uri=str(root / m))
        out[m] = out[m].artifact
    return out


def dorl_generate(*args: str) -> list[dict]:
    sets = [a for s in SETS for a in ("--set", s)]
    res = CliRunner().invoke(cli, ["generate", *args, "--json", "-k", "2", "--preset", "tiny", *sets])
    assert res.exit_code == 0, res.output
    return [json.loads(line) for line in res.output.splitlines() if line.startswith("{")]


@pytest.mark.slow
def test_every_method_trains_relabels_and_generates_with_a_llama(chain):
    tf = chain["tf"]
    cfg = tf.json("config.json")
    assert (cfg["model_type"], cfg["num_key_value_heads"], cfg["tie_word_embeddings"]) == ("llama", 2, False)
    assert tf.info["base"] == "model.config" and tf.manifest["config"]["model"]["arch"] == "llama"
    cands = pd.read_parquet(chain["relabel"].path("candidates/train.parquet"))
    assert (cands["candidate_index"] > 0).any()  # the Llama's beams
    for m in ("tf", *methods.relabelled()):
        [row] = dorl_generate("--model", chain[m].uri, "--context", render_conversation(SAMPLE))
        assert len(row["responses"]) == 2, m
    dt = chain["dt"]
    assert dt.json("config.json")["vocab_size"] == tf.json("config.json")["vocab_size"] + 3  # its return tokens
    assert chain["ilql"].json("ilql_config.json")["hidden_size"] == 64


@pytest.mark.slow
def test_plain_transformers_answers_as_dorl_with_a_llama(chain, tmp_path):
    """DT's folder (new return tokens in untied embeddings) in plain transformers, by its chat template."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = chain["dt"].local_dir()
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    messages = [{"role": "user" if s == "customer" else "assistant", "content": t} for s, t in SAMPLE]
    inputs = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=4)
    plain = tok.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()
    [row] = dorl_generate("--model", str(folder), "--context", render_conversation(SAMPLE))
    assert plain == row["responses"][0]
    assert tok.model_max_length == model.config.max_position_embeddings == 256


@pytest.mark.slow
def test_evaluate_and_chat_with_a_llama(chain, data_artifact, tmp_path):
    from dorl.stages.evaluate import evaluate

    cfg = config.load(preset="tiny", sets=SETS)
    ev = evaluate(cfg, method="ilql_scorer", model_uri=chain["ilql"].uri, data_uri=data_artifact.uri,
                  out_uri=str(tmp_path / "eval"), candidates_uri=chain["tf"].uri).artifact  # fmt: skip
    assert ev.json("metrics.json")["n_examples"] == 3

    script = "hi, my jeans arrived broken\n1\nAna Li\n/quit\n"
    args = ["chat", "--model", chain["dt"].uri, "-k", "2", "--preset", "tiny", *[a for s in SETS for a in ("--set", s)]]
    res = CliRunner().invoke(cli, args, input=script)
    assert res.exit_code == 0, res.output
    assert "dt model" in res.output and res.output.count("customer> ") == 2


def test_bf16_on_a_cpu(tmp_path, data_artifact):
    """model.dtype=bfloat16: training in DeepSpeed's bf16 mode (fp32 masters saved), the manifest says so, and
    generation loads the weights in bf16; with gradient checkpointing and eager attention through the engine."""
    from dorl.methods.base import load_for_generation
    from dorl.stages.train import train

    sets = [*FAST, "model.arch=llama", "model.dtype=bfloat16", "model.gradient_checkpointing=true"]
    cfg = config.load(preset="tiny", sets=[*sets, "model.attn_implementation=eager"])
    art = train(cfg, method="tf", data_uri=data_artifact.uri, out_uri=str(tmp_path / "tf")).artifact
    assert (art.info["precision"], art.info["dtype"]) == ("bf16", "bfloat16")
    assert (art.info["gradient_checkpointing"], art.info["attn_implementation"]) == (True, "eager")
    assert art.manifest["config"]["model"]["dtype"] == "bfloat16"
    assert art.json("config.json")["dtype"] == "float32"  # the fp32 master weights
    model, _ = load_for_generation(art.local_dir(), cfg.model)
    assert model.dtype == torch.bfloat16
    [row] = dorl_generate("--model", art.uri, "--context", "hi", "--set", "model.dtype=bfloat16")
    assert len(row["responses"]) == 2


def checkpoint_folder(path, arch: str, **kw):
    """A tiny random model of `arch` with GPT-2's plain tokenizer (no dorl tokens), as a hub checkpoint's folder."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from dorl.tokenizer import gpt2_tokenizer

    tok = gpt2_tokenizer()
    torch.manual_seed(0)
    shape = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "max_position_embeddings": 1024}
    model_config = AutoConfig.for_model(arch, vocab_size=len(tok), **shape, **kw)
    AutoModelForCausalLM.from_config(model_config).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.mark.parametrize(
    "preset,arch,kw,lr",
    [
        ("gpt2-medium", "gpt2", {}, 1e-4),
        # SmolLM2-135M's and Qwen2.5-0.5B's shape: grouped-query attention, tied embeddings
        ("smollm2-135m", "llama", {"num_key_value_heads": 2, "head_dim": 16, "tie_word_embeddings": True}, 5e-4),
        ("qwen2.5-0.5b", "qwen2", {"num_key_value_heads": 2, "head_dim": 16, "tie_word_embeddings": True}, 1e-4),
    ],
)
def test_checkpoint_presets_load_from_a_local_folder(tmp_path, data_artifact, preset, arch, kw, lr):
    from dorl.config.presets import CHECKPOINTS

    folder = checkpoint_folder(tmp_path / "ckpt", arch, **kw)
    hub = CHECKPOINTS[preset]["model"]["name"]
    assert config.load(preset=preset).model.name == hub  # the real checkpoint's hub id
    cfg = config.load(preset=preset, sets=[f"model.name={folder}"])
    assert (cfg.model.source, cfg.model.tokenizer, cfg.tf.lr, cfg.finetune.lr, cfg.ilql.train.lr) == (
        "pretrained", "pretrained", lr, lr, lr)  # fmt: skip
    m = methods.get("tf", cfg)
    m.check_inputs(data_artifact, None)
    tok = m.tokenizer(data_artifact, None)
    lm = m.model(tok, None)
    assert lm.config.model_type == arch and lm.get_input_embeddings().weight.shape[0] == len(tok) == 50257 + 15
    assert lm.get_output_embeddings().weight is lm.get_input_embeddings().weight
    assert lm.config.eos_token_id == tok.eos_token_id == tok.convert_tokens_to_ids("<|endoftext|>")
