"""`dorl export`: scored candidates as TRL-ready SFT, KTO and DPO datasets, loaded into TRL's own trainers."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from dorl.config import load
from dorl.relabel.export import Format, trl_rows
from dorl.stages.data import prepare
from dorl.stages.relabel import relabel
from dorl.store import Artifact
from tests.conftest import REPO, run_dorl

EXAMPLES = REPO / "docs" / "examples"
SPLITS = ("train", "validation")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The example's conversations, relabelled from its KTO file alone, exported."""
    root = tmp_path_factory.mktemp("export")
    cfg = load()
    data = prepare(cfg, dataset="support", source=str(EXAMPLES / "support-chats.jsonl"), out_uri=str(root / "data"))
    scored = str(EXAMPLES / "support-scored.jsonl")
    rl = relabel(cfg, data_uri=data.artifact.uri, scored=scored, out_uri=str(root / "relabel")).artifact
    r = run_dorl("export", "--relabel", rl.uri, "--out", str(root / "trl"))
    assert r.returncode == 0, r.stderr
    return rl, Artifact(str(root / "trl"), expect_stage="export/trl")


def _jsonl(art: Artifact, name: str) -> list[dict]:
    return [json.loads(line) for line in art.read_bytes(name).decode().splitlines()]


def test_the_exports_hold_the_scored_rows_in_trls_conversational_format(exported):
    rl, trl = exported
    scored = [json.loads(line) for line in (EXAMPLES / "support-scored.jsonl").read_text().splitlines()]
    assert trl.info["format"] == "conversational"
    for split in SPLITS:
        cands = pd.read_parquet(rl.path(f"candidates/{split}.parquet"))
        kto, sft, dpo = (_jsonl(trl, f"{k}/{split}.jsonl") for k in ("kto", "sft", "dpo"))
        assert len(kto) == len(cands) and sum(r["label"] for r in kto) == len(sft) == (cands["return"] == 1).sum()
        for row in kto:  # each one of the file's rows, as it was written (TRL's KTO format in, TRL's KTO format out)
            assert {"prompt": row["prompt"], "completion": row["completion"], "label": row["label"]} in scored
        assert all(r["label"] for r in kto if r in [{**s, "label": True} for s in sft])
        assert len(dpo) == cands.groupby("context").ngroups  # one true and one false reply per context
        for pair in dpo:
            assert {"prompt": pair["prompt"], "completion": pair["chosen"], "label": True} in scored
            assert {"prompt": pair["prompt"], "completion": pair["rejected"], "label": False} in scored
    assert kto[0]["prompt"][0]["role"] == "system"  # the system prompt travels with the prompt


def test_standard_format_and_dpo_ties(tmp_path, data_artifact):
    """A public-style artifact (text contexts): dorl's prompt text; DPO takes best vs worst reward, skips ties."""
    from tests.fixtures import make_relabel_artifact

    relabelled = make_relabel_artifact(str(tmp_path / "rl"), data_artifact)
    table = pd.read_parquet(relabelled.path("candidates/train.parquet"))
    rows, skipped = trl_rows(table, 2, Format(False))
    first = table.iloc[0]
    assert rows["kto"][0] == {"prompt": first.context + "<_rep_start_>", "completion": first.candidate + "<_rep_end_>",
                              "label": bool(first["return"] == 1)}  # fmt: skip
    contexts = table.groupby(["dialogue_id", "turn_index", "context"], sort=False)
    assert len(rows["dpo"]) + sum(skipped.values()) == contexts.ngroups
    for pair, (_, group) in zip(
        rows["dpo"], [g for g in contexts if g[1].reward.max() > g[1].reward.min()], strict=False
    ):
        best = group.loc[group.reward.idxmax()]
        assert pair["chosen"] == best.candidate + "<_rep_end_>"
    tie = pd.DataFrame({"dialogue_id": ["d"] * 2, "turn_index": [1, 1], "context": ["<_soc_>"] * 2,
                        "candidate": ["a", "b"], "reward": [0.5, 0.5], "return": [0, 0]})  # fmt: skip
    rows, skipped = trl_rows(tie, 2, Format(False))
    assert rows["dpo"] == [] and skipped["tie"] == 1 and rows["sft"] == []


def test_a_public_datasets_export_can_be_conversational_for_a_chat_model(tmp_path, data_artifact):
    """--format conversational: a public dataset's customer/agent contexts become user/assistant messages."""
    from dorl.text import parse_context
    from tests.fixtures import make_relabel_artifact

    rl = make_relabel_artifact(str(tmp_path / "rl"), data_artifact)
    for form, expected in (("auto", "standard (dorl's prompt text)"), ("conversational", "conversational")):
        out = tmp_path / form
        r = run_dorl("export", "--relabel", rl.uri, "--out", str(out), "--kinds", "kto", "--format", form)
        assert r.returncode == 0, r.stderr
        assert Artifact(str(out), expect_stage="export/trl").info["format"] == expected
    table = pd.read_parquet(rl.path("candidates/train.parquet"))
    row = _jsonl(Artifact(str(tmp_path / "conversational")), "kto/train.jsonl")[0]
    turns = parse_context(table.iloc[0].context)
    assert row["prompt"] == [{"role": {"customer": "user", "agent": "assistant"}[s], "content": t} for s, t in turns]
    assert row["completion"] == [{"role": "assistant", "content": table.iloc[0].candidate}]
    r = run_dorl("export", "--relabel", rl.uri, "--out", str(tmp_path / "x"), "--format", "chatml")
    assert r.returncode == 2 and "--format: chatml is not one of auto, conversational, standard" in r.stderr


def test_bad_requests_are_one_line(exported, tmp_path):
    rl, _ = exported
    r = run_dorl("export", "--relabel", rl.uri, "--out", str(tmp_path / "o"), "--kinds", "sft,ppo")
    assert r.returncode == 2 and "--kinds: ppo is not one of sft, kto, dpo" in r.stderr
    r = run_dorl("export", "--relabel", str(tmp_path / "none"), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "no artifact at" in r.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("kind", ["sft", "kto", "dpo"])
def test_each_export_trains_one_step_in_its_trl_trainer(exported, tmp_path, kind):
    import datasets
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from dorl import model_folder
    from tests.fixtures import make_tiny_model_dir

    _, trl = exported
    ds = datasets.load_dataset("json", data_dir=str(trl.local_dir() / kind))
    assert set(ds) == {"train", "validation"} and ds["train"].num_rows > 0
    make_tiny_model_dir(tmp_path / "m")
    tok = AutoTokenizer.from_pretrained(tmp_path / "m")
    tok.chat_template = model_folder.chat_template()  # dorl's format: system, user and assistant
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "m")
    before = [p.detach().clone() for p in model.parameters()]
    common = dict(output_dir=str(tmp_path / "out"), per_device_train_batch_size=2, max_steps=1, report_to=[],
                  save_strategy="no", logging_strategy="no", use_cpu=True, disable_tqdm=True)  # fmt: skip
    if kind == "sft":
        from trl import SFTConfig as Config
        from trl import SFTTrainer as Trainer
    elif kind == "kto":
        from trl import KTOConfig as Config
        from trl import KTOTrainer as Trainer
    else:
        from trl import DPOConfig as Config
        from trl import DPOTrainer as Trainer
    trainer = Trainer(model=model, args=Config(**common), train_dataset=ds["train"], processing_class=tok)
    out = trainer.train()
    assert out.global_step == 1 and torch.isfinite(torch.tensor(out.training_loss))
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))  # it learned
