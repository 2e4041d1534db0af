"""Training throughput: dorl's engine vs the reference's setup, same model, same data, one run.

- methods (tf_all-style lines): the reference trains with HF `Trainer` on every line padded to the
  full 512-token block; dorl (`dorl.train.stage.train`, the real `dorl train` path) pads each batch
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

ABCD = REPO.parent / "shared" / "data" / "abcd" / "dialogstudio_original_examples.json"


def conversations() -> tuple[list[list[tuple[str, str]]], str]:
    """Turn lists of real ABCD conversations (action rows dropped), or the fixture's."""
    if ABCD.exists():
        raw = json.loads(ABCD.read_text())
        return [[(s, t) for s, t in c["original"] if s in ("customer", "agent")] for c in raw], "ABCD (5 real)"
    from tests.fixtures import dialogues

    return [t for _, t in dialogues(30)], "synthetic fixture dialogues"


def method_lines(convs, n_candidates: int = 5, seed: int = 0) -> list[tuple[str, str]]:
    """(line, prompt) pairs: each context with its human response and `n_candidates` others."""
    from dorl.text import examples, line, prompt

    rng = random.Random(seed)
    exs = [(c, r) for turns in convs for _, c, r in examples(turns)]
    pool = [r for _, r in exs]
    out = []
    for c, r in exs:
        for cand in [r, *rng.sample(pool, n_candidates)]:
            out.append((line(c, cand), prompt(c)))
    return out


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


# ---------------------------------------------------------------- the reference: HF Trainer


def hf_trainer_rates(model_dir: Path, rows: list[dict], micro: int, gas: int, steps: int, bf16: bool) -> list[float]:
    """HF Trainer on `rows` (input_ids, attention_mask, labels): real tokens (attention mask) per second of
    each optimizer step after the first, timed from the end of the step before."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, Trainer, TrainerCallback, TrainingArguments, default_data_collator

    class Clock(TrainerCallback):
        """Time from one step's end to the next (data, forward, backward, optimizer): as dorl logs it."""

        def __init__(self):
            self.rates, self.t0, self.seen = [], None, 0

        def on_step_end(self, args, state, control, **kw):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            now = time.perf_counter()
            if self.t0 is not None:
                self.rates.append((state.num_input_tokens_seen - self.seen) / (now - self.t0))
            self.t0, self.seen = now, state.num_input_tokens_seen

    torch.manual_seed(0)
    lm = AutoModelForCausalLM.from_pretrained(model_dir)
    ds = Dataset.from_list(rows)
    args = TrainingArguments(
        output_dir=str(model_dir / "hf-out"),
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=gas,
        learning_rate=5e-4,
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
        include_num_input_tokens_seen="non_padding",
    )
    clock = Clock()
    trainer = Trainer(model=lm, args=args, train_dataset=ds, data_collator=default_data_collator, callbacks=[clock])
    with contextlib.redirect_stdout(sys.stderr):  # Trainer prints its summary; stdout carries the results
        trainer.train()
    return clock.rates  # from the second step on: the first only starts the clock


# ---------------------------------------------------------------- dorl


def dorl_rates(art) -> tuple[list[float], float | None]:
    """dorl's real tokens/s of each step after the first (logged every step), and its MFU (GPU)."""
    recs = [json.loads(x) for x in art.read_bytes("train_log.jsonl").decode().splitlines()]
    return [r["tokens_per_s"] for r in recs if r["kind"] == "train"][1:], art.manifest["metrics"].get("mfu")


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


def make_relabel(path: Path, lines: list[str]):
    import pandas as pd

    from dorl.store import run_stage

    def body(ctx):
        for split, part in (("train", lines), ("validation", lines[:8])):
            pd.DataFrame({"text": part}).to_parquet(ctx.out.path(f"methods/tf_all/{split}.parquet"))

    return run_stage("relabel", str(path), {"bench": len(lines)}, {}, body).artifact


def make_data(path: Path, texts: list[str]):
    import pandas as pd

    from dorl.store import run_stage

    def body(ctx):
        for split, part in (("train", texts), ("validation", texts[:2])):
            pd.DataFrame({"dialogue_id": [str(i) for i in range(len(part))], "text": part}).to_parquet(
                ctx.out.path(f"conversations/{split}.parquet")
            )

    return run_stage("data", str(path), {"bench": len(texts)}, {}, body).artifact


# ---------------------------------------------------------------- the two comparisons


