"""Benchmark of LoRA (`model.lora_r`, dorl/engine/lora.py) against full fine-tuning: step time and peak memory.

Both train the same model on the same batch with dorl's training engine (`Trainer._step`: DeepSpeed forward,
backward and optimizer step, the tf_top method's collate: the output projection only at the response tokens), the
paper preset's settings otherwise (AdamW, fp32 on CPU, bf16 on a GPU):
  - full: every weight trains (model.lora_r = 0);
  - lora: `dorl.engine.lora.adapt` as the train stage calls it for tf_top: rank-16 adapters on peft's GPT-2
          default (c_attn) train, the rest frozen (the goals: step time <= 1.0x, training memory <= 0.6x full);
  - lora_tokens: the same and the 16 added tokens' embedding rows (as the base tf trains them, and DT its return
          tokens): peft's trainable tokens copy the whole (tied) embedding and take its full gradient every step.
Shapes: --quick GPT-2 2x256, else both it and distilgpt2's (6 layers, width 768, 12 heads), random weights (no hub),
GPT-2's vocabulary with dorl's 15 special tokens (50,272). Every measurement runs in a fresh process (its peak memory
its own): the peak RSS during the steps (VmHWM, reset before them; CUDA max_memory_allocated on a GPU), and the
training memory = that peak minus the process's RSS before the model was built (imports only): what the weights,
gradients, optimizer states and activations take. The two take turns `rounds` times; the figure is the median over
rounds of each round's median step.

    python scripts/bench/lora.py [--quick] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from ilql import SHAPES, _peak_mib, _reset_peak, _sync  # noqa: E402  (the ILQL bench's shapes and memory probes)

TRAIN = {"batch": 4, "length": 256, "response": 32, "steps": 5, "rounds": 3, "r": 16}
KINDS = ("full", "lora", "lora_tokens")


def _rss_mib() -> float:
    try:
        status = Path("/proc/self/status").read_text()
        return int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("VmRSS:"))) / 1024
    except (OSError, StopIteration):
        return 0.0


def child_train(size: str, kind: str) -> dict:
    """One configuration in this (fresh) process: `steps` timed optimizer steps after a first, untimed one."""
    import tempfile

    import numpy as np
    import torch

    from dorl import config
    from dorl import methods as registry
    from dorl.engine import dist as dmod
    from dorl.engine import lora
    from dorl.engine.checkpoint import Checkpointer
    from dorl.engine.data import Examples
    from dorl.engine.trainer import Trainer, accumulator
    from dorl.tokenizer import build_tokenizer

    if os.environ.get("DORL_BENCH_THREADS"):
        torch.set_num_threads(int(os.environ["DORL_BENCH_THREADS"]))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.cuda.init()
    tok = build_tokenizer("gpt2")  # GPT-2's BPE and dorl's special tokens (the added tokens LoRA trains)
    import deepspeed  # noqa: F401  (the libraries the steps use, loaded before the baseline is read)
    import peft  # noqa: F401
    from transformers import GPT2Config, GPT2LMHeadModel

    before = torch.cuda.memory_allocated() / 2**20 if device.type == "cuda" else _rss_mib()
    t, shape = TRAIN, SHAPES[size]
    b, length, resp = t["batch"], t["length"], t["response"]
    sets = [f"finetune.{k}={v}" for k, v in (("batch_size", b), ("micro_batch_size", b), ("lr", 1e-5))]
    if kind != "full":
        sets += [f"model.lora_r={t['r']}", f"model.lora_alpha={2 * t['r']}"]
    cfg = config.load(sets=sets)
    method = registry.get("tf_top", cfg)
    method.pad_id = 0
    torch.manual_seed(0)
    gcfg = GPT2Config(vocab_size=len(tok), n_positions=1024, n_layer=shape["n_layer"], n_embd=shape["n_embd"],
                      n_head=shape["n_head"], bos_token_id=0, eos_token_id=0, pad_token_id=0)  # fmt: skip
    # lora: the tokens tf_top trains (none: its base trained them); lora_tokens: every added token (the base tf's)
    tokens = method.untrained_tokens(tok) if kind == "lora" else None
    lm = lora.adapt(GPT2LMHeadModel(gcfg).to(device), cfg.model, tok, 0, tokens)
    module = method.wrap(lm)
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    total = sum(p.numel() for p in module.parameters())
    g = np.random.default_rng(1)
    rows = [g.integers(1, len(tok), length) for _ in range(b)]
    data = Examples.from_lists(rows, label_start=np.full(b, length - resp))
    with dmod.rendezvous_env(), tempfile.TemporaryDirectory() as tmp:
        d = dmod.setup()
        ckpt = Checkpointer(Path(tmp) / "checkpoints", d, False, 1)
        trainer = Trainer(method, module, method.train_config(), data, data, d, Path(tmp), ckpt)
        acc = accumulator(device)  # the trainer's own, with every key its step adds to
        _reset_peak(device)
        times = []
        for _ in range(t["steps"] + 1):  # the first step (allocations, optimizer state) is not timed
            _sync(device)
            start = time.perf_counter()
            trainer._step(np.arange(b), acc)
            _sync(device)
            times.append(time.perf_counter() - start)
        peak = _peak_mib(device)
        precision = "bf16" if trainer.bf16 else "fp32"
    return {"step_s": statistics.median(times[1:]), "peak_mib": peak, "train_mib": peak - before,
            "before_mib": before, "trainable": trainable, "total": total, "precision": precision}  # fmt: skip


def _in_child(*args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    res = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, env=env)
    if res.returncode:
        raise RuntimeError(f"lora bench {' '.join(args)} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def hardware() -> str:
    import platform

    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()}, bf16 (DeepSpeed's)"
    threads = os.environ.get("DORL_BENCH_THREADS") or torch.get_num_threads()
    return f"{os.cpu_count()}-core CPU ({platform.machine()}), {threads} torch thread(s), fp32"


def run(quick: bool) -> list[dict]:
    """Rows (figure, dorl = LoRA, baseline = full fine-tuning, ratio, round_ratios, goal, notes) per shape."""
    os.environ.setdefault("DORL_BENCH_THREADS", "1")  # two threads on a shared 2-core machine swing with the load
    rows, hw = [], hardware()
    for size in ["quick"] if quick else ["quick", "full"]:
        shape = SHAPES[size]["name"]
        per_round = []
        for r in range(TRAIN["rounds"]):
            order = KINDS[r % 3 :] + KINDS[: r % 3]  # the order rotates: a later run may find a busier machine
            per_round.append({kind: _in_child(size, kind) for kind in order})

        def each(kind, key, rounds=per_round):
            return [x[kind][key] for x in rounds]

        lo, lt, fu = (per_round[0][k] for k in KINDS[1:] + KINDS[:1])
        note = (f"{shape}; {TRAIN['batch']} lines x {TRAIN['length']} tokens, the last {TRAIN['response']} the "
                f"response; {hw}; trained weights: LoRA r={TRAIN['r']} on c_attn {lo['trainable']:,}, with the 16 "
                f"added tokens' rows {lt['trainable']:,}, full {fu['trainable']:,}")  # fmt: skip
        for kind, what, goals in (("lora", "LoRA (tf_top: adapters only)", True),
                                  ("lora_tokens", "LoRA + 16 token rows (tf, DT)", False)):  # fmt: skip
            for key, unit, goal in (("step_s", "train step s", ("<=", 1.0)),
                                    ("train_mib", "training memory MiB", ("<=", 0.6))):  # fmt: skip
                ours, base = each(kind, key), each("full", key)
                extra = ""
                if key == "train_mib":
                    peaks = statistics.median(each(kind, "peak_mib")), statistics.median(each("full", "peak_mib"))
                    extra = (f"; training memory = peak RSS during the steps - RSS before the model (libraries "
                             f"loaded); whole-process peaks {peaks[0]:.0f} / {peaks[1]:.0f} MiB")  # fmt: skip
                rows.append({
                    "figure": f"{what} vs full fine-tuning: {unit}, {shape}",
                    "dorl": statistics.median(ours),
                    "baseline": statistics.median(base),
                    "ratio": statistics.median(ours) / statistics.median(base),
                    "round_ratios": [round(a / b, 3) for a, b in zip(ours, base, strict=True)],
                    "goal": goal if goals else None,
                    "notes": note + extra,
                })  # fmt: skip
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="GPT-2 2x256 only (else also distilgpt2's shape)")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default 1)")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads:
        os.environ["DORL_BENCH_THREADS"] = str(args.threads)
    if args.child:
        print(json.dumps(child_train(*args.child)))
        return
    for row in run(args.quick):
        print(json.dumps({"bench": "lora", **row}))


if __name__ == "__main__":
    main()
