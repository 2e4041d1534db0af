"""Benchmark of ILQL against teacher forcing (TF): training step time and peak memory, decoding speed.

Training: optimizer steps of dorl's training engine (DeepSpeed; `Trainer._step`, the method's collate
included, then its `on_step_end`) on the same batch of B lines of T tokens whose last R tokens are
the response, one micro-batch per step:
  - tf:        the tf_top method (`dorl.methods.lines`): the transformer, then the output projection
               only at the labelled (response) positions, cross-entropy;
  - efficient: `dorl train --method ilql` with dorl's default heads (Q tied to the LM's output embedding);
  - reference: the same with the released system's d->2d->|V| heads;
  both ILQL steps include the Polyak update from DeepSpeed's fp32 master weights (`ilql.polyak_every=1`:
  the worst case). The paper preset's settings otherwise (AdamW, grad clipping; fp32 on CPU, bf16 on GPU).
Decoding: B prompts of 96 tokens (half of them left-padded), 32 new tokens each, greedy, KV cache:
  - tf:        HF `generate(do_sample=False)`;
  - dt:        the same from prompts one token longer (the return token DT is conditioned on);
  - beta0:     dorl's ILQL decoding with beta = 0 (the heads are not evaluated);
  - efficient / reference: beta = 1 (LM, min target-Q and V at every step).

Weights are random (shapes, not values, set the cost). Full: distilgpt2's shape (6 layers, width
768, |V| = 50,272 with dorl's tokens). --quick: 2 layers, width 256, the same vocabulary. Every
training measurement runs in a fresh process so that its peak memory is its own (CUDA
max_memory_allocated on a GPU, else the peak RSS during the steps: VmHWM, reset before them), and
the configurations take turns (`rounds` times) so that a machine shared with other work slows them
alike; the figure is the median over rounds of each round's median step. Decoding modes also take turns, in one process.

    python scripts/bench/ilql.py [--quick] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VOCAB = 50_272  # GPT-2's 50,257 + dorl's 15 special tokens
SHAPES = {
    "full": {"name": "distilgpt2 shape (6x768)", "n_layer": 6, "n_embd": 768, "n_head": 12},
    "quick": {"name": "GPT-2 2x256", "n_layer": 2, "n_embd": 256, "n_head": 4},
    # the GPU check's CPU dry run (scripts/gpu): the code paths, not figures
    "tiny": {"name": "GPT-2 2x64, vocabulary 1,000 (dry run)", "n_layer": 2, "n_embd": 64, "n_head": 2, "vocab": 1000},
}
TRAIN = {"batch": 4, "length": 256, "response": 32, "steps": 5, "rounds": 3}
DECODE = {"batch": 8, "prompt": 96, "new": 32, "rounds": 3}
KINDS = ("tf", "efficient", "reference")
# DORL_BENCH_ILQL='{"train": {...}, "decode": {...}}' overrides TRAIN / DECODE (scripts/bench/gpu.py's sizes);
# the children inherit it.
_SIZES = json.loads(os.environ.get("DORL_BENCH_ILQL") or "{}")
TRAIN.update(_SIZES.get("train", {}))
DECODE.update(_SIZES.get("decode", {}))


def vocab(shape: dict) -> int:
    return shape.get("vocab", VOCAB)


def _lm(shape: dict, device):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    if os.environ.get("DORL_BENCH_THREADS"):
        torch.set_num_threads(int(os.environ["DORL_BENCH_THREADS"]))
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=vocab(shape), n_positions=1024, n_layer=shape["n_layer"], n_embd=shape["n_embd"],
                     n_head=shape["n_head"], bos_token_id=0, eos_token_id=0, pad_token_id=0)  # fmt: skip
    return GPT2LMHeadModel(cfg).to(device)


def _sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def _reset_peak(device) -> None:
    """Start peak tracking here: CUDA's counter, or on Linux the process's peak RSS (VmHWM), which
    writing 5 to /proc/self/clear_refs resets (otherwise set-up, not the steps, decides the peak)."""
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        return
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass  # not Linux: the peak since the process started


def _peak_mib(device) -> float:
    import resource

    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    try:
        status = Path("/proc/self/status").read_text()
        return int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("VmHWM:"))) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child_train(size: str, kind: str) -> dict:
    """One training configuration, in this (fresh) process: optimizer steps of dorl's engine
    (`dorl.engine.trainer.Trainer._step`: DeepSpeed forward, backward and step over the micro-batches,
    the method's collate included) and the method's `on_step_end` (ILQL: the Polyak update)."""
    import tempfile

    import numpy as np
    import torch

    from dorl import config
    from dorl import methods as registry
    from dorl.engine import dist as dmod
    from dorl.engine.checkpoint import Checkpointer
    from dorl.engine.data import Examples
    from dorl.engine.trainer import Trainer, accumulator
    from dorl.ilql.heads import count_parameters

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    t = TRAIN
    b, length, resp = t["batch"], t["length"], t["response"]
    section = "finetune" if kind == "tf" else "ilql.train"
    sets = [f"{section}.{k}={v}" for k, v in (("batch_size", b), ("micro_batch_size", b), ("lr", 1e-5))]
    # polyak_alpha a number: this bench drives the trainer's step itself, without the train stage that resolves 'auto'
    sets += [f"ilql.heads={'efficient' if kind == 'tf' else kind}", "ilql.polyak_every=1", "ilql.polyak_alpha=0.001"]
    cfg = config.load(sets=sets)  # the paper preset otherwise: fp32 on CPU, bf16 on a GPU
    method = registry.get("tf_top" if kind == "tf" else "ilql", cfg)
    method.pad_id = 0
    module = method.wrap(_lm(SHAPES[size], device))
    g = np.random.default_rng(1)
    rows = [g.integers(1, vocab(SHAPES[size]), length) for _ in range(b)]
    if kind == "tf":  # the loss on the last `resp` tokens (the response)
        data = Examples.from_lists(rows, label_start=np.full(b, length - resp))
    else:  # the last `resp` tokens are the actions; returns of +-1
        data = Examples.from_lists(rows, n_actions=np.full(b, resp), reward=np.array([(-1.0) ** i for i in range(b)]))
    step_idx = np.arange(b)
    with dmod.rendezvous_env(), tempfile.TemporaryDirectory() as tmp:
        d = dmod.setup()
        ckpt = Checkpointer(Path(tmp) / "checkpoints", d, False, 1)
        trainer = Trainer(method, module, method.train_config(), data, data, d, Path(tmp), ckpt)
        acc = accumulator(device)
        baseline = _peak_mib(device)
        _reset_peak(device)
        times = []
        for step in range(1, t["steps"] + 2):  # the first step (allocations, optimizer state) is not timed
            _sync(device)
            start = time.perf_counter()
            trainer._step(step_idx, acc)
            method.on_step_end(trainer.engine.module, step)
            _sync(device)
            times.append(time.perf_counter() - start)
        precision = "bf16" if trainer.bf16 else "fp32"
    return {"step_s": statistics.median(times[1:]), "peak_mib": _peak_mib(device), "baseline_mib": baseline,
            "weights": count_parameters(module), "precision": precision}  # fmt: skip


def child_decode(size: str) -> dict:
    """Seconds per decoding run of every mode, the modes taking turns, in this process."""
    import torch

    from dorl.generate import DecodeConfig, decode_batch
    from dorl.ilql.decode import Advantage
    from dorl.ilql.model import ILQLMeta, ILQLModel

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    d = DECODE
    lm = _lm(SHAPES[size], device).eval()
    if device.type == "cuda":
        lm = lm.to(torch.bfloat16)
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(1, vocab(SHAPES[size]), (d["batch"], d["prompt"]), generator=g).to(device)
    mask = torch.ones_like(ids)
    mask[: d["batch"] // 2, :16] = 0  # half the prompts are 16 tokens shorter: left padding
    ids = ids.masked_fill(mask == 0, 0)
    models = {k: ILQLModel(lm, ILQLMeta(heads=k)).to(device, lm.dtype).eval() for k in ("efficient", "reference")}
    n = d["new"]

    def ilql(adjust):  # dorl's decoding loop, with ILQL's adjustment or (beta = 0) none
        seqs = decode_batch(lm, ids, mask, DecodeConfig(max_new_tokens=n), [], 0, adjust=adjust)
        return torch.tensor([s[0] for s in seqs])

    # DT decodes as TF does, from a prompt one token longer: the return token it is conditioned on
    dt_ids, dt_mask = torch.cat([ids, ids[:, -1:]], 1), torch.cat([mask, mask[:, -1:]], 1)
    runs = {
        "tf": lambda: lm.generate(ids, attention_mask=mask, max_new_tokens=n, do_sample=False, pad_token_id=0,
                                  eos_token_id=None)[:, d["prompt"]:],
        "dt": lambda: lm.generate(dt_ids, attention_mask=dt_mask, max_new_tokens=n, do_sample=False,
                                  pad_token_id=0, eos_token_id=None)[:, d["prompt"] + 1:],
        "beta0": lambda: ilql(None),
        "efficient": lambda: ilql(Advantage(models["efficient"], 1.0)),
        "reference": lambda: ilql(Advantage(models["reference"], 1.0)),
    }  # fmt: skip
    times: dict[str, list[float]] = {k: [] for k in runs}
    with torch.no_grad():
        for name, fn in runs.items():  # warm-up, and every mode really makes all its tokens
            assert tuple(fn().shape) == (d["batch"], n), f"{name} stopped early"
        for _ in range(d["rounds"]):
            for name, fn in runs.items():
                _sync(device)
                start = time.perf_counter()
                fn()
                _sync(device)
                times[name].append(time.perf_counter() - start)
        peaks = {}  # each mode's own peak memory, one more run after the timed ones
        for name, fn in runs.items():
            _reset_peak(device)
            fn()
            peaks[name] = _peak_mib(device)
    return {"times": times, "peak_mib": peaks}


def _in_child(*args: str, timeout: float | None = None) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    res = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, env=env,
                         timeout=timeout)  # fmt: skip
    if res.returncode:
        raise RuntimeError(f"ilql bench {' '.join(args)} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def hardware() -> str:
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()}, bf16 (DeepSpeed's for training; bf16 weights for decoding)"
    threads = os.environ.get("DORL_BENCH_THREADS") or torch.get_num_threads()
    return f"{os.cpu_count()}-core CPU ({platform.machine()}), {threads} torch thread(s), fp32"


def _row(figure: str, dorl: float, baseline: float, spread: list[float], notes: str, base: list[float] = ()) -> dict:
    """`spread`: dorl's value in each round; `base`: the baseline's in the same rounds (-> per-round ratios)."""
    spread_text = f"{min(spread):.3g}–{max(spread):.3g}" if spread else ""
    row = {"figure": figure, "dorl": dorl, "baseline": baseline, "ratio": dorl / baseline, "spread": spread_text,
           "notes": notes}  # fmt: skip
    if base:
        row["round_ratios"] = [round(a / b, 3) for a, b in zip(spread, base, strict=True)]
    return row


def run(quick: bool) -> list[dict]:
    """Rows (figure, dorl, baseline, ratio = dorl / baseline, spread, notes) as scripts/bench/run.py expects."""
    size = "quick" if quick else "full"
    shape, hw = SHAPES[size]["name"], hardware()
    per_round = [{kind: _in_child("train", size, kind) for kind in KINDS} for _ in range(TRAIN["rounds"])]

    def med(kind, key):
        return statistics.median(r[kind][key] for r in per_round)

    def each(kind, key):
        return [r[kind][key] for r in per_round]

    note = (
        f"{shape}; {TRAIN['batch']} lines x {TRAIN['length']} tokens, the last {TRAIN['response']} the response; {hw}"
    )
    rows = []
    for kind in ("efficient", "reference"):
        step, peak = f"ILQL train step s ({kind} heads) vs TF step", f"ILQL train peak MiB ({kind} heads) vs TF"
        rows.append(
            _row(step, med(kind, "step_s"), med("tf", "step_s"), each(kind, "step_s"), note, each("tf", "step_s"))
        )
        before = f"; before the first step: {med(kind, 'baseline_mib'):.0f} MiB"
        rows.append(_row(peak, med(kind, "peak_mib"), med("tf", "peak_mib"), each(kind, "peak_mib"), note + before,
                         each("tf", "peak_mib")))  # fmt: skip
    eff, ref, lm = (per_round[0][k]["weights"] for k in ("efficient", "reference", "tf"))
    figure = "weights incl. heads, M: efficient vs reference"
    rows.append(_row(figure, eff / 1e6, ref / 1e6, [], f"{shape}; the LM alone: {lm / 1e6:.1f} M"))

    dec = _in_child("decode", size)["times"]
    toks = DECODE["batch"] * DECODE["new"]
    ms = {mode: [1e3 * s / toks for s in times] for mode, times in dec.items()}
    note = f"{shape}; {DECODE['batch']} prompts x {DECODE['prompt']} tokens, {DECODE['new']} new, KV cache; {hw}"
    for mode, label in (
        ("beta0", "beta 0"),
        ("efficient", "beta 1, efficient heads"),
        ("reference", "beta 1, reference heads"),
    ):
        figure = f"ILQL decoding ms per new token ({label}) vs HF greedy"
        rows.append(_row(figure, statistics.median(ms[mode]), statistics.median(ms["tf"]), ms[mode], note, ms["tf"]))
    figure = "DT decoding ms per new token (return-token prompt) vs HF greedy"
    rows.append(_row(figure, statistics.median(ms["dt"]), statistics.median(ms["tf"]), ms["dt"], note, ms["tf"]))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a small GPT-2 instead of distilgpt2's shape")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads:
        os.environ["DORL_BENCH_THREADS"] = str(args.threads)
    if args.child:
        what, size, *rest = args.child
        print(json.dumps(child_train(size, rest[0]) if what == "train" else child_decode(size)))
        return
    for row in run(args.quick):
        print(json.dumps({"bench": "ilql", **row}))


if __name__ == "__main__":
    main()
