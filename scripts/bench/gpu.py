"""The bench's GPU mode: the figures of issue 28 on one GPU in about 3 minutes, each part a bounded child process.

    python scripts/bench/gpu.py [--tiny] [--out gpu.json] [--budget 190]
    python scripts/bench/run.py --gpu          (the same rows in make bench's results table)

- train:   distilgpt2's shape (6 x 768, GPT-2's vocabulary + dorl's 15 tokens) in bf16 through dorl's engine
           (`Trainer._step`: DeepSpeed ZeRO-0, the base tf method's loss on full 1024-token blocks, micro-batch
           16): real tokens/s, MFU (`dorl.engine.monitor.model_flops` over the GPU's dense bf16 peak) and peak
           memory, with SDPA attention (flash on Hopper), with HF's eager attention, and with SDPA under
           DeepSpeed's `engine.compile()` (torch.compile, inductor). Goal: MFU >= 40%.
- relabel: a distilgpt2-shape LM trained briefly on simulated dialogues (so that it ends its turns), 5 beams x 32
           new tokens, BERTScore with a random encoder of BERT-base's shape (12 x 768, layer 9, MiniLM's
           WordPiece): dorl's chunk (`relabel_chunk`, fp32 as `dorl relabel` loads it, and bf16 weights) vs the
           reference's loop (HF `generate` then bert-score, one context at a time: scripts/bench/relabel.py), in
           pairs/s. The loop's rate does not depend on how many contexts it gets, so it runs on fewer; the
           candidates of the contexts both ran are compared. Goal: >= 20x.
- ilql:    scripts/bench/ilql.py's children at distilgpt2's shape in bf16: an ILQL step (efficient heads, Polyak
           every step) vs a TF step on 16 lines x 256 tokens; decoding 8 prompts x 32 new tokens, beta 1 vs HF
           greedy. Goals: step time and peak memory <= 1.5x TF; decoding <= 1.5x TF.

Each part runs in its own process with a time limit (a part that fails or runs out of time is recorded, the others
run); peak memory is CUDA's max_memory_allocated (on the CPU: the process's peak RSS). --tiny is the GPU check's
CPU dry run (scripts/gpu/check.sh with DORL_GPU_DRY_RUN=1): 2 layers x 64 and a few steps, the same code paths and
the same keys; its figures mean nothing.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
for _k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_k, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("DORL_LOG_LEVEL", "WARNING")

DISTIL = {"n_layer": 6, "n_embd": 768, "n_head": 12}
TINY = {"n_layer": 2, "n_embd": 64, "n_head": 2}
BERT_BASE = {"n_layer": 12, "n_embd": 768, "n_head": 12, "layer": 9}  # bert-score's layer for bert-base-uncased
BERT_TINY = {"n_layer": 2, "n_embd": 64, "n_head": 2, "layer": 2}
# (name, attn_implementation, compiled)
VARIANTS = (("sdpa", "sdpa", False), ("eager attention", "eager", False), ("sdpa + torch.compile", "sdpa", True))
SIZES = {
    "gpu": {
        "train": {"block": 1024, "micro": 16, "warmup": 3, "steps": 10},
        "relabel": {"train_steps": 300, "train_batch": 16, "train_len": 256, "reference": 32, "dorl": 256,
                    "batch": 32, "new": 32},
        "ilql": {"size": "full", "train": {"batch": 16, "length": 256, "response": 32, "steps": 6},
                 "decode": {"batch": 8, "prompt": 96, "new": 32, "rounds": 3}},
    },
    "tiny": {
        "train": {"block": 64, "micro": 2, "warmup": 1, "steps": 2},
        "relabel": {"train_steps": 4, "train_batch": 2, "train_len": 48, "reference": 2, "dorl": 4, "batch": 4,
                    "new": 4},
        "ilql": {"size": "tiny", "train": {"batch": 2, "length": 32, "response": 8, "steps": 1},
                 "decode": {"batch": 2, "prompt": 8, "new": 4, "rounds": 1}},
    },
}  # fmt: skip
# each part's own limit, seconds (the budget may cut it further); --tiny's are loose: a shared CPU is slow
CAPS_S = {"gpu": {"train": 110, "relabel": 75, "ilql": 60}, "tiny": {"train": 200, "relabel": 200, "ilql": 200}}
GOALS = {
    "train MFU, bf16, best variant": ((">=", 0.40), "MFU ≥ 40%"),
    "relabel pairs/s vs the reference's one-context loop": ((">=", 20.0), "≥ 20×"),
    "ILQL train step s (efficient heads) vs TF step": (("<=", 1.5), "≤ 1.5×"),
    "ILQL train peak MiB (efficient heads) vs TF": (("<=", 1.5), "≤ 1.5×"),
    "ILQL decoding ms per new token (beta 1, efficient heads) vs TF greedy": (("<=", 1.5), "≤ 1.5×"),
}


def _device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def _free() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ---------------------------------------------------------------- train (child)


def _gpt2(shape: dict, vocab: int, positions: int, attn: str = "sdpa"):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=vocab, n_positions=positions, bos_token_id=0, eos_token_id=0, pad_token_id=0,
                     attn_implementation=attn, **shape)  # fmt: skip
    return GPT2LMHeadModel(cfg)


def train_variant(shape: dict, vocab: int, size: dict, attn: str, compiled: bool) -> dict:
    """Optimizer steps of dorl's engine on random full blocks (the base tf method): tokens/s, MFU, peak memory."""
    import numpy as np
    from ilql import _peak_mib, _reset_peak

    from dorl import config
    from dorl import methods as registry
    from dorl.engine import dist as dmod
    from dorl.engine import monitor
    from dorl.engine.checkpoint import Checkpointer
    from dorl.engine.data import Examples
    from dorl.engine.trainer import Trainer, accumulator

    device, block, micro = _device(), size["block"], size["micro"]
    sets = [f"tf.batch_size={micro}", f"tf.micro_batch_size={micro}", f"tf.max_length={block}", "tf.lr=1e-4"]
    method = registry.get("tf", config.load(sets=sets))  # bf16 on a GPU ('auto'), fp32 on the CPU
    method.pad_id = 0
    module = method.wrap(_gpt2(shape, vocab, block, attn).to(device))
    g = np.random.default_rng(1)
    data = Examples.from_lists([g.integers(1, vocab, block) for _ in range(micro)])
    idx = np.arange(micro)
    with dmod.rendezvous_env(), tempfile.TemporaryDirectory() as tmp:
        d = dmod.setup()
        trainer = Trainer(method, module, method.train_config(), data, data, d, Path(tmp),
                          Checkpointer(Path(tmp) / "checkpoints", d, False, 1))  # fmt: skip
        if compiled:  # what dorl would call: DeepSpeed compiles the module it wraps (inductor; 'eager' on a CPU)
            trainer.engine.compile(backend="inductor" if device.type == "cuda" else "eager")
        acc = accumulator(device)
        _reset_peak(device)
        times, losses = [], []
        started = time.perf_counter()
        for _ in range(size["warmup"] + size["steps"]):
            _sync(device)
            t0 = time.perf_counter()
            trainer._step(idx, acc)
            _sync(device)
            times.append(time.perf_counter() - t0)
            losses.append(float(acc["loss"]) / max(acc["targets"], 1.0))
            acc["loss"].zero_()
            acc["targets"] = 0.0
        step_s = statistics.median(times[size["warmup"] :])
        profile = _profile(trainer, idx, acc, device) if not compiled and attn == "sdpa" else None
        tokens, targets, tokens_sq = micro * block, micro * (block - 1), micro * block**2
        flops = monitor.model_flops(trainer.flops, tokens, targets, tokens_sq)
        out = {
            "tokens_per_s": tokens / step_s,
            "step_ms": 1e3 * step_s,
            "mfu": flops / step_s / trainer.peak if trainer.peak else None,
            "tflops": flops / step_s / 1e12,
            "peak_mib": _peak_mib(device),
            "first_steps_s": round(sum(times[: size["warmup"]]), 2),  # compilation, allocations
            "warmup_steps": size["warmup"],
            "precision": "bf16" if trainer.bf16 else "fp32",
            "attention": module.lm.config._attn_implementation,
            "losses": [round(x, 4) for x in losses],
            "seconds": round(time.perf_counter() - started, 1),
            "profile": profile,
        }
        trainer.engine.destroy()
    del trainer, module
    _free()
    return out


