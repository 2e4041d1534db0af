"""Preference training throughput: dorl's `dpo` and `kto` vs TRL 1.16's `DPOTrainer` and `KTOTrainer`, one run.

The same model (scripts/bench/train.py's: GPT-2 4 x 256 with GPT-2's vocabulary on CPU in fp32, distilgpt2's shape
in bf16 on GPU), the same scored candidates (the real ABCD conversations' contexts, the human response rewarded 1
and five others drawn from other contexts with seeded random rewards), the same batches: TRL reads dorl's first
epoch in dorl's order (`train_sampling_strategy="sequential"`), so each of its steps holds exactly dorl's examples
(KTO: its KL completions are TRL's own pairing of that order). Each side computes the reference log-probs once
before its first step (TRL: `precompute_ref_log_probs=True`, its fastest setting; dorl: always), without
gradient checkpointing (TRL's default turns it on), dropout off in both. Throughput: real tokens (the sequences'
non-padding tokens: DPO's chosen and rejected, KTO's completions; the KL sequences' forward is work, not counted,
as TRL counts) per second of each optimizer step after the first, each side's best step (timeit's rule), the
rounds alternating. Each row asserts that both computed the same loss on the first batch (at the first step the
policy is the reference: log 2 for DPO, 1/2 for KTO, from each side's own log-probs).

    python scripts/bench/prefs.py [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import random
import sys
import tempfile
from pathlib import Path

import train as lines  # scripts/bench/train.py: the model, data, clock and result helpers

REPO = lines.REPO
LR, BETA = 1e-5, 0.1


def scored(convs, seed: int = 0) -> list[dict]:
    """Every context with the human response (reward 1) and five others (seeded uniform rewards in [0, 0.9])."""
    rng = random.Random(seed)
    out = []
    for i, (context, human, cand) in enumerate(lines.method_candidates(convs, 5, seed)):
        reward = 1.0 if cand == human and i % 6 == 0 else round(rng.uniform(0, 0.9), 4)
        out.append({"context": context, "response": human, "candidate": cand, "reward": reward, "id": i // 6})
    return out


def make_relabel(path: Path, rows: list[dict]):
    import pandas as pd

    from dorl.store import run_stage

    def body(ctx):
        for split, part in (("train", rows), ("validation", rows[:48])):
            df = pd.DataFrame(part)
            pd.DataFrame(
                {
                    "dialogue_id": df["id"].astype(str),
                    "turn_index": 0,
                    "context": df["context"],
                    "response": df["response"],
                    "candidate_index": df.groupby("id").cumcount(),
                    "candidate": df["candidate"],
                    "reward": df["reward"],
                    "return": (df["reward"] > 0.5).astype(int),
                }
            ).to_parquet(ctx.out.path(f"candidates/{split}.parquet"))
        ctx.info["return_bins"] = 2

    return run_stage("relabel", str(path), {"bench": len(rows), "relabel": {"seed": 0}}, {}, body).artifact


def fitting(rows: list[dict], tok, max_len: int) -> list[dict]:
    """The contexts whose every candidate line fits `max_len` tokens: no truncation on either side."""
    from dorl.text import line

    n = {r["id"]: 0 for r in rows}
    lengths = tok([line(r["context"], r["candidate"]) for r in rows], add_special_tokens=False)["input_ids"]
    for r, ids in zip(rows, lengths, strict=True):
        n[r["id"]] = max(n[r["id"]], len(ids))
    return [r for r in rows if n[r["id"]] <= max_len]


def trl_rates(method: str, model_dir: Path, tok, data: list[dict], micro: int, gas: int, steps: int, bf16: bool):
    """TRL's trainer on `data` in that order: (rates, real tokens per step, its loss on the first batch)."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer, KTOConfig, KTOTrainer

    from dorl.text import REP_END

    cls, cfg = (DPOTrainer, DPOConfig) if method == "dpo" else (KTOTrainer, KTOConfig)

    class Counting(cls):
        real, first = 0, None

        def training_step(self, model, inputs, num_items_in_batch=None):
            self.real += int(inputs["attention_mask"].sum())  # padding has 0: the real tokens of what trains
            return super().training_step(model, inputs, num_items_in_batch)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            out = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            if self.first is None:
                self.first = float((out[0] if return_outputs else out).detach())
            return out

    torch.manual_seed(0)
    tok = type(tok).from_pretrained(model_dir)
    tok.eos_token = REP_END  # dorl's completions end with it: TRL appends nothing
    lm = AutoModelForCausalLM.from_pretrained(model_dir)
    args = lines._args(cfg, model_dir, micro, gas, steps, bf16, beta=BETA, precompute_ref_log_probs=True,
                       gradient_checkpointing=False, disable_dropout=True, max_length=None, dataset_num_proc=None,
                       train_sampling_strategy="sequential")  # fmt: skip
    args.learning_rate = LR
    trainer = None
    clock = lines._clock(lambda state: trainer.real)
    with contextlib.redirect_stdout(sys.stderr):
        trainer = Counting(model=lm, args=args, train_dataset=Dataset.from_list(data), processing_class=tok,
                           callbacks=[clock])  # fmt: skip
        trainer.train()
    return clock.rates, clock.tokens, trainer.first


