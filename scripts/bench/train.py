"""Training throughput: dorl's engine vs the reference's setup, same model, same data, one run.

- methods (tf_all-style lines): the reference trains with HF `Trainer` on every line padded to the
  full 512-token block; dorl (`dorl.stages.train.train`, the real `dorl train` path) pads each batch
  to its longest line, groups lines by length and runs the vocabulary head only on response tokens.
- base tf: both on the same packed blocks (HF `Trainer` as run_clm does, and dorl).

Throughput counts real (non-padding) tokens only, per optimizer step after a first warm-up step;
the figure is each setup's best step (timeit's rule: other work on a shared machine only ever slows
a step down), with the medians beside it; reference and dorl runs alternate.
Data: the real ABCD conversations in ../shared/data (five, in the raw format; the fixture's
synthetic dialogues if absent), 1 human + 5 other responses per context as tf_all has them.

    python scripts/bench/train.py [--quick]

CPU: GPT-2 4 layers x 256 with GPT-2's vocabulary (fp32), one thread by default (two OpenMP threads
on a shared 2-core machine swing 5x with the neighbours' load). GPU: distilgpt2's shape (6 x 768)
in bf16, with dorl's MFU.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
for _k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_k, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("DORL_LOG_LEVEL", "WARNING")

# ../shared/data next to the checkout (main) or next to the folder of worktrees (../../shared/data)
SHARED = [p for p in (REPO.parent / "shared", REPO.parent.parent / "shared") if (p / "data").is_dir()]
ABCD = (SHARED or [REPO.parent / "shared"])[0] / "data/abcd/dialogstudio_original_examples.json"


def conversations() -> tuple[list[list[tuple[str, str]]], str]:
    """Turn lists of real ABCD conversations (action rows dropped), or the fixture's."""
    if ABCD.exists():
        raw = json.loads(ABCD.read_text())
        return [[(s, t) for s, t in c["original"] if s in ("customer", "agent")] for c in raw], "ABCD (5 real)"
    from tests.fixtures import dialogues

    return [t for _, t in dialogues(30)], "synthetic fixture dialogues"


def method_candidates(convs, n_candidates: int = 5, seed: int = 0) -> list[tuple[str, str, str]]:
    """(context, human response, candidate): each context with its human response and `n_candidates` others."""
    from dorl.text import examples

    rng = random.Random(seed)
    exs = [(c, r) for turns in convs for _, c, r in examples(turns)]
    pool = [r for _, r in exs]
    return [(c, r, cand) for c, r in exs for cand in [r, *rng.sample(pool, n_candidates)]]


def method_lines(convs, n_candidates: int = 5, seed: int = 0) -> list[tuple[str, str]]:
    """(line, prompt) pairs of `method_candidates`."""
    from dorl.text import line, prompt

    return [(line(c, cand), prompt(c)) for c, _, cand in method_candidates(convs, n_candidates, seed)]


def hardware() -> str:
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    name = platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        name = next(
            (ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines() if "model name" in ln), name
        )
    return f"{name}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads)"


# ---------------------------------------------------------------- the peers: HF Trainer and TRL SFTTrainer

LR = 5e-4


def _clock(counted):
    """A callback timing each optimizer step from the end of the one before (data, forward, backward,
    optimizer: as dorl logs it), with `counted()` the real tokens seen so far."""
    import torch
    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        def __init__(self):
            self.rates, self.tokens, self.t0, self.seen = [], [], None, 0

        def on_step_end(self, args, state, control, **kw):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            now, seen = time.perf_counter(), counted(state)
            if self.t0 is not None:
                self.rates.append((seen - self.seen) / (now - self.t0))
                self.tokens.append(seen - self.seen)
            self.t0, self.seen = now, seen

    return Clock()


def _args(cls, model_dir: Path, micro: int, gas: int, steps: int, bf16: bool, **extra):
    import torch

    return cls(
        output_dir=str(model_dir / "peer-out"),
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=gas,
        learning_rate=LR,
        lr_scheduler_type="cosine",
        max_steps=steps + 1,
        bf16=bf16,
        logging_strategy="no",
        save_strategy="no",
        report_to=[],
        seed=42,
        dataloader_drop_last=True,
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=True,
        **extra,
    )