def _profile(trainer, idx, acc, device, steps: int = 3) -> dict | None:
    """Where a step's time goes (if MFU falls short): torch.profiler over a few steps, the device's busy time
    against the wall time (idle = launch or host bound) and the kernels (or CPU ops) that take the most."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    try:
        with profile(activities=activities) as prof:
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(steps):
                trainer._step(idx, acc)
            _sync(device)
            wall = time.perf_counter() - t0
        events = prof.key_averages()
        if cuda:  # the kernels' own rows (an op's row repeats the time of the kernels it launched)
            events = [e for e in events if e.device_type == DeviceType.CUDA]
        key = "self_device_time_total" if cuda else "self_cpu_time_total"
        top = sorted(events, key=lambda e: getattr(e, key), reverse=True)[:15]
        busy = sum(getattr(e, key) for e in events) / 1e6  # seconds
        return {
            "steps": steps,
            "wall_s": round(wall, 4),
            "busy_s": round(busy, 4) if cuda else None,  # the GPU's kernels, summed
            "busy_fraction": round(busy / wall, 3) if cuda else None,
            "top": [{"name": e.key[:120], "ms": round(getattr(e, key) / 1e3, 3), "calls": e.count} for e in top],
        }
    except Exception as e:  # a profile is a help, not a figure
        return {"error": f"{type(e).__name__}: {str(e)[:300]}"}
    finally:
        acc["loss"].zero_()
        acc["targets"] = 0.0


def child_train(tiny: bool) -> None:
    """Every variant, one JSON line each (a variant that fails prints its error and the next one runs)."""
    size = SIZES["tiny" if tiny else "gpu"]["train"]
    shape, vocab = (TINY, 1000) if tiny else (DISTIL, 50_272)
    for name, attn, compiled in VARIANTS:
        try:
            row = train_variant(shape, vocab, size, attn, compiled)
        except Exception as e:  # recorded; the other variants still run
            row = {"error": f"{type(e).__name__}: {str(e)[:800]}"}
            _free()
        print(json.dumps({"variant": name, **row}), flush=True)


# ---------------------------------------------------------------- relabel (child)


def _trained_lm(tok, shape: dict, size: dict, device):
    """A GPT-2 of `shape` trained `steps` steps on simulated dialogues (bf16 autocast on a GPU), in fp32 after."""
    import random

    import torch
    from relabel import dialogues

    from dorl.text import render_conversation

    lm = _gpt2(shape, len(tok), 512).to(device)
    lm.config.eos_token_id = lm.config.pad_token_id = tok.eos_token_id
    ids = [tok(render_conversation(d))["input_ids"][: size["train_len"]] for d in dialogues(600, seed=1)]
    opt = torch.optim.AdamW(lm.parameters(), lr=1e-3)
    rng = random.Random(0)
    for _ in range(size["train_steps"]):
        batch = rng.sample(ids, size["train_batch"])
        width = max(len(x) for x in batch)
        x = torch.full((len(batch), width), tok.eos_token_id)
        labels = torch.full((len(batch), width), -100)
        for i, b in enumerate(batch):
            x[i, : len(b)], labels[i, : len(b)] = torch.tensor(b), torch.tensor(b)
        x, labels = x.to(device), labels.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = lm(input_ids=x, attention_mask=(labels != -100).long(), labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    del opt
    return lm.eval(), float(loss)


def child_relabel(tiny: bool) -> None:
    import copy

    import torch
    from bert_score import BERTScorer
    from ilql import _peak_mib, _reset_peak
    from relabel import contexts, dorl_way, reference

    from dorl import config
    from dorl.metrics import get_metric
    from dorl.tokenizer import build_tokenizer
    from tests.fixtures import make_bert_encoder

    size, device = SIZES["tiny" if tiny else "gpu"]["relabel"], _device()
    shape, bert = (TINY, BERT_TINY) if tiny else (DISTIL, BERT_BASE)
    tok = build_tokenizer("gpt2")
    tok.padding_side = "left"
    started = time.perf_counter()
    lm, loss = _trained_lm(tok, shape, size, device)
    trained_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_bert_encoder(Path(tmp) / "encoder", bert["n_layer"], bert["n_embd"], bert["n_head"])
        sets = [f"relabel.max_new_tokens={size['new']}", f"relabel.batch_size={size['batch']}",
                f"relabel.chunk_size={size['dorl']}", f"metrics.bertscore_model={folder}",
                f"metrics.bertscore_layers={bert['layer']}", "metrics.bertscore_rescale=false"]  # fmt: skip
        cfg = config.load(sets=sets)
        rcfg = cfg.relabel  # 5 beams, 5 candidates, 96 prompt tokens: the reference's
        metric = get_metric("bertscore", cfg.metrics)
        scorer = BERTScorer(model_type=str(folder), num_layers=bert["layer"], lang="en", device=str(device),
                            batch_size=cfg.metrics.batch_size)  # fmt: skip
        frame = contexts(size["dorl"])
        ref_frame = frame.iloc[: size["reference"]]
        reference(lm, tok, frame.iloc[:2], rcfg, scorer)  # warm-up: kernels, caches, allocator
        dorl_way(lm, tok, frame.iloc[:4], rcfg, metric)

        def timed(fn):
            _sync(device)
            _reset_peak(device)
            t0 = time.perf_counter()
            got = fn()
            _sync(device)
            return got, time.perf_counter() - t0, _peak_mib(device)

        (ref_cands, _), t_ref, peak_ref = timed(lambda: reference(lm, tok, ref_frame, rcfg, scorer))
        (cands, _, stats), t_dorl, peak_dorl = timed(lambda: dorl_way(lm, tok, frame, rcfg, metric))
        lm16 = copy.deepcopy(lm).to(torch.bfloat16) if device.type == "cuda" else lm
        dorl_way(lm16, tok, frame.iloc[:4], rcfg, metric)
        (cands16, _, stats16), t_16, peak_16 = timed(lambda: dorl_way(lm16, tok, frame, rcfg, metric))
    k, n = rcfg.num_candidates, len(ref_cands)
    same = sum(a == b for a, b in zip(cands[:n], ref_cands, strict=True))
    lengths = [len(tok(c)["input_ids"]) for cs in cands for c in cs]
    print(json.dumps({
        "reference": {"contexts": n, "pairs_per_s": n * k / t_ref, "seconds": t_ref, "peak_mib": peak_ref},
        "dorl": {"contexts": len(frame), "pairs_per_s": len(frame) * k / t_dorl, "seconds": t_dorl,
                 "peak_mib": peak_dorl, "generate_s": stats["generate_s"], "score_s": stats["score_s"]},
        "dorl_bf16": {"contexts": len(frame), "pairs_per_s": len(frame) * k / t_16, "seconds": t_16,
                      "peak_mib": peak_16, "same_as_fp32": sum(a == b for a, b in zip(cands16, cands, strict=True))},
        "same_candidates": same, "compared": n, "mean_candidate_tokens": sum(lengths) / max(len(lengths), 1),
        "lm_train_loss": round(loss, 3), "lm_train_s": round(trained_s, 1),
        "setup": f"{rcfg.num_beams} beams x {rcfg.max_new_tokens} new tokens, {rcfg.num_candidates} candidates, "
                 f"prompts <= {rcfg.prompt_tokens} tokens, batch {rcfg.batch_size}; BERTScore: random BERT "
                 f"{bert['n_layer']}x{bert['n_embd']}, layer {bert['layer']}, no rescaling",
    }), flush=True)  # fmt: skip


# ---------------------------------------------------------------- the parent: parts, limits, rows


def _child(part: str, tiny: bool, timeout: float) -> list[dict]:
    """Run a part's child; its JSON lines (those printed before a timeout too). Raises on failure with no line."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    cmd = [sys.executable, __file__, "--child", part] + (["--tiny"] if tiny else [])
    try:
        res = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=env, timeout=timeout)
        out, error = res.stdout, f"exit code {res.returncode}" if res.returncode else None
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        error = f"timed out after {timeout:.0f} s"
    lines = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    if error:
        lines.append({"error": error})
    return lines