def dorl_run(method: str, relabel, base, out: Path, micro: int, gas: int, steps: int, max_len: int):
    """dorl's training through `dorl train`'s code path: (rates, real tokens per step, first loss)."""
    from dorl import config
    from dorl.stages.train import train

    s = f"{method}.train"
    sets = [f"{s}.batch_size={micro * gas}", f"{s}.micro_batch_size={micro}", f"{s}.max_steps={steps + 1}",
            f"{s}.log_every=1", f"{s}.checkpoint_every=1000", f"{s}.max_length={max_len}", f"{s}.lr={LR}",
            f"{s}.warmup_steps=0", f"{s}.scheduler=cosine", f"{s}.eval_every=0", f"{method}.beta={BETA}"]  # fmt: skip
    art = train(config.load(sets=sets), method=method, data_uri=relabel.uri, base_uri=base.uri, out_uri=str(out))
    art = art.artifact
    recs = [json.loads(x) for x in art.read_bytes("train_log.jsonl").decode().splitlines()]
    first = next(r["loss"] for r in recs if r["kind"] == "train" and r["step"] == 1)
    rates, tokens, mfu = lines.dorl_rates(art)
    return rates, tokens, mfu, first


def trl_rows(method: str, relabel, base, tok, micro: int, gas: int, steps: int, max_len: int) -> list[dict]:
    """The rows dorl trains on, in the order of its first epoch's steps (their text, as TRL takes it)."""
    import numpy as np

    from dorl import config
    from dorl.engine.data import epoch_steps

    cfg = config.load(sets=[f"{method}.train.micro_batch_size={micro}", f"{method}.train.max_length={max_len}",
                            f"{method}.train.batch_size={micro * gas}"])  # fmt: skip
    from dorl import methods

    m = methods.get(method, cfg)
    m.bind(tok)
    rows = m.training_sets(relabel)
    train_set, _ = m.datasets(relabel, tok, rows)
    tc = m.train_config()
    order = np.concatenate(epoch_steps(train_set.lengths, tc.batch_size, tc.seed, 0, tc.group_by_length)[: steps + 1])
    frame = rows["train"].iloc[order]
    cols = ["prompt", "chosen", "rejected"] if method == "dpo" else ["prompt", "completion", "label"]
    return [dict(zip(cols, v, strict=True)) for v in frame[cols].itertuples(index=False, name=None)]


def run(quick: bool, threads: int | None = 1, size: str | None = None) -> list[dict]:
    import torch

    gpu = torch.cuda.is_available()
    before = torch.get_num_threads()
    if not gpu and threads:
        torch.set_num_threads(threads)
    try:
        return _run(quick, gpu, size or ("distilgpt2" if gpu else "small"))
    finally:
        torch.set_num_threads(before)


def _run(quick: bool, gpu: bool, size: str) -> list[dict]:
    spec = {"repeats": 2 if quick else 4, "steps": 2 if quick else 6}
    convs, source = lines.conversations()
    tmp = Path(tempfile.mkdtemp(prefix="dorl-bench-prefs-"))
    base, tok, shape = lines.make_base(tmp / "base", size)
    model = f"GPT-2 {shape['n_layer']} layers x {shape['n_embd']}, vocab {len(tok):,}"
    max_len = 512
    relabel = make_relabel(tmp / "relabel", fitting(scored(convs), tok, max_len))
    micro, gas = (8, 4) if gpu else (8, 1)
    steps, model_dir = spec["steps"], Path(base.local_dir())
    out = []
    for method, peer in (("dpo", "DPOTrainer"), ("kto", "KTOTrainer")):
        data = trl_rows(method, relabel, base, tok, micro, gas, steps, max_len)
        firsts: dict[str, list[float]] = {"dorl": [], "trl": []}

        def ours(r, method=method, firsts=firsts):
            rates, tokens, mfu, first = dorl_run(method, relabel, base, tmp / f"{method}-{r}", micro, gas, steps,
                                                 max_len)  # fmt: skip
            firsts["dorl"].append(first)
            return rates, tokens, mfu

        def theirs(r, method=method, data=data, firsts=firsts):
            rates, tokens, first = trl_rates(method, model_dir, tok, data, micro, gas, steps, gpu)
            firsts["trl"].append(first)
            return rates, tokens, None

        got = lines._rounds({"dorl": ours, "trl": theirs}, spec["repeats"])
        for (_, a, _), (_, b, _) in zip(got["dorl"], got["trl"], strict=True):  # the same batches: the same tokens
            assert a == b, (method, "real tokens per step differ", a, b)
        want, tol = (math.log(2) if method == "dpo" else 0.5), (1e-2 if gpu else 1e-4)  # bf16 on GPU
        for side, values in firsts.items():  # the same loss on the first batch, every round
            assert all(abs(v - want) < tol for v in values), (method, side, values, want)
        details = {
            "batch": micro * gas,
            "first_batch_loss": {"dorl": firsts["dorl"][0], "trl": firsts["trl"][0]},
            "peer_setup": f"TRL {peer}, precompute_ref_log_probs=True, gradient_checkpointing=False, dropout off, "
            "the same batches in dorl's order (sequential sampler)",
        }
        name = f"train: {method} vs TRL {peer}, {shape['n_layer']}x{shape['n_embd']}"
        out.append(lines._result(name, got, "trl", model, source, details))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer steps and repeats")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (0: torch's default)")
    ap.add_argument("--model", choices=sorted(lines.SHAPES), help="model shape (default: small on CPU)")
    args = ap.parse_args()
    for r in run(args.quick, args.threads or None, args.model):
        print(json.dumps(r))
        print(f"{r['name']}: dorl {r['dorl']:,.0f} vs {r['peer']} {r['reference']:,.0f} {r['unit']} = {r['ratio']}x "
              f"({r['model']}; {r['hardware']})", file=sys.stderr)  # fmt: skip


if __name__ == "__main__":
    main()