def hf_trainer_rates(model_dir: Path, rows: list[dict], micro: int, gas: int, steps: int, bf16: bool):
    """HF Trainer on `rows` (input_ids, attention_mask, labels): real tokens (the attention mask's ones) per
    second of each optimizer step after the first. Returns (rates, tokens per step)."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments, default_data_collator

    torch.manual_seed(0)
    lm = AutoModelForCausalLM.from_pretrained(model_dir)
    args = _args(TrainingArguments, model_dir, micro, gas, steps, bf16, include_num_input_tokens_seen="non_padding")
    clock = _clock(lambda state: state.num_input_tokens_seen)
    trainer = Trainer(model=lm, args=args, train_dataset=Dataset.from_list(rows), data_collator=default_data_collator,
                      callbacks=[clock])  # fmt: skip
    with contextlib.redirect_stdout(sys.stderr):  # Trainer prints its summary; stdout carries the results
        trainer.train()
    return clock.rates, clock.tokens  # from the second step on: the first only starts the clock


def trl_rates(model_dir: Path, tok, rows: list[dict], micro: int, gas: int, steps: int, bf16: bool,
              packing: int = 0, group_by_length: bool = False):  # fmt: skip
    """TRL `SFTTrainer`, padding-free: each micro-batch is one row of its examples back to back (position ids
    restart per example, so no example attends to another), the loss only on `completion_mask` tokens when
    the rows have one (completion-only loss), TRL's fused LM head. `packing` > 0: TRL packs whole
    conversations (best-fit decreasing) into rows of at most that many tokens first. Real tokens = the
    padding-free row's length (it has no padding: counted per micro-batch, checked). Returns (rates,
    tokens per step)."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    class Counting(SFTTrainer):
        real = 0

        def training_step(self, model, inputs, num_items_in_batch=None):
            pos = inputs["position_ids"]
            assert "attention_mask" not in inputs and pos.shape[0] == 1, "expected TRL's padding-free rows"
            self.real += pos.numel()  # one row, no padding: every position is a real token
            return super().training_step(model, inputs, num_items_in_batch)

    torch.manual_seed(0)
    lm = AutoModelForCausalLM.from_pretrained(model_dir)
    extra = dict(padding_free=True, max_length=packing or None, packing=bool(packing), dataset_num_proc=None)
    if "completion_mask" in rows[0]:
        extra["completion_only_loss"] = True
    if group_by_length:
        extra["train_sampling_strategy"] = "group_by_length"
    args = _args(SFTConfig, model_dir, micro, gas, steps, bf16, **extra)
    trainer = None
    clock = _clock(lambda state: trainer.real)
    with contextlib.redirect_stdout(sys.stderr):
        trainer = Counting(model=lm, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok,
                           callbacks=[clock])  # fmt: skip
        trainer.train()
    return clock.rates, clock.tokens


# ---------------------------------------------------------------- dorl


def dorl_rates(art) -> tuple[list[float], list[int], float | None]:
    """dorl's real tokens/s and real tokens of each step after the first (logged every step), its MFU (GPU)."""
    recs = [json.loads(x) for x in art.read_bytes("train_log.jsonl").decode().splitlines()]
    recs = [r for r in recs if r["kind"] == "train"][1:]
    return [r["tokens_per_s"] for r in recs], [r["tokens"] for r in recs], art.manifest["metrics"].get("mfu")


SHAPES = {"small": dict(n_layer=4, n_embd=256, n_head=4), "distilgpt2": dict(n_layer=6, n_embd=768, n_head=12)}