def _row(figure, value, unit, baseline=None, notes="", **extra) -> dict:
    ratio = value / baseline if value is not None and baseline else None
    row = {"figure": figure, "dorl": value, "unit": unit, "baseline": baseline, "ratio": ratio, "notes": notes}
    goal = GOALS.get(figure)
    if goal:
        row["goal"], row["goal_text"] = goal
    return {**row, **extra}


def train_rows(lines: list[dict], hw: str) -> list[dict]:
    rows, best = [], None
    for r in lines:
        if "variant" not in r:
            continue
        fig = f"train tokens/s, bf16, {r['variant']}"
        if "error" in r:
            rows.append(_row(fig, None, "real tokens/s", error=r["error"]))
            continue
        mfu = "-" if r["mfu"] is None else f"{r['mfu']:.1%}"
        notes = (f"step {r['step_ms']:.1f} ms, {r['tflops']:.1f} TFLOP/s of model FLOPs, MFU {mfu}, peak "
                 f"{r['peak_mib']:,.0f} MiB, first {r['warmup_steps']} steps {r['first_steps_s']} s; attention "
                 f"{r['attention']}, {r['precision']}; {hw}")  # fmt: skip
        rows.append(_row(fig, r["tokens_per_s"], "real tokens/s", notes=notes, peak_mib=r["peak_mib"], mfu=r["mfu"],
                         losses=r["losses"]))  # fmt: skip
        if r["mfu"] is not None and (best is None or r["mfu"] > best["mfu"]):
            best = r
    errors = [r["error"] for r in lines if "error" in r and "variant" not in r]
    seen = {r["variant"] for r in lines if "variant" in r}
    for name, *_ in VARIANTS:  # a variant the child never reached (it timed out or died before)
        if name not in seen:
            rows.append(_row(f"train tokens/s, bf16, {name}", None, "real tokens/s", error=errors[0] if errors else
                             "not reached"))  # fmt: skip
    row = _row(
        "train MFU, bf16, best variant",
        best and best["mfu"],
        "fraction of the dense bf16 peak",
        notes=f"{best['variant']}" if best else "no variant measured MFU",
        error=None if best else (errors[0] if errors else "no variant measured MFU"),
        profile=next((r["profile"] for r in lines if r.get("profile")), None),
    )
    row["ratio"] = row["dorl"]  # the goal is on MFU itself
    return rows + [row]


