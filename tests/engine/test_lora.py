"""LoRA (`model.lora_r > 0`, dorl/engine/lora.py, peft) for every method on the tiny model: only the adapters, the
added tokens' rows and ILQL's heads train; a run that crashed after a checkpoint resumes to exactly the
uninterrupted run's adapter; the folder holds the adapter (or merged weights and adapter/), which dorl and plain
peft load to the same model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dorl import config
from dorl.engine import checkpoint, lora
from dorl.errors import ConfigError
from dorl.stages.train import train
from dorl.text import REWARD_ONE, REWARD_ZERO
from tests.fixtures import make_relabel_artifact, make_tiny_model_dir

LORA = ["model.lora_r=4", "model.lora_alpha=8"]
# 6 steps of 4 examples (two micro-batches), a checkpoint every 3: the crash comes right after the first one
STEPS = {
    "tf": ["tf.max_length=32", "tf.batch_size=4", "tf.micro_batch_size=2", "tf.max_steps=6", "tf.checkpoint_every=3"],
    "finetune": ["finetune.max_length=64", "finetune.batch_size=4", "finetune.micro_batch_size=2",
                 "finetune.max_steps=6", "finetune.checkpoint_every=3", "finetune.lr=5e-3"],
    "ilql": ["ilql.train.max_length=64", "ilql.train.batch_size=4", "ilql.train.micro_batch_size=2",
             "ilql.train.max_steps=6", "ilql.train.checkpoint_every=3", "ilql.polyak_every=1", "ilql.polyak_alpha=0.1"],
}  # fmt: skip


def cfg(*sets: str):
    return config.load(preset="tiny", sets=[*LORA, *STEPS["tf"], *STEPS["finetune"], *STEPS["ilql"], *sets])


@pytest.fixture(scope="module")
def relabel(tmp_path_factory, data_artifact):
    return make_relabel_artifact(str(tmp_path_factory.mktemp("lora-relabel") / "relabel"), data_artifact)


def run(method: str, out: Path, data_artifact, relabel, base, *sets: str):
    data, b = (data_artifact, None) if method == "tf" else (relabel, base)
    return train(cfg(*sets), method=method, data_uri=data.uri, base_uri=b and b.uri, out_uri=str(out)).artifact


# ---------------------------------------------------------------- what trains


def test_adapt_trains_the_adapters_and_the_added_tokens_only(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    make_tiny_model_dir(tmp_path)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    mc = cfg().model
    full = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert lora.adapt(full, config.load(preset="tiny").model, tok) is full  # lora_r = 0: unchanged, all trained
    assert all(p.requires_grad for p in full.parameters())

    lm = lora.adapt(AutoModelForCausalLM.from_pretrained(tmp_path), mc, tok)
    assert type(lm).__name__ == "GPT2LMHeadModel" and lora.is_adapted(lm)  # the methods see the model they know
    trained = {n: p.numel() for n, p in lm.named_parameters() if p.requires_grad}
    assert trained and all("lora_" in n or "trainable_tokens_delta" in n for n in trained)
    assert sum(1 for n in trained if "c_attn.lora_A" in n) == 2  # peft's GPT-2 default: c_attn in each layer
    added = len(tok.added_tokens_encoder)
    assert trained["transformer.wte.token_adapter.trainable_tokens_delta.default"] == added * 32

    every = lora.adapt(AutoModelForCausalLM.from_pretrained(tmp_path), cfg("model.lora_target_modules=all-linear")
                       .model, tok)  # fmt: skip
    names = {n.split(".lora_A")[0].rsplit(".", 1)[-1] for n, _ in every.named_parameters() if ".lora_A" in n}
    assert names == {"c_attn", "c_proj", "c_fc"}


@pytest.mark.parametrize("bad", ["model.lora_r=-1", "model.lora_dropout=1.0", "model.lora_alpha=0"])
def test_out_of_range_lora_settings_are_refused(bad):
    with pytest.raises(ConfigError, match=bad.split("=")[0].split(".")[1]):
        cfg(bad)


def test_target_modules_the_model_lacks_are_one_config_error(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    make_tiny_model_dir(tmp_path)
    lm, tok = AutoModelForCausalLM.from_pretrained(tmp_path), AutoTokenizer.from_pretrained(tmp_path)
    with pytest.raises(ConfigError, match="model.lora_target_modules.*q_proj"):
        lora.adapt(lm, cfg("model.lora_target_modules=[q_proj]").model, tok)


def test_an_empty_target_module_list_is_refused():
    with pytest.raises(ConfigError, match="lora_target_modules"):
        cfg("model.lora_target_modules=[]")


# ---------------------------------------------------------------- every method: trains, resumes exactly, loads


def crash_after_step(monkeypatch, step: int) -> None:
    """The run dies right after its checkpoint at `step` is complete (as a kill -9 there would leave it)."""
    save = checkpoint.Checkpointer.save

    def saving(self, engine, state, write_extra):
        name = save(self, engine, state, write_extra)
        if state["step"] == step:
            raise RuntimeError("simulated crash")
        return name

    monkeypatch.setattr(checkpoint.Checkpointer, "save", saving)


UNTRAINED = {
    "tf": lambda tok: list(tok.added_tokens_encoder),
    "dt": lambda tok: [REWARD_ZERO, REWARD_ONE],
    **{m: lambda tok: [] for m in ("tf_top", "tf_all", "ilql")},
}


def weights(folder: Path) -> dict:
    names = ["adapter_model.safetensors", "adapter/adapter_model.safetensors", "model.safetensors"]
    names += ["ilql_heads.safetensors"]
    return {n: load_file(folder / n) for n in names if (folder / n).exists()}


@pytest.mark.parametrize("method", ["tf", "tf_top", "tf_all", "dt", "ilql"])
def test_every_method_trains_adapters_and_resumes_exactly(
    method, tmp_path, monkeypatch, data_artifact, relabel, tiny_model_artifact
):
    from transformers import AutoTokenizer

    ref = run(method, tmp_path / "ref", data_artifact, relabel, tiny_model_artifact)
    with monkeypatch.context() as m:
        crash_after_step(m, 3)
        with pytest.raises(RuntimeError, match="simulated crash"):
            run(method, tmp_path / "out", data_artifact, relabel, tiny_model_artifact)
    out = run(method, tmp_path / "out", data_artifact, relabel, tiny_model_artifact)
    assert out.info["resumed_from_step"] == 3
    got, want = weights(Path(out.uri)), weights(Path(ref.uri))
    assert got.keys() == want.keys() and got
    for name in want:
        assert got[name].keys() == want[name].keys()
        for k in want[name]:
            torch.testing.assert_close(got[name][k], want[name][k], rtol=0, atol=0, msg=f"{name}: {k}")

    info = out.info["lora"]
    assert info["r"] == 4 and out.config["lora"]["r"] == 4  # recorded: another output than full fine-tuning
    folder = Path(out.uri)
    if method == "tf":  # a fresh model (model.source=config) is saved nowhere: the folder is merged
        assert info["saved"] == "merged" and (folder / "config.json").exists() and (folder / "adapter").is_dir()
        from transformers import AutoTokenizer

        from dorl.engine.models import model_from_config

        fresh = model_from_config(cfg().model, AutoTokenizer.from_pretrained(folder), cfg().tf.seed).state_dict()
        frozen = "transformer.h.0.mlp.c_fc.weight"  # no adapter there: the fresh model's, rebuilt from its seed
        torch.testing.assert_close(got["model.safetensors"][frozen], fresh[frozen], rtol=0, atol=0)
    else:  # the adapter alone, on the base artifact's folder
        assert info["saved"] == "adapter" and not (folder / "config.json").exists()
        adapter = json.loads((folder / "adapter_config.json").read_text())
        assert adapter["base_model_name_or_path"] == str(Path(tiny_model_artifact.uri).resolve())
        assert adapter["r"] == 4 and adapter["lora_alpha"] == 8
    # the embedding rows nothing trained before: every added token for the base tf, DT's return tokens
    adapter = json.loads((folder / ("adapter" if method == "tf" else "") / "adapter_config.json").read_text())
    tok = AutoTokenizer.from_pretrained(folder)
    rows = sorted(tok.convert_tokens_to_ids(t) for t in UNTRAINED[method](tok))
    assert (adapter["trainable_token_indices"] or []) == rows
    if method == "ilql":  # the heads train fully beside the adapters
        heads = sum(v.numel() for k, v in got["ilql_heads.safetensors"].items() if not k.startswith("target"))
        assert info["trainable"] > heads
        assert "LoRA adapter" in (folder / "README.md").read_text()


# ---------------------------------------------------------------- loading: dorl, plain peft, merged


@pytest.fixture(scope="module")
def dt_adapter(tmp_path_factory, data_artifact, relabel, tiny_model_artifact):
    out = tmp_path_factory.mktemp("lora-dt") / "dt"
    return run("dt", out, data_artifact, relabel, tiny_model_artifact, "finetune.lr=5e-2")


def greedy_ids(model, tok, text: str) -> list[int]:
    inputs = tok(text, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, do_sample=False, max_new_tokens=8, min_new_tokens=8)
    return out[0, inputs["input_ids"].shape[1] :].tolist()


def test_plain_peft_loads_the_adapter_as_dorl_does(dt_adapter, tiny_model_artifact):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from dorl.methods.base import load_for_generation
    from dorl.methods.dt import dt_prompt
    from tests.methods.helpers import CTX

    folder = dt_adapter.local_dir()
    ours, tok = load_for_generation(folder)  # what dorl generate / chat / evaluate load
    base = AutoModelForCausalLM.from_pretrained(tiny_model_artifact.local_dir())
    theirs = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_artifact.local_dir()), folder)
    ids = tok(dt_prompt(CTX), return_tensors="pt")["input_ids"]
    with torch.no_grad():
        a, b, c = ours(ids).logits, theirs(ids).logits, base(ids).logits
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    assert (a - c).abs().max() > 1e-2  # the adapter changed the model: the comparison can fail
    assert greedy_ids(ours, tok, dt_prompt(CTX)) == greedy_ids(theirs, tok, dt_prompt(CTX))


def test_merged_folder_loads_in_plain_transformers_and_keeps_the_adapter(
    tmp_path, dt_adapter, data_artifact, relabel, tiny_model_artifact
):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from dorl.methods.dt import dt_prompt
    from tests.methods.helpers import CTX

    sets = ("finetune.lr=5e-2", "model.lora_merge=true")
    merged = Path(run("dt", tmp_path / "dt", data_artifact, relabel, tiny_model_artifact, *sets).uri)
    assert (merged / "model.safetensors").exists() and not (merged / "adapter_config.json").exists()
    tok = AutoTokenizer.from_pretrained(merged)
    plain = AutoModelForCausalLM.from_pretrained(merged)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_artifact.local_dir())
    adapter = PeftModel.from_pretrained(base, merged / "adapter")
    ids = tok(dt_prompt(CTX), return_tensors="pt")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(plain(ids).logits, adapter(ids).logits, rtol=0, atol=1e-5)
    # the same training as the adapter-only folder: the same adapter
    want = load_file(Path(dt_adapter.uri) / "adapter_model.safetensors")
    got = load_file(merged / "adapter" / "adapter_model.safetensors")
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=0)


def test_methods_train_on_an_adapter_base(tmp_path, data_artifact, relabel, tiny_model_artifact, monkeypatch):
    """A tf trained with LoRA on a model folder is an adapter folder too: a method starts from it (merged), and its
    own adapter names that folder as its base."""
    from dorl import readers

    base_dir = tmp_path / "pretrained"
    make_tiny_model_dir(base_dir)
    sets = ("model.source=pretrained", f"model.name={base_dir}", "model.tokenizer=pretrained")
    tf = run("tf", tmp_path / "tf", data_artifact, relabel, None, *sets)
    assert tf.info["lora"]["saved"] == "adapter"
    dt = run("tf_all", tmp_path / "tf_all", data_artifact, relabel, tf)
    adapter = json.loads((Path(dt.uri) / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(Path(tf.uri).resolve())
    lm = readers.causal_lm(dt.uri)  # adapter on adapter on the pretrained folder, merged
    assert type(lm).__name__ == "GPT2LMHeadModel"
    # the methods' length check reads the adapter base's config (512 positions)
    with pytest.raises(ConfigError, match="exceeds the 512 positions"):
        run("tf_all", tmp_path / "long", data_artifact, relabel, tf, "finetune.max_length=600")


def test_an_adapter_whose_base_is_gone_is_one_clear_error(tmp_path, dt_adapter):
    import shutil

    from dorl import readers
    from dorl.errors import DataError

    folder = tmp_path / "copy"
    shutil.copytree(dt_adapter.local_dir(), folder)
    cfg = json.loads((folder / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = str(tmp_path / "gone")
    (folder / "adapter_config.json").write_text(json.dumps(cfg))
    with pytest.raises(DataError, match="not on this machine.*lora_merge"):
        readers.causal_lm(folder)


def test_zero_stages_train_the_same_adapter_from_the_trainable_weights_alone(
    tmp_path, monkeypatch, data_artifact, relabel, tiny_model_artifact
):
    from dorl.engine import trainer

    handed = []  # the number of weights handed to DeepSpeed's optimizer (counted before ZeRO partitions them)
    groups = trainer.param_groups

    def counting(module, wd):
        out = groups(module, wd)
        handed.append(sum(p.numel() for g in out for p in g["params"]))
        return out

    monkeypatch.setattr(trainer, "param_groups", counting)
    out = {}
    for z in (0, 2, 3):
        sets = (f"finetune.zero_stage={z}",)
        art = run("dt", tmp_path / f"z{z}", data_artifact, relabel, tiny_model_artifact, *sets)
        out[z] = load_file(Path(art.uri) / "adapter_model.safetensors")
        assert handed[-1] == art.info["lora"]["trainable"] == 1088  # adapters (1,024) + 2 return-token rows (2 x 32)
    for z in (2, 3):
        for k in out[0]:
            torch.testing.assert_close(out[z][k], out[0][k], rtol=0, atol=1e-6, msg=f"ZeRO-{z}: {k}")


def test_dorl_generate_answers_from_the_adapter_folder_as_plain_peft_does(dt_adapter, tiny_model_artifact):
    from click.testing import CliRunner
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from dorl.cli import cli
    from dorl.model_folder import SAMPLE
    from dorl.text import render_conversation

    folder = dt_adapter.local_dir()
    tok = AutoTokenizer.from_pretrained(folder)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_artifact.local_dir())
    model = PeftModel.from_pretrained(base, folder)
    messages = [{"role": "user" if s == "customer" else "assistant", "content": t} for s, t in SAMPLE]
    inputs = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=8)  # greedy, stops at <_rep_end_> (generation_config.json)
    plain = tok.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()
    args = ["generate", "--model", str(folder), "--context", render_conversation(SAMPLE), "--json", "-k", "1"]
    res = CliRunner().invoke(cli, [*args, "--preset", "tiny", "--set", "eval.max_new_tokens=8"])
    assert res.exit_code == 0, res.output
    [row] = [json.loads(line) for line in res.output.splitlines() if line.startswith("{")]
    assert row["responses"][0] == plain


def test_a_merged_ilql_folder_still_names_its_decoding_code(tmp_path, data_artifact, relabel, tiny_model_artifact):
    """LoRA's merged folder rewrites config.json: the shipped ILQL code must be named in it again, so that
    trust_remote_code loading decodes with the heads (an adapter-only folder has no config.json to name it in)."""
    from dorl.ilql.io import AUTO_MAP, CODE_FILE

    folder = Path(
        run("ilql", tmp_path / "ilql", data_artifact, relabel, tiny_model_artifact, "model.lora_merge=true").uri
    )
    config = json.loads((folder / "config.json").read_text())
    assert (folder / CODE_FILE).is_file() and AUTO_MAP.items() <= config["auto_map"].items()


@pytest.mark.parametrize("method", ["kto", "dpo", "awr"])
def test_the_baselines_train_adapters(method, tmp_path, data_artifact, relabel, tiny_model_artifact):
    """The preference methods get LoRA from the engine like every method: an adapter folder on the base, and the
    reference log-probs are the starting model's (the adapters start at zero)."""
    out = run(method, tmp_path / method, data_artifact, relabel, tiny_model_artifact, f"{method}.train.max_steps=2")
    folder = Path(out.uri)
    assert out.info["lora"]["saved"] == "adapter" and (folder / "adapter_model.safetensors").is_file()