def make_base(path: Path, size: str):
    """A base `train/tf` artifact: GPT-2 of `size` with GPT-2's BPE and the special tokens."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from dorl.store import run_stage
    from dorl.tokenizer import build_tokenizer

    tok = build_tokenizer("gpt2")
    shape = SHAPES[size]

    def body(ctx):
        torch.manual_seed(0)
        cfg = GPT2Config(vocab_size=len(tok), n_positions=1024, **shape)
        cfg.eos_token_id = cfg.bos_token_id = cfg.pad_token_id = tok.eos_token_id
        GPT2LMHeadModel(cfg).save_pretrained(ctx.out.dir)
        tok.save_pretrained(ctx.out.dir)

    return run_stage("train/tf", str(path), {"bench": shape}, {}, body).artifact, tok, shape


def make_relabel(path: Path, cands: list[tuple[str, str, str]]):
    """A relabel artifact of these candidates (all rewarded 1: tf_all trains on every one of them)."""
    import pandas as pd

    from dorl.store import run_stage

    def body(ctx):
        for split, part in (("train", cands), ("validation", cands[:8])):
            pd.DataFrame(
                {
                    "dialogue_id": [str(i) for i in range(len(part))],
                    "turn_index": [0] * len(part),
                    "context": [c for c, _, _ in part],
                    "response": [r for _, r, _ in part],
                    "candidate_index": list(range(len(part))),
                    "candidate": [x for _, _, x in part],
                    "reward": [1.0] * len(part),
                    "return": [1] * len(part),
                }
            ).to_parquet(ctx.out.path(f"candidates/{split}.parquet"))
        ctx.info["return_bins"] = 2

    return run_stage("relabel", str(path), {"bench": len(cands), "relabel": {"seed": 0}}, {}, body).artifact


def make_data(path: Path, texts: list[str]):
    import pandas as pd

    from dorl.store import run_stage

    def body(ctx):
        for split, part in (("train", texts), ("validation", texts[:2])):
            pd.DataFrame({"dialogue_id": [str(i) for i in range(len(part))], "text": part}).to_parquet(
                ctx.out.path(f"conversations/{split}.parquet")
            )

    return run_stage("data", str(path), {"bench": len(texts)}, {}, body).artifact


# ---------------------------------------------------------------- the comparisons


def _rounds(ways: dict, repeats: int) -> dict:
    """Run each way once per round, the order rotating (whoever runs later in a round runs a few % slower
    here); per way and round: (rates, tokens per step, mfu)."""
    names, out = list(ways), {w: [] for w in ways}
    for r in range(repeats):
        for w in names[r % len(names) :] + names[: r % len(names)]:
            out[w].append(ways[w](r))
    return out


def method_lines_rows(convs, tok, max_len: int) -> tuple[list[dict], list[dict], object]:
    """The same tokens for every trainer: dorl's encoding of the lines (prompt + response, <= max_len)."""
    from dorl.methods.lines import encode_lines

    ex = encode_lines(tok, [ln for ln, _ in method_lines(convs)], max_len)
    padded, trl = [], []
    for i in range(len(ex)):
        ids, start = ex[i]["input_ids"].tolist(), int(ex[i]["label_start"])
        pad = max_len - len(ids)
        padded.append({"input_ids": ids + [tok.pad_token_id] * pad, "attention_mask": [1] * len(ids) + [0] * pad,
                       "labels": [-100] * start + ids[start:] + [-100] * pad})  # fmt: skip
        trl.append({"input_ids": ids, "completion_mask": [0] * start + [1] * (len(ids) - start)})
    assert sum(len(r["input_ids"]) for r in trl) == ex.n_tokens == sum(sum(r["attention_mask"]) for r in padded)
    return padded, trl, ex


def run(quick: bool, threads: int | None = 1, size: str | None = None) -> list[dict]:
    """Method lines at both shapes (HF Trainer's padded lines only at the first in quick mode: they are
    slow), base tf at the first."""
    import torch

    gpu = torch.cuda.is_available()
    before = torch.get_num_threads()
    if not gpu and threads:
        torch.set_num_threads(threads)
    try:
        return _run(quick, gpu, size)
    finally:
        torch.set_num_threads(before)  # the benchmarks after this one in `make bench` run with the machine's default


def _run(quick: bool, gpu: bool, size: str | None) -> list[dict]:
    spec = {"repeats": 2 if quick else 4, "steps": 2 if quick else 6, "gpu": gpu}
    convs, source = conversations()
    tmp = Path(tempfile.mkdtemp(prefix="dorl-bench-train-"))
    results = []
    for k, shape_name in enumerate([size] if size else ["small", "distilgpt2"]):
        base, tok, shape = make_base(tmp / f"base-{shape_name}", shape_name)
        model = f"GPT-2 {shape['n_layer']} layers x {shape['n_embd']}, vocab {len(tok):,}"
        results += compare_lines(spec, tmp / shape_name, base, tok, shape, convs, model, source, hf=k == 0 or not quick)
        if k == 0:
            results += compare_tf(spec, tmp / shape_name, base, tok, shape, convs, model, source)
    return results