BF16_FIG = "relabel pairs/s, bf16 weights vs fp32 (dorl)"


def relabel_rows(lines: list[dict], hw: str) -> list[dict]:
    r = next((x for x in lines if "dorl" in x), None)
    fig = "relabel pairs/s vs the reference's one-context loop"
    if r is None:
        error = (lines[-1] if lines else {}).get("error", "no result")
        return [_row(fig, None, "pairs/s", error=error), _row(BF16_FIG, None, "pairs/s", error=error)]
    d, ref, b16 = r["dorl"], r["reference"], r["dorl_bf16"]
    notes = (f"{r['setup']}; dorl {d['contexts']} contexts (generate {d['generate_s']:.1f} s, score "
             f"{d['score_s']:.1f} s), peak {d['peak_mib']:,.0f} MiB; reference {ref['contexts']} contexts, peak "
             f"{ref['peak_mib']:,.0f} MiB; same candidates {r['same_candidates']}/{r['compared']}; mean candidate "
             f"{r['mean_candidate_tokens']:.1f} tokens; {hw}")  # fmt: skip
    return [
        _row(fig, d["pairs_per_s"], "pairs/s", ref["pairs_per_s"], notes, peak_mib=d["peak_mib"],
             baseline_peak_mib=ref["peak_mib"], same_candidates=r["same_candidates"], compared=r["compared"]),
        _row(BF16_FIG, b16["pairs_per_s"], "pairs/s", d["pairs_per_s"],
             f"same candidates as fp32: {b16['same_as_fp32']}/{d['contexts']}; peak {b16['peak_mib']:,.0f} MiB",
             peak_mib=b16["peak_mib"]),
    ]  # fmt: skip


