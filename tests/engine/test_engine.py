"""The engine's arithmetic: a DeepSpeed run (2 micro-batches x accumulation) equals the same training written
out in plain PyTorch: AdamW with decay on matrices only, clipping, warm-up then cosine, the token-mean loss."""

import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from dorl import config
from dorl.engine.data import epoch_steps
from dorl.stages.train import train

SETS = ["tf.max_length=16", "tf.batch_size=4", "tf.micro_batch_size=2", "tf.max_steps=5", "tf.lr=3e-3"]
SETS += ["tf.weight_decay=0.1", "tf.grad_clip=0.5", "tf.warmup_steps=2", "model.dropout=0.0"]


def test_a_step_is_adamw_on_the_token_mean_with_clipping_warmup_and_cosine(tmp_path, data_artifact):
    from transformers import AutoTokenizer

    from dorl.methods.tf import pack, read_conversations, tokenize

    cfg = config.load(preset="tiny", sets=SETS)
    art = train(cfg, method="tf", data_uri=data_artifact.uri, out_uri=str(tmp_path / "tf")).artifact
    tok = AutoTokenizer.from_pretrained(art.local_dir())

    # the same model before training: a fresh GPT-2 from the same seed
    from dorl.engine.models import model_from_config

    lm = model_from_config(cfg.model, tok, cfg.tf.seed)
    init = {k: v.clone() for k, v in lm.state_dict().items()}
    blocks = pack(tokenize(tok, read_conversations(data_artifact, "train")), 16, keep_remainder=False)
    decay = [p for p in lm.parameters() if p.dim() >= 2]
    other = [p for p in lm.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}], lr=3e-3)
    total = 5

    def lr_at(step):  # linear warm-up over 2 steps, then cosine to 0 at step 5
        return step / 2 if step < 2 else 0.5 * (1 + math.cos(math.pi * (step - 2) / (total - 2)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    steps = epoch_steps(blocks.lengths, 4, seed=cfg.tf.seed, epoch=0, group_by_length=False)
    for idx in steps[:total]:
        ids = torch.tensor(np.stack([blocks[i]["input_ids"] for i in idx]), dtype=torch.long)
        loss = lm(input_ids=ids, labels=ids).loss  # equal-length blocks: token mean = mean over the batch
        loss.backward()
        torch.nn.utils.clip_grad_norm_(lm.parameters(), 0.5)
        opt.step()
        sched.step()
        opt.zero_grad()

    got = load_file(art.path("model.safetensors"))
    want = {k: v for k, v in lm.state_dict().items() if k in got}
    assert set(got) == set(want)
    for k in got:
        torch.testing.assert_close(got[k], want[k], rtol=1e-4, atol=2e-6)
    assert max(float((got[k] - init[k]).abs().max()) for k in got) > 1e-3  # it did train


def test_lines_weigh_by_tokens_however_the_step_is_split(tmp_path, data_artifact):
    """Micro-batches of 2 lines x 2 accumulation = one batch of 4 lines: the step's loss is the mean over
    all its response tokens (a mean of micro-batch means would weigh short lines more)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from dorl.store import run_stage
    from dorl.tokenizer import build_tokenizer
    from tests.fixtures import dialogues, make_relabel_artifact

    def base_body(ctx):  # a tiny base model without dropout, so both runs see the same function
        from dorl.text import render_conversation

        tok = build_tokenizer("bpe", texts=[render_conversation(t) for _, t in dialogues(40)], vocab_size=400)
        torch.manual_seed(0)
        cfg = GPT2Config(vocab_size=len(tok), n_positions=128, n_embd=32, n_layer=2, n_head=2)
        cfg.resid_pdrop = cfg.embd_pdrop = cfg.attn_pdrop = 0.0
        GPT2LMHeadModel(cfg).save_pretrained(ctx.out.dir)
        tok.save_pretrained(ctx.out.dir)

    base = run_stage("train/tf", str(tmp_path / "base"), {"no": "dropout"}, {}, base_body).artifact
    relabel = make_relabel_artifact(str(tmp_path / "relabel"), data_artifact)
    outs = []
    for micro in (2, 4):
        sets = [
            "finetune.batch_size=4",
            f"finetune.micro_batch_size={micro}",
            "finetune.max_steps=2",
            "finetune.lr=1e-2",
        ]
        sets += ["finetune.max_length=128"]
        cfg = config.load(preset="tiny", sets=sets)
        art = train(
            cfg, method="tf_all", data_uri=relabel.uri, base_uri=base.uri, out_uri=str(tmp_path / f"m{micro}")
        ).artifact
        assert art.info["batch"]["accumulation"] == 4 // micro
        outs.append(load_file(art.path("model.safetensors")))
    for k in outs[0]:
        torch.testing.assert_close(outs[0][k], outs[1][k], rtol=0, atol=2e-5)


def test_mfu_counts_6n_per_token_the_head_where_it_runs_and_attention(tmp_path, data_artifact, monkeypatch):
    from transformers import GPT2Config, GPT2LMHeadModel

    from dorl.engine.models import flop_shape

    d, layers, vocab = 64, 2, 500
    lm = GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_positions=64, n_embd=d, n_layer=layers, n_head=2))
    # by hand: per layer 12d^2 + 13d (qkv 3d^2+3d, proj d^2+d, mlp 8d^2+5d, 2 norms 4d), final norm 2d
    assert flop_shape(lm) == (layers * (12 * d * d + 13 * d) + 2 * d, vocab * d, layers, d)

    # MFU against a declared peak (DORL_PEAK_TFLOPS also works on a CPU): blocks of T tokens, T-1 targets each
    monkeypatch.setenv("DORL_PEAK_TFLOPS", "0.0001")
    cfg = config.load(preset="tiny", sets=SETS)
    art = train(cfg, method="tf", data_uri=data_artifact.uri, out_uri=str(tmp_path / "tf")).artifact
    tokens, seconds, n_seq = art.manifest["metrics"]["tokens"], art.manifest["metrics"]["train_time_s"], 5 * 4
    assert tokens == n_seq * 16
    n_body, n_head = art.info["parameters"] - art.info["vocab_size"] * 64 - 512 * 64, art.info["vocab_size"] * 64
    flops = 6 * (n_body * tokens + n_head * n_seq * 15) + 12 * 2 * 64 * n_seq * 16**2
    assert art.manifest["metrics"]["mfu"] == pytest.approx(flops / seconds / 1e8, rel=0.01)


def test_each_epoch_has_its_own_order(tmp_path, data_artifact, monkeypatch):
    """The batches of epoch e are `epoch_steps(..., e, ...)`: epoch 1 is not a replay of epoch 0."""
    from dorl.engine import trainer as engine

    seen = []
    real = engine.Trainer._step

    def record(self, step_idx, *args):
        seen.append(tuple(int(i) for i in step_idx))
        return real(self, step_idx, *args)

    monkeypatch.setattr(engine.Trainer, "_step", record)
    cfg = config.load(
        preset="tiny", sets=["tf.max_length=16", "tf.batch_size=4", "tf.micro_batch_size=2", "tf.epochs=3"]
    )
    art = train(cfg, method="tf", data_uri=data_artifact.uri, out_uri=str(tmp_path / "tf")).artifact
    spe = art.info["steps_per_epoch"]
    assert len(seen) == 3 * spe
    epochs = [seen[e * spe : (e + 1) * spe] for e in range(3)]
    assert epochs[0] != epochs[1] and epochs[1] != epochs[2] and epochs[0] != epochs[2]


def test_a_stale_build_lock_is_cleared(tmp_path, monkeypatch, caplog):
    """A kill while DeepSpeed JIT-builds its CPU op leaves `lock`: later builds would wait on it forever."""
    import os
    import time

    from dorl.engine.ds_side_effects import STALE_LOCK_S, clear_stale_build_locks

    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    done = tmp_path / "py311_cpu" / "deepspeed_shm_comm"
    done.mkdir(parents=True)
    (done / "deepspeed_shm_comm.so").write_bytes(b"")
    (done / "lock").write_bytes(b"")
    old = tmp_path / "py311_cpu" / "other_op"
    old.mkdir()
    (old / "lock").write_bytes(b"")
    os.utime(old / "lock", (time.time() - STALE_LOCK_S - 1,) * 2)
    live = tmp_path / "py311_cpu" / "building_now"
    live.mkdir()
    (live / "lock").write_bytes(b"")  # another process compiling right now: left alone
    with caplog.at_level("WARNING", logger="dorl.train"):
        removed = clear_stale_build_locks()
    assert sorted(removed) == sorted([done / "lock", old / "lock"])
    assert (live / "lock").exists() and "stale build lock" in caplog.text