def compare_lines(spec, tmp: Path, base, tok, shape, convs, model, source, hf: bool) -> list[dict]:
    """Method lines (tf_all): 512-token truncation, batch 32 (micro 8 x 4 on GPU; 8 x 1 on CPU to stay short)."""
    from dorl import config
    from dorl.stages.train import train

    steps, gpu, model_dir = spec["steps"], spec["gpu"], Path(base.local_dir())
    micro, gas, max_len = 8, (4 if gpu else 1), 512
    padded, trl_rows, ex = method_lines_rows(convs, tok, max_len)
    relabel = make_relabel(tmp / "relabel", method_candidates(convs))
    sets = [f"finetune.batch_size={micro * gas}", f"finetune.micro_batch_size={micro}"]
    sets += [f"finetune.max_steps={steps + 1}", "finetune.log_every=1", "finetune.checkpoint_every=1000"]
    sets += [f"finetune.max_length={max_len}", f"finetune.lr={LR}"]
    ways = {
        "dorl": lambda r: dorl_rates(
            train(
                config.load(sets=sets),
                method="tf_all",
                data_uri=relabel.uri,
                base_uri=base.uri,
                out_uri=str(tmp / f"tf_all-{r}"),
            ).artifact
        ),
        "trl": lambda r: (*trl_rates(model_dir, tok, trl_rows, micro, gas, steps, gpu), None),
    }
    if hf:
        ways["hf"] = lambda r: (*hf_trainer_rates(model_dir, padded, micro, gas, steps, gpu), None)
    got = _rounds(ways, spec["repeats"])
    shape_txt = f"{shape['n_layer']}x{shape['n_embd']}"
    details = {"lines": len(ex), "mean_real_tokens_per_line": round(ex.n_tokens / len(ex), 1),
               "real_tokens_per_epoch": ex.n_tokens, "max_length": max_len, "batch": micro * gas}  # fmt: skip
    out = [_result(f"train: method lines (tf_all) vs TRL SFTTrainer, {shape_txt}", got, "trl", model, source,
                   {**details, "peer_setup": TRL_LINES})]  # fmt: skip
    if hf:
        out.append(_result(f"train: method lines (tf_all) vs HF Trainer, {shape_txt}", got, "hf", model, source,
                           {**details, "peer_setup": HF_LINES}))  # fmt: skip
    return out


