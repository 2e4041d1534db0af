"""ILQL on the shared training engine: it learns, keeps the best weights, saves a folder that HF and
`dorl.ilql.io` load, moves the target heads by Polyak averaging from DeepSpeed's fp32 master weights
(bf16 included), and gives the same model under ZeRO-3 (the tied embedding partitioned)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from dorl.engine import trainer as engine
from dorl.ilql import io
from dorl.ilql.data import Collator, ReturnStats, encode
from dorl.ilql.decode import decode
from dorl.ilql.loss import LossConfig, ilql_loss
from dorl.stages.train import train
from dorl.text import PAD_, prompt
from tests.ilql.conftest import ilql_config


def test_trains_saves_and_loads_back(trained, ilql_relabel):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    info = trained.info
    assert trained.stage == "train/ilql" and info["method"] == "ilql" and info["heads"] == "efficient"
    assert info["steps"] == 3 * info["steps_per_epoch"] == 3 * (252 // 8)
    assert info["data"]["train"]["samples"] == 252 and info["data"]["validation"]["samples"] == 48
    # the default schedule is scaled to the run: alpha = 5 / (0.05 * 93 steps), at most 1; the manifest says so
    polyak = info["data"]["polyak"]
    assert polyak["setting"] == "auto" and polyak["alpha"] == 1.0 and polyak["every"] == 5
    assert not polyak["too_short"] and polyak["target_weight"] == 1.0
    # the loss falls, in training and on the validation set
    loss, vals = info["loss"], [v["loss"] for v in info["loss"]["val_loss"]]
    assert loss["train_loss_last"] < loss["train_loss_first"] - 0.5
    assert len(vals) == 3 and vals[-1] < vals[0] - 0.2
    log = [json.loads(x) for x in trained.read_bytes("train_log.jsonl").decode().splitlines()]
    first = next(r for r in log if r["kind"] == "train")
    assert {"loss_q", "loss_v", "loss_cql", "loss_ce", "v", "q", "target_q", "advantage"} <= first.keys()
    assert "actions" not in first  # a count, not a mean over actions
    for name in ("config.json", "model.safetensors", "tokenizer.json", io.HEADS_FILE, io.CONFIG_FILE, "loss.png"):
        assert name in trained.files

    # returns standardised with the training set's mean and unbiased std (pandas' default ddof=1)
    returns = pd.read_parquet(trained.path("training_set/train.parquet"))["return"]  # the rows it trained on
    saved = trained.json(io.CONFIG_FILE)
    assert saved["return_mean"] == pytest.approx(returns.mean(), abs=1e-12)
    assert saved["return_std"] == pytest.approx(returns.std(), abs=1e-12)
    assert saved["extra"]["tau"] == 0.7 and "beta" not in saved["extra"]  # decoding is chosen at evaluation

    # the policy is a plain HF model; with its heads it decodes
    folder = trained.local_dir()
    plain = AutoModelForCausalLM.from_pretrained(folder)
    assert plain.dtype == torch.float32
    model = io.load(folder)
    ids = torch.tensor([[5, 17, 42, 9]])
    assert torch.equal(plain(ids).logits, model.lm(ids).logits)
    tok = AutoTokenizer.from_pretrained(folder)
    tok.padding_side = "left"
    out = decode(model, tok, [prompt("<_soc_><_cus_start_>My boots arrived broken.<_cus_end_>")], beta=1.0)
    assert len(out.texts) == 1 and isinstance(out.texts[0], str)

    # keep-best: the saved model's ILQL loss over every validation action is the best validation loss (validation
    # samples prompted as evaluation prompts: the prompt's last eval.prompt_tokens tokens)
    val = pd.read_parquet(trained.path("training_set/validation.parquet"))
    samples = encode(val, tok, 256, ReturnStats(returns.mean(), returns.std(), len(returns)), prompt_tokens=96)
    batch = Collator(tok.convert_tokens_to_ids(PAD_))(samples)
    with torch.no_grad():
        out = model(batch["input_ids"], batch["state_mask"])
        val_loss, _ = ilql_loss(out, batch["rewards"], LossConfig())
    assert info["selected"] == "best"
    assert val_loss.item() == pytest.approx(info["best_val_loss"], rel=1e-5)
    # ... and its value ranking (V at each validation response's last state) is the one logged and recorded
    assert info["keep_best_by"] == "val_loss" and info["best_score"] == info["best_val_loss"]
    assert info["validation"]["value_ranking"] == pytest.approx(saved_value_ranking(trained, val))


def saved_value_ranking(model_art, val) -> float:
    """The value ranking of a saved ILQL model on a validation frame, computed apart from training as the scorer
    values responses (prompts cut to eval.prompt_tokens = 96), over the model candidates only (no human response)."""
    from dorl.ilql.ranking import score_texts, value_ranking
    from dorl.methods.base import load_tokenizer

    val = val[val["candidate_index"] != 0]
    model, tok = io.load(model_art.local_dir()), load_tokenizer(model_art.local_dir())
    values = score_texts(model, tok, list(val["prompt"]), list(val["response"]), prompt_tokens=96)
    return value_ranking(values, val["prompt"].to_numpy(), val["return"].to_numpy())["value_ranking"]


def test_keep_best_by_value_ranking_picks_the_step_the_metric_says(tmp_path, ilql_relabel, tiny_model_artifact):
    cfg = ilql_config("ilql.train.max_steps=12", "ilql.train.eval_every=3", "ilql.train.lr=5e-3",
                      "ilql.keep_best_by=value_ranking")  # fmt: skip
    art = train(cfg, method="ilql", data_uri=ilql_relabel.uri, base_uri=tiny_model_artifact.uri,
                out_uri=str(tmp_path / "ilql")).artifact  # fmt: skip
    log = [json.loads(x) for x in art.read_bytes("train_log.jsonl").decode().splitlines()]
    evals = [r for r in log if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [3, 6, 9, 12]
    best = max(evals, key=lambda r: r["value_ranking"])  # the first of equal ones
    # here (measured) that is step 9, while the validation loss falls to step 12: the two selections differ
    info = art.info
    assert info["keep_best_by"] == "value_ranking" and info["selected"] == "best"
    assert info["best_step"] == info["selected_step"] == best["step"]
    assert info["best_score"] == best["value_ranking"] and info["validation"]["value_ranking"] == best["value_ranking"]
    val = pd.read_parquet(art.path("training_set/validation.parquet"))
    assert saved_value_ranking(art, val) == pytest.approx(best["value_ranking"])


def test_bf16_targets_follow_the_fp32_master_q_heads(tmp_path, ilql_relabel, tiny_model_artifact):
    """alpha = 1 every 2 steps, 4 steps: the targets are a copy of the Q heads' fp32 master weights
    (the bf16 copies DeepSpeed trains with would lose the low bits), stored in fp32."""
    sets = ["ilql.train.precision=bf16", "ilql.train.max_steps=4", "ilql.train.keep_best=false"]
    sets += ["ilql.polyak_alpha=1.0", "ilql.polyak_every=2"]
    art = train(
        ilql_config(*sets),
        method="ilql",
        data_uri=ilql_relabel.uri,
        base_uri=tiny_model_artifact.uri,
        out_uri=str(tmp_path / "bf16"),
    ).artifact
    assert art.info["precision"] == "bf16"
    heads = load_file(art.path(io.HEADS_FILE))
    assert {t.dtype for t in heads.values()} == {torch.float32}
    targets = {k: v for k, v in heads.items() if k.startswith("target_q_heads.")}
    assert len(targets) == 10  # two heads: mlp.0, mlp.2 (weight, bias) and the per-token bias
    for k, t in targets.items():
        torch.testing.assert_close(t, heads[k.replace("target_q_heads.", "q_heads.")], rtol=0, atol=0)
    assert any(not torch.equal(t, t.bfloat16().float()) for t in targets.values())
    # the target copy of the (tied) output embedding is E's fp32 master too
    lm = load_file(art.path("model.safetensors"))
    emb = lm.get("lm_head.weight", lm.get("transformer.wte.weight"))
    torch.testing.assert_close(heads["target_emb"], emb.float(), rtol=0, atol=0)
    assert not torch.equal(heads["target_emb"], heads["target_emb"].bfloat16().float())
    assert art.info["data"]["polyak"]["too_short"] is False  # alpha 1: the targets are the heads


def files(art) -> dict[str, torch.Tensor]:
    return {**load_file(art.path("model.safetensors")), **load_file(art.path(io.HEADS_FILE))}


class CrashingILQL:
    """ILQL failing after step 5 while `armed`: a crash between two checkpoints."""

    armed = False

    def __new__(cls, cfg, name):
        from dorl.methods.ilql import ILQL

        class Crashing(ILQL):
            def on_step_end(self, module, step):
                super().on_step_end(module, step)
                if CrashingILQL.armed and step == 5:
                    raise RuntimeError("simulated crash")

        return Crashing(cfg, "ilql")


def test_zero3_partitions_the_tied_embedding_and_resumes_exactly(
    tmp_path, ilql_relabel, tiny_model_artifact, monkeypatch
):
    """Every parameter partitioned (no persistence threshold), so the efficient heads' reads of the LM's
    output embedding outside the LM head must be gathered (`register_external_parameter`)."""
    from dorl import methods as method

    ds_config = engine.ds_config

    def partition_everything(*args, **kw):
        cfg = ds_config(*args, **kw)
        cfg["zero_optimization"]["stage3_param_persistence_threshold"] = 0
        return cfg

    monkeypatch.setattr(engine, "ds_config", partition_everything)
    monkeypatch.setitem(method.REGISTRY, "ilql_crashy", "tests.ilql.test_method:CrashingILQL")
    sets = ["ilql.train.max_steps=8", "ilql.train.checkpoint_every=3", "ilql.train.eval_every=2"]
    sets += ["ilql.polyak_every=1", "ilql.polyak_alpha=0.05", "ilql.train.log_every=2"]

    def run(name, *more, method="ilql"):
        out = str(tmp_path / name)
        return train(
            ilql_config(*sets, *more),
            method=method,
            data_uri=ilql_relabel.uri,
            base_uri=tiny_model_artifact.uri,
            out_uri=out,
        ).artifact

    linear = torch.nn.functional.linear
    zero0, zero3 = files(run("z0")), files(run("z3", "ilql.train.zero_stage=3"))
    # ZeRO-3 swaps F.linear process-wide; later stages in this process must compute as before
    assert torch.nn.functional.linear is linear
    assert zero0.keys() == zero3.keys()
    # ZeRO-3 computes the LM's cross-entropy unfused (its head must gather the partitioned weight),
    # ZeRO-0 with dorl.ilql.lse: the same math, apart by fp32 rounding (measured 3.6e-6 after training)
    for k in zero0:
        torch.testing.assert_close(zero3[k], zero0[k], rtol=0, atol=1e-5)

    # bf16 + ZeRO-3, killed at step 5 (after the step-3 checkpoint; a validation at step 2 came before it)
    z3bf16 = ("ilql.train.zero_stage=3", "ilql.train.precision=bf16")
    want = files(run("ref", *z3bf16, method="ilql_crashy"))
    monkeypatch.setattr(CrashingILQL, "armed", True)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run("crashed", *z3bf16, method="ilql_crashy")
    monkeypatch.setattr(CrashingILQL, "armed", False)
    resumed = run("crashed", *z3bf16, method="ilql_crashy")
    assert resumed.info["resumed_from_step"] == 3
    got = files(resumed)
    assert got.keys() == want.keys() and any(k.startswith("target_q_heads.") for k in got)
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=0)