def run(quick: bool, threads: int | None = 1, size: str | None = None) -> list[dict]:
    import torch

    from dorl import config
    from dorl.methods.lines import encode_lines
    from dorl.methods.tf import pack, tokenize
    from dorl.text import render_conversation
    from dorl.train.stage import train

    gpu = torch.cuda.is_available()
    if not gpu and threads:
        torch.set_num_threads(threads)
    repeats = 2 if quick else 4
    steps = 2 if quick else 6
    convs, source = conversations()
    tmp = Path(tempfile.mkdtemp(prefix="dorl-bench-train-"))
    base, tok, shape = make_base(tmp / "base", size or ("distilgpt2" if gpu else "small"))
    model = f"GPT-2 {shape['n_layer']} layers x {shape['n_embd']}, vocab {len(tok):,}"
    results = []

    # methods: lines, 512-token truncation, batch 32 (micro 8 x 4 on GPU; micro 8 x 1 on CPU to stay short)
    micro, gas, max_len = 8, (4 if gpu else 1), 512
    lines = [ln for ln, _ in method_lines(convs)]
    relabel = make_relabel(tmp / "relabel", lines)
    ex = encode_lines(tok, lines, max_len)
    rows = []
    for i in range(len(ex)):
        ids, start = ex[i]["input_ids"].tolist(), int(ex[i]["label_start"])
        pad = max_len - len(ids)
        labels = [-100] * start + ids[start:] + [-100] * pad
        rows.append({"input_ids": ids + [tok.pad_token_id] * pad, "attention_mask": [1] * len(ids) + [0] * pad,
                     "labels": labels})  # fmt: skip
    ref, ours, mfus = [], [], []
    sets = [
        f"finetune.batch_size={micro * gas}",
        f"finetune.micro_batch_size={micro}",
        f"finetune.max_steps={steps + 1}",
    ]
    sets += ["finetune.log_every=1", "finetune.checkpoint_every=1000", f"finetune.max_length={max_len}"]
    for r in range(repeats):  # alternating, and in turn first: whichever runs second runs a few % slower here
        for who in ("ref", "dorl") if r % 2 == 0 else ("dorl", "ref"):
            if who == "ref":
                ref.extend(hf_trainer_rates(Path(base.local_dir()), rows, micro, gas, steps, bf16=gpu))
                continue
            art = train(
                config.load(sets=sets),
                method="tf_all",
                data_uri=relabel.uri,
                base_uri=base.uri,
                out_uri=str(tmp / f"tf_all-{r}"),
            ).artifact
            rates, mfu = dorl_rates(art)
            ours.extend(rates)
            mfus.append(mfu)
    results.append(_result("train: method lines (tf_all)", ours, ref, mfus, model, source, {
        "lines": len(lines), "mean_real_tokens_per_line": round(ex.n_tokens / len(ex), 1), "max_length": max_len,
        "batch": micro * gas, "reference_setup": "HF Trainer, every line padded to 512 tokens",
    }))  # fmt: skip

    # base tf: the same packed blocks for both
    block = 1024 if gpu else 512
    texts = [render_conversation(t) for t in convs] * (24 if gpu else 8)
    data = make_data(tmp / "data", texts)
    blocks = pack(tokenize(tok, texts), block, keep_remainder=False)
    rows = [{"input_ids": blocks[i]["input_ids"].tolist(), "attention_mask": [1] * block,
             "labels": blocks[i]["input_ids"].tolist()} for i in range(len(blocks))]  # fmt: skip
    micro, gas = (8, 2) if gpu else (2, 2)
    ref, ours, mfus = [], [], []
    sets = [f"tf.batch_size={micro * gas}", f"tf.micro_batch_size={micro}", f"tf.max_steps={steps + 1}"]
    sets += ["tf.log_every=1", "tf.checkpoint_every=1000", f"tf.max_length={block}", "model.tokenizer=gpt2"]
    sets += ["model.source=config", f"model.n_layer={shape['n_layer']}", f"model.n_embd={shape['n_embd']}"]
    sets += [f"model.n_head={shape['n_head']}", "model.n_positions=1024"]
    for r in range(repeats):
        for who in ("ref", "dorl") if r % 2 == 0 else ("dorl", "ref"):
            if who == "ref":
                ref.extend(hf_trainer_rates(Path(base.local_dir()), rows, micro, gas, steps, bf16=gpu))
                continue
            art = train(config.load(sets=sets), method="tf", data_uri=data.uri, out_uri=str(tmp / f"tf-{r}")).artifact
            rates, mfu = dorl_rates(art)
            ours.extend(rates)
            mfus.append(mfu)
    results.append(_result("train: base tf (packed blocks)", ours, ref, mfus, model, source, {
        "blocks": len(blocks), "block": block, "batch": micro * gas, "reference_setup": "HF Trainer, same blocks",
    }))  # fmt: skip
    return results


def _result(name, ours, ref, mfus, model, source, details) -> dict:
    """The best step of each (the least disturbed by other work on the machine) and the medians."""
    import torch

    dorl, reference = max(ours), max(ref)
    out = {
        "name": name,
        "unit": "real tokens/s",
        "dorl": round(dorl, 1),
        "reference": round(reference, 1),
        "ratio": round(dorl / reference, 2),
        "dorl_median": round(statistics.median(ours), 1),
        "reference_median": round(statistics.median(ref), 1),
        "ratio_of_medians": round(statistics.median(ours) / statistics.median(ref), 2),
        "steps_timed": [len(ours), len(ref)],
        "hardware": hardware(),
        "model": model + (", bf16" if torch.cuda.is_available() else ", fp32"),
        "data": source,
        **details,
    }
    if any(m is not None for m in mfus):
        out["dorl_mfu"] = statistics.median([m for m in mfus if m is not None])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer steps and repeats")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (0: torch's default)")
    ap.add_argument("--model", choices=sorted(SHAPES), help="model shape (default: small on CPU, distilgpt2 on GPU)")
    args = ap.parse_args()
    for r in run(args.quick, args.threads or None, args.model):
        print(json.dumps(r))
        print(f"{r['name']}: dorl {r['dorl']:,.0f} vs reference {r['reference']:,.0f} {r['unit']} = {r['ratio']}x "
              f"({r['model']}; {r['hardware']})", file=sys.stderr)  # fmt: skip


if __name__ == "__main__":
    main()