def compare_tf(spec, tmp: Path, base, tok, shape, convs, model, source) -> list[dict]:
    """Base tf: dorl's packed blocks (conversations back to back, cut every `block` tokens, as run_clm); HF
    Trainer on the same blocks; TRL packs whole conversations (best-fit decreasing) into rows of <= block."""
    from dorl import config
    from dorl.methods.tf import pack, tokenize
    from dorl.stages.train import train
    from dorl.text import render_conversation

    steps, gpu, model_dir = spec["steps"], spec["gpu"], Path(base.local_dir())
    block = 1024 if gpu else 512
    texts = [render_conversation(t) for t in convs] * (24 if gpu else 8)
    data = make_data(tmp / "data", texts)
    seqs = tokenize(tok, texts)
    blocks = pack(seqs, block, keep_remainder=False)
    rows = [{"input_ids": blocks[i]["input_ids"].tolist(), "attention_mask": [1] * block,
             "labels": blocks[i]["input_ids"].tolist()} for i in range(len(blocks))]  # fmt: skip
    trl_rows = [{"input_ids": s.tolist()} for s in seqs]
    micro, gas = (8, 2) if gpu else (2, 2)
    sets = [f"tf.batch_size={micro * gas}", f"tf.micro_batch_size={micro}", f"tf.max_steps={steps + 1}"]
    sets += ["tf.log_every=1", "tf.checkpoint_every=1000", f"tf.max_length={block}", "model.tokenizer=gpt2"]
    sets += ["model.source=config", f"model.n_layer={shape['n_layer']}", f"model.n_embd={shape['n_embd']}"]
    sets += [f"model.n_head={shape['n_head']}", "model.n_positions=1024", f"tf.lr={LR}"]
    ways = {
        "dorl": lambda r: dorl_rates(
            train(config.load(sets=sets), method="tf", data_uri=data.uri, out_uri=str(tmp / f"tf-{r}")).artifact
        ),
        "trl": lambda r: (*trl_rates(model_dir, tok, trl_rows, micro, gas, steps, gpu, packing=block), None),
        "hf": lambda r: (*hf_trainer_rates(model_dir, rows, micro, gas, steps, gpu), None),
    }
    got = _rounds(ways, spec["repeats"])
    details = {"conversations": len(texts), "real_tokens": int(sum(len(s) for s in seqs)), "blocks": len(blocks),
               "longest_conversation": max(len(s) for s in seqs), "block": block, "batch": micro * gas}  # fmt: skip
    return [
        _result("train: base tf vs TRL SFTTrainer (its packing)", got, "trl", model, source,
                {**details, "peer_setup": TRL_TF.format(block=block)}),
        _result("train: base tf vs HF Trainer (same blocks)", got, "hf", model, source,
                {**details, "peer_setup": "HF Trainer, the same packed blocks"}),
    ]  # fmt: skip


HF_LINES = "HF Trainer, every line padded to 512 tokens (the reference's setup)"
TRL_LINES = "TRL SFTTrainer, padding_free=True, completion-only loss (completion_mask = dorl's response tokens)"
TRL_TF = ("TRL SFTTrainer, packing=True (best-fit decreasing, whole conversations, rows <= {block} tokens, "
          "padding-free, no attention across conversations); dorl: conversations back to back cut into "
          "{block}-token blocks (attention crosses conversation ends, as run_clm)")  # fmt: skip


def _result(name, got, peer, model, source, details) -> dict:
    """dorl vs `peer`: each one's best step (the least disturbed by other work on the machine), the medians,
    and the spread of the per-round ratios (best step of dorl / best step of the peer in the same round)."""
    import torch

    ours = [x for rates, _, _ in got["dorl"] for x in rates]
    ref = [x for rates, _, _ in got[peer] for x in rates]
    per_round = [max(a[0]) / max(b[0]) for a, b in zip(got["dorl"], got[peer], strict=True)]
    mfus = [m for _, _, m in got["dorl"] if m is not None]
    dorl, reference = max(ours), max(ref)
    out = {
        "name": name,
        "peer": peer,
        "unit": "real tokens/s",
        "dorl": round(dorl, 1),
        "reference": round(reference, 1),
        "ratio": round(dorl / reference, 2),
        "round_ratios": [round(x, 2) for x in per_round],
        "dorl_median": round(statistics.median(ours), 1),
        "reference_median": round(statistics.median(ref), 1),
        "ratio_of_medians": round(statistics.median(ours) / statistics.median(ref), 2),
        "steps_timed": [len(ours), len(ref)],
        "real_tokens_per_step": [
            round(statistics.mean(t for _, ts, _ in got[w] for t in ts), 1) for w in ("dorl", peer)
        ],  # noqa: E501
        "hardware": hardware(),
        "model": model + (", bf16" if torch.cuda.is_available() else ", fp32"),
        "data": source,
        **details,
    }
    if mfus:
        out["dorl_mfu"] = statistics.median(mfus)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer steps and repeats")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (0: torch's default)")
    ap.add_argument("--model", choices=sorted(SHAPES), help="model shape (default: small on CPU, distilgpt2 on GPU)")
    args = ap.parse_args()
    for r in run(args.quick, args.threads or None, args.model):
        print(json.dumps(r))
        print(f"{r['name']}: dorl {r['dorl']:,.0f} vs {r['peer']} {r['reference']:,.0f} {r['unit']} = {r['ratio']}x "
              f"({r['model']}; {r['hardware']})", file=sys.stderr)  # fmt: skip


if __name__ == "__main__":
    main()