def ilql_rows(tiny: bool, deadline: float, hw: str) -> list[dict]:
    """scripts/bench/ilql.py's children (a fresh process per training configuration: its own peak memory)."""
    import ilql

    size = SIZES["tiny" if tiny else "gpu"]["ilql"]
    os.environ["DORL_BENCH_ILQL"] = json.dumps({"train": size["train"], "decode": size["decode"]})
    ilql.TRAIN.update(size["train"])
    ilql.DECODE.update(size["decode"])
    # a fresh process per configuration on the GPU (each its own peak memory); the dry run's numbers mean nothing,
    # and three interpreters cost it more than everything they run
    child = ilql._in_child if not tiny else (lambda what, *a, timeout: _in_process(ilql, what, *a))
    t, dz, rows = size["train"], size["decode"], []
    step_fig, peak_fig = "ILQL train step s (efficient heads) vs TF step", "ILQL train peak MiB (efficient heads) vs TF"
    try:
        tf, eff = (child("train", size["size"], k, timeout=max(deadline - time.time(), 1))
                   for k in ("tf", "efficient"))  # fmt: skip
        note = (f"{ilql.SHAPES[size['size']]['name']}; {t['batch']} lines x {t['length']} tokens, the last "
                f"{t['response']} the response; {tf['precision']}; {hw}")  # fmt: skip
        rows.append(_row(step_fig, eff["step_s"], "s", tf["step_s"], note))
        rows.append(_row(peak_fig, eff["peak_mib"], "MiB", tf["peak_mib"], note, peak_mib=eff["peak_mib"],
                         baseline_peak_mib=tf["peak_mib"]))  # fmt: skip
    except Exception as e:  # recorded; decoding still runs
        rows += [_row(f, None, "", error=f"{type(e).__name__}: {str(e)[-800:]}") for f in (step_fig, peak_fig)]
    dec_figs = {"efficient": "ILQL decoding ms per new token (beta 1, efficient heads) vs TF greedy",
                "beta0": "ILQL decoding ms per new token (beta 0) vs TF greedy",
                "dt": "DT decoding ms per new token vs TF greedy"}  # fmt: skip
    try:
        dec = child("decode", size["size"], timeout=max(deadline - time.time(), 1))
    except Exception as e:  # recorded
        return rows + [_row(f, None, "", error=f"{type(e).__name__}: {str(e)[-800:]}") for f in dec_figs.values()]
    toks = dz["batch"] * dz["new"]
    ms = {mode: statistics.median(1e3 * s / toks for s in times) for mode, times in dec["times"].items()}
    peak = dec["peak_mib"]
    note = f"{dz['batch']} prompts x {dz['prompt']} tokens, {dz['new']} new, KV cache, bf16 weights on a GPU; {hw}"
    for mode, fig in dec_figs.items():
        rows.append(_row(fig, ms[mode], "ms/token", ms["tf"], note + f"; peak {peak[mode]:,.0f} vs TF "
                         f"{peak['tf']:,.0f} MiB", peak_mib=peak[mode], baseline_peak_mib=peak["tf"]))  # fmt: skip
    return rows


