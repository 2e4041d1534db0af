"""Training in this process on the tiny model: the loss falls, the outputs load, the best model is kept."""

import json

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from dorl import config
from dorl.stages.train import train
from dorl.store import Artifact
from dorl.text import REP_START
from tests.fixtures import make_relabel_artifact

TF = ["tf.max_length=32", "tf.batch_size=4", "tf.micro_batch_size=2", "tf.log_every=2", "tf.checkpoint_every=4"]


def tiny(*sets):
    return config.load(preset="tiny", sets=list(sets))


def test_base_tf_learns_and_saves_a_plain_hf_folder(tmp_path, data_artifact):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = str(tmp_path / "tf")
    art = train(tiny(*TF, "tf.epochs=3"), method="tf", data_uri=data_artifact.uri, out_uri=out).artifact
    assert art.stage == "train/tf"
    log = [json.loads(x) for x in (tmp_path / "tf" / "train_log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if r["kind"] == "train"]
    vals = [r["val_loss"] for r in log if r["kind"] == "eval"]
    assert len(vals) == 3  # one per epoch
    assert losses[-1] < losses[0] - 0.3 and vals[-1] < vals[0]
    info, metrics = art.info, art.manifest["metrics"]
    assert info["steps"] == 3 * info["steps_per_epoch"] and info["batch"] == {
        "effective": 4,
        "micro": 2,
        "accumulation": 2,
    }
    assert info["selected"] == "last" and info["loss"]["val_loss"][-1]["loss"] == pytest.approx(vals[-1])
    assert metrics["tokens"] == info["steps"] * 4 * 32 and metrics["tokens_per_s"] > 0
    # a plain HF folder: safetensors, the tokenizer with the special tokens, logs and the plot
    for name in ("model.safetensors", "config.json", "tokenizer.json", "loss.png", "train_log.jsonl"):
        assert name in art.files
    assert any(n.startswith("tensorboard/events.out.tfevents") for n in art.files)
    assert not (tmp_path / "tf" / "checkpoints").exists()  # only for resuming: gone once committed
    lm = AutoModelForCausalLM.from_pretrained(art.local_dir())
    tok = AutoTokenizer.from_pretrained(art.local_dir())
    assert REP_START in tok.get_vocab() and lm.get_input_embeddings().weight.shape[0] == len(tok)
    # the same command again: complete, skipped
    again = train(tiny(*TF, "tf.epochs=3"), method="tf", data_uri=data_artifact.uri, out_uri=out).artifact
    assert again.manifest["created"] == art.manifest["created"]


def _val_loss_of(folder, lines: list[str]) -> float:
    """Mean cross-entropy over the response tokens and <_rep_end_> of `lines`, computed with HF alone."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    lm = AutoModelForCausalLM.from_pretrained(folder).eval()
    total, count = 0.0, 0
    for text in lines:
        ids = tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
        head = text[: text.rindex(REP_START) + len(REP_START)]
        n_masked = len(tok(head, add_special_tokens=False)["input_ids"])
        labels = ids.clone()
        labels[:, :n_masked] = -100
        with torch.no_grad():
            total += float(lm(input_ids=ids, labels=labels).loss) * (ids.shape[1] - n_masked)
        count += ids.shape[1] - n_masked
    return total / count


def test_methods_keep_the_weights_with_the_best_validation_loss(tmp_path, data_artifact, tiny_model_artifact):
    relabel = make_relabel_artifact(str(tmp_path / "relabel"), data_artifact)
    sets = ["finetune.batch_size=8", "finetune.micro_batch_size=8", "finetune.epochs=2", "finetune.eval_every=3"]
    # the learning rate ramps up to one that wrecks the model: the best weights come before the last
    sets += ["finetune.lr=1.0", "finetune.scheduler=constant", "finetune.warmup_steps=18", "finetune.log_every=3"]
    art = train(
        tiny(*sets),
        method="tf_top",
        data_uri=relabel.uri,
        base_uri=tiny_model_artifact.uri,
        out_uri=str(tmp_path / "tf_top"),
    ).artifact
    info = art.info
    vals = info["loss"]["val_loss"]
    best = min(vals, key=lambda r: r["loss"])
    assert info["selected"] == "best" and info["best_step"] == best["step"] == info["selected_step"]
    assert best["step"] < info["steps"]  # so the output is not simply the last weights
    lines = pd.read_parquet(art.path("training_set/validation.parquet"))["text"].tolist()  # what it validated on
    assert _val_loss_of(art.local_dir(), lines) == pytest.approx(best["loss"], rel=1e-4)
    assert info["data"]["train"]["lines"] == len(pd.read_parquet(art.path("training_set/train.parquet")))


class CrashingLM:
    """The tf method, failing after step 3 while `armed` (a crash between two checkpoints)."""

    armed = False

    def __new__(cls, cfg, name):
        from dorl.methods.tf import TF as LanguageModel

        class Crashing(LanguageModel):
            def on_step_end(self, module, step):
                if CrashingLM.armed and step == 3:
                    raise RuntimeError("simulated crash")

        return Crashing(cfg, name)


def test_s3_output_resumes_on_a_fresh_machine(tmp_path, data_artifact, s3, monkeypatch):
    from dorl import methods as method
    from dorl.store import Location

    monkeypatch.setitem(method.REGISTRY, "tf_crashy", "tests.stages.train.test_train:CrashingLM")
    cfg = tiny(*TF, "tf.max_steps=6", "tf.checkpoint_every=2", "model.dropout=0.0")
    ref = train(cfg, method="tf_crashy", data_uri=data_artifact.uri, out_uri=str(tmp_path / "ref")).artifact

    uri = f"s3://{s3}/run/tf"
    monkeypatch.setattr(CrashingLM, "armed", True)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg, method="tf_crashy", data_uri=data_artifact.uri, out_uri=uri)
    assert Location(uri).exists("checkpoints/latest") and not Location(uri).exists("manifest.json")
    monkeypatch.setattr(CrashingLM, "armed", False)
    monkeypatch.setenv("DORL_CACHE", str(tmp_path / "fresh-cache"))  # another machine: nothing local
    art = train(cfg, method="tf_crashy", data_uri=data_artifact.uri, out_uri=uri).artifact
    assert art.info["resumed_from_step"] == 2
    assert not Location(uri).exists("checkpoints")
    got, want = load_file(Artifact(uri).path("model.safetensors")), load_file(ref.path("model.safetensors"))
    assert got.keys() == want.keys()
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=0)
    # the resumed run's log continues the checkpoint's: every step logged once
    log = [json.loads(x) for x in Artifact(uri).read_bytes("train_log.jsonl").decode().splitlines()]
    assert [r["step"] for r in log if r["kind"] == "train"] == [2, 4, 6]


def test_bf16_training_saves_fp32_master_weights(tmp_path, data_artifact):
    from transformers import AutoModelForCausalLM

    cfg = tiny(*TF, "tf.max_steps=2", "tf.precision=bf16")
    art = train(cfg, method="tf", data_uri=data_artifact.uri, out_uri=str(tmp_path / "bf16")).artifact
    assert art.info["precision"] == "bf16"
    weights = load_file(art.path("model.safetensors"))
    assert {v.dtype for v in weights.values()} == {torch.float32}
    # DeepSpeed's fp32 masters, not the bf16 weights the model computes with (cast back to fp32)
    assert any(not torch.equal(w, w.bfloat16().float()) for w in weights.values())
    assert art.json("config.json")["dtype"] == "float32"
    assert AutoModelForCausalLM.from_pretrained(art.local_dir()).dtype == torch.float32


class _Rank:
    """One rank of a two-process run, its control messages in `sent` (rank 0) or from `told` (the others)."""

    def __init__(self, rank: int, told=None):
        self.rank, self.local_rank, self.world, self.told, self.sent = rank, rank, 2, told, []
        self.main = self.local_main = rank == 0

    def broadcast(self, obj=None):
        self.sent.append(obj)
        return obj if self.main else self.told

    def barrier(self):
        pass


def test_a_transient_error_on_rank_0_is_transient_on_every_rank(tmp_path, data_artifact, monkeypatch):
    """Rank 0 fails before training with a transient store error (S3 throttling): it raises it (exit 75) and tells
    the other ranks, which exit 75 too (before: they were told a user error, and the group's code was 2)."""
    import dorl.stages.train as stage
    from dorl.errors import TransientError, TransientStoreError, UserError

    def throttled(*a, **k):
        raise TransientStoreError("s3://b/tf: SlowDown after 5 attempts")

    monkeypatch.setattr(stage, "run_stage", throttled)
    args = dict(method="tf", data_uri=data_artifact.uri, out_uri=str(tmp_path / "tf"))
    zero = _Rank(0)
    monkeypatch.setattr(stage.dmod, "setup", lambda: zero)
    with pytest.raises(TransientStoreError):
        train(tiny(*TF), **args)
    assert zero.sent == [("transient", "s3://b/tf: SlowDown after 5 attempts")]

    monkeypatch.setattr(stage.dmod, "setup", lambda: _Rank(1, told=zero.sent[0]))
    with pytest.raises(TransientError) as e:
        train(tiny(*TF), **args)
    assert not isinstance(e.value, UserError) and "SlowDown" in str(e.value)
    monkeypatch.setattr(stage.dmod, "setup", lambda: _Rank(1, told=("error", "bad data")))
    with pytest.raises(UserError, match="bad data"):  # a user error stays one
        train(tiny(*TF), **args)