def _in_process(ilql, what: str, size: str, *kind: str) -> dict:
    return json.loads(json.dumps(ilql.child_train(size, kind[0]) if what == "train" else ilql.child_decode(size)))


def hardware() -> str:
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}"
    return f"CPU ({os.cpu_count()} cores), torch {torch.__version__}"


def run(tiny: bool = False, budget: float = 190.0, out: Path | None = None, only: tuple[str, ...] = ()) -> dict:
    """Every part within `budget` seconds; the result (written to `out` after each part when given):
    {hardware, parts: {name: {ok, seconds, error}}, rows}."""
    deadline = time.time() + budget
    hw = hardware()
    result = {"hardware": hw, "tiny": tiny, "budget_s": budget, "parts": {}, "rows": []}
    caps = CAPS_S["tiny" if tiny else "gpu"]
    for part in only or ("train", "relabel", "ilql"):
        left = deadline - time.time()
        started = time.perf_counter()
        print(f"[bench gpu] {part} (at most {min(caps[part], left):.0f} s)", file=sys.stderr, flush=True)
        try:
            if left < 5:
                raise TimeoutError("no time left in the bench's budget")
            limit = time.time() + min(caps[part], left)
            if part == "ilql":
                rows = ilql_rows(tiny, limit, hw)
            else:
                lines = _child(part, tiny, limit - time.time())
                rows = (train_rows if part == "train" else relabel_rows)(lines, hw)
            errors = [r["error"] for r in rows if r.get("error")]
            result["parts"][part] = {"ok": not errors, "error": errors[0] if errors else None}
        except Exception as e:  # a whole part lost: recorded, the next one runs
            rows = [_row(f, None, "") for f in GOALS if _part_of(f) == part]
            result["parts"][part] = {"ok": False, "error": f"{type(e).__name__}: {str(e)[-800:]}"}
        result["parts"][part]["seconds"] = round(time.perf_counter() - started, 1)
        result["rows"] += [judged({"part": part, **r}) for r in rows]
        if out is not None:
            out.write_text(json.dumps(result, indent=2, default=str))
    return result


def judged(row: dict) -> dict:
    """run.py's judgement (goal as {op, value, text}, met), and a verdict word: met, NOT met, not measured."""
    from run import judge

    judge(row)
    row["verdict"] = {True: "met", False: "NOT met", None: "not measured"}[row["met"]] if row["goal"] else None
    return row


def _part_of(figure: str) -> str:
    return figure.split(" ", 1)[0].lower() if not figure.startswith("ILQL") else "ilql"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="tiny shapes on the CPU (the GPU check's dry run)")
    ap.add_argument("--out", type=Path, help="write the result here (JSON), after each part")
    ap.add_argument("--budget", type=float, default=190.0, help="seconds for all parts together")
    ap.add_argument("--only", default="", help="comma-separated subset of train,relabel,ilql")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        {"train": child_train, "relabel": child_relabel}[args.child](args.tiny)
        return
    result = run(args.tiny, args.budget, args.out, tuple(x for x in args.only.split(",") if x))
    for r in result["rows"]:
        goal = f", goal {r['goal']['text']}: {r['verdict']}" if r["goal"] else ""
        print(f"{r['figure']}: {r.get('dorl')} {r.get('unit', '')}, ratio {r.get('ratio')}{goal}")


if __name__ == "__main__":
    main()
