"""Benchmark of relabelling: the reference's way against dorl's, on the same contexts, model and machine.

- reference: one context at a time: `model.generate` with 5 beams and 5 returned sequences on the
  context's prompt (as the released code generated), then BERTScore of that context's 5 candidates
  (bert-score's `BERTScorer.score`, its defaults; the released code scored all pairs in one call at
  the end, which the second table times too).
- before: `dorl relabel` as it first was (`relabel.generator=hf`, still an option): the same chunk, its
  candidates from `model.generate` batched over length-sorted, left-padded prompts, scored as below.
- dorl: `dorl.relabel.candidates.relabel_chunk`, what `dorl relabel` runs per chunk: dorl's beam search
  (one prompt pass per context, settled contexts leave the batch, duplicates generated once) and every
  pair of the chunk scored in one batched BERTScore pass.

The ways take turns for `--repeats` rounds and each keeps its fastest (on a shared machine other
jobs only ever slow a round down). All three must produce the same candidates (checked); rewards
are compared too (bert-score's own results move with how pairs are batched, see docs/relabel.md).
Throughput is candidate-reward pairs per second. A second table compares BERTScore alone:
bert-score's defaults (one `score` call over all pairs, batch 64, and one call per context)
against dorl's scorer.

The model is GPT-2 with 4 layers of width 256 and GPT-2's 50,257-token BPE (+15 special tokens), a
realistic shape for a CPU (the vocabulary projection dominates, as in distilgpt2), trained briefly on
simulated customer-service dialogues so that it answers in-domain and ends its turns with
<_rep_end_> (cached under $DORL_CACHE/bench). BERTScore uses the offline MiniLM encoder, rescaled.

    python scripts/bench/relabel.py            # 256 contexts
    python scripts/bench/relabel.py --quick    # 64 contexts
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

LAYERS, WIDTH, HEADS = 4, 256, 4
KV_HEADS = 2  # the Llama-shaped model's grouped-query attention (SmolLM2 / Qwen2.5 have it)
# The other family's model trains fewer steps (its loss is ~1.1 at step 50, in-domain and ending its turns; 300
# steps took 100 minutes on the loaded 2-core machine): relabel's cost depends on the candidates' lengths, which
# the bench reports.
FAMILY_STEPS = 60
TRAIN_STEPS, TRAIN_BATCH, TRAIN_DIALOGUES = 300, 8, 600

ITEMS = ["jeans", "shirt", "jacket", "boots", "hat", "scarf", "dress", "sneakers", "belt", "coat"]
NAMES = ["Ana Li", "Bo Chen", "Cy Diaz", "Di Evans", "Ed Fox", "Flo Gray", "Gus Hill", "Ivy Jones"]
INTENTS = {
    "return": ("I want to return my {item}.", "Sure, I can set up a return for your {item}."),
    "broken": ("My {item} arrived broken.", "I'm sorry to hear that. I will send a replacement {item}."),
    "refund": ("Where is my refund for the {item}?", "Your refund for the {item} was issued and takes 5 days."),
    "address": ("I need to change my shipping address.", "No problem, what is the new address?"),
    "size": ("Do you have the {item} in a larger size?", "Yes, the {item} comes in sizes up to XL."),
}
GREET = ["Hi, how can I help you today?", "Hello! What can I do for you?", "Good morning, how may I help?"]
ASK = ["May I have your full name?", "Could you tell me your name, please?", "What is your name?"]
GIVE = ["It's {name}.", "{name}.", "My name is {name}.", "Sure, {name}."]
ORDER = ["And the order number?", "Could you give me the order id?", "What is your order number?"]
BYE = ["Is there anything else I can help with?", "Anything else today?", "Have a great day, {name}!"]


def dialogues(n: int, seed: int) -> list[list[tuple[str, str]]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        item, name = rng.choice(ITEMS), rng.choice(NAMES)
        ask, answer = INTENTS[rng.choice(list(INTENTS))]
        turns = [("agent", rng.choice(GREET)), ("customer", ask.format(item=item))]
        turns += [("agent", rng.choice(ASK)), ("customer", rng.choice(GIVE).format(name=name))]
        if rng.random() < 0.6:
            turns += [("agent", rng.choice(ORDER)), ("customer", f"It is {rng.randint(10000, 99999)}.")]
        turns += [("agent", answer.format(item=item)), ("customer", "Thanks!")]
        turns += [("agent", rng.choice(BYE).format(name=name))]
        out.append(turns)
    return out


def build_model(steps: int, arch: str = "gpt2"):
    """GPT-2 4x256 with GPT-2's BPE, trained `steps` steps on simulated dialogues (cached); `arch` llama: the
    same size as a Llama (RoPE, SwiGLU MLP of 4x width, RMSNorm, 2 key/value heads, untied output layer), built
    as `model.source=config model.arch=llama` builds it."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from dorl.store.artifact import cache_root
    from dorl.text import render_conversation
    from dorl.tokenizer import build_tokenizer

    path = cache_root() / "bench" / f"relabel-{arch}-{LAYERS}x{WIDTH}-steps{steps}"
    if not (path / "model.safetensors").is_file():
        tok = build_tokenizer("gpt2")
        torch.manual_seed(0)
        cfg = GPT2Config(
            vocab_size=len(tok),
            n_layer=LAYERS,
            n_embd=WIDTH,
            n_head=HEADS,
            n_positions=512,
            bos_token_id=tok.eos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.eos_token_id,
        )
        if arch != "gpt2":
            from dorl.config import ModelConfig
            from dorl.engine.families import family_config

            mc = ModelConfig(source="config", arch=arch, n_layer=LAYERS, n_embd=WIDTH, n_head=HEADS, n_kv_head=KV_HEADS,
                             n_positions=512)  # fmt: skip
            cfg = family_config(mc, len(tok), tok.eos_token_id, tok.eos_token_id)
        model = AutoModelForCausalLM.from_config(cfg) if arch != "gpt2" else GPT2LMHeadModel(cfg)
        texts = [render_conversation(d) for d in dialogues(TRAIN_DIALOGUES, seed=1)]
        ids = [tok(t)["input_ids"][:256] for t in texts]
        opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
        rng = random.Random(0)
        started = time.perf_counter()
        for step in range(steps):
            batch = rng.sample(ids, TRAIN_BATCH)
            width = max(len(x) for x in batch)
            x = torch.full((len(batch), width), tok.eos_token_id)
            labels = torch.full((len(batch), width), -100)
            for i, b in enumerate(batch):
                x[i, : len(b)], labels[i, : len(b)] = torch.tensor(b), torch.tensor(b)
            loss = model(input_ids=x, attention_mask=(labels != -100).long(), labels=labels).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
            if step % 50 == 0 or step == steps - 1:
                print(
                    f"  training the bench model: step {step + 1}/{steps} loss {loss.item():.3f} "
                    f"({time.perf_counter() - started:.0f} s)",
                    file=sys.stderr,
                )
        model.save_pretrained(path)
        tok.save_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path)
    tok.padding_side = "left"
    return AutoModelForCausalLM.from_pretrained(path).eval(), tok


def contexts(n: int):
    import pandas as pd

    from dorl.text import examples

    rows = []
    for i, turns in enumerate(dialogues(n, seed=7)):
        # the customer opens, as in ABCD, MultiWOZ and Taskmaster: no context is a bare <_soc_>
        rows += [(f"b{i}", t, c, r) for t, c, r in examples(turns[1:])]
    return pd.DataFrame(rows, columns=["dialogue_id", "turn_index", "context", "response"]).iloc[:n]


class Clock:
    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def reference(model, tok, frame, rcfg, scorer):
    """One context at a time: generate (5 beams, 5 returned), then BERTScore of its 5 candidates."""
    import torch

    from dorl.generate import stop_token_ids
    from dorl.text import REP_END, prompt

    stops = stop_token_ids(tok, [REP_END])
    cands, rewards = [], []
    for ctx, human in zip(frame["context"], frame["response"], strict=True):
        enc = tok(prompt(ctx), return_tensors="pt").to(model.device)
        ids, mask = enc.input_ids[:, -rcfg.prompt_tokens :], enc.attention_mask[:, -rcfg.prompt_tokens :]
        with torch.no_grad():
            out = model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=rcfg.max_new_tokens,
                num_beams=rcfg.num_beams,
                num_return_sequences=rcfg.num_candidates,
                eos_token_id=stops,
                pad_token_id=tok.eos_token_id,
                do_sample=False,
                use_cache=True,
            )
        texts = [t.strip() for t in tok.batch_decode(out[:, ids.shape[1] :], skip_special_tokens=True)]
        # bert-score 0.3.13 cannot encode "" under transformers 5: empty candidates score 0, as in dorl
        keep = [i for i, t in enumerate(texts) if t]
        f1 = [0.0] * len(texts)
        if keep:
            _, _, f = scorer.score([texts[i] for i in keep], [human] * len(keep))
            for i, v in zip(keep, f.tolist(), strict=True):
                f1[i] = v
        cands.append(texts)
        rewards.append(f1)
    return cands, rewards


def dorl_way(model, tok, frame, rcfg, metric):
    from dorl.relabel.candidates import relabel_chunk

    table, stats = relabel_chunk(frame, 0, model, tok, metric, rcfg)
    table = table[table["candidate_index"] > 0]
    k = rcfg.num_candidates
    cands = [table["candidate"].tolist()[i : i + k] for i in range(0, len(table), k)]
    rewards = [table["reward"].tolist()[i : i + k] for i in range(0, len(table), k)]
    return cands, rewards, stats


def hf_batched(model, tok, frame, rcfg, metric):
    """The stage as it was before dorl's beam search: the same chunk, candidates from HF `generate`."""
    import dataclasses

    return dorl_way(model, tok, frame, dataclasses.replace(rcfg, generator="hf"), metric)


def max_diff(a, b) -> float:
    return max(abs(x - y) for ra, rb in zip(a, b, strict=True) for x, y in zip(ra, rb, strict=True))


def run(quick: bool, repeats: int = 3) -> list[dict]:
    import torch
    from bert_score import BERTScorer

    from dorl import config
    from dorl.metrics import get_metric
    from dorl.metrics.bertscore import MINILM_BASELINE, minilm_path

    n = 64 if quick else 256
    cfg = config.load(preset="tiny", sets=[f"relabel.chunk_size={n}"])
    rcfg = cfg.relabel
    model, tok = build_model(TRAIN_STEPS)
    frame = contexts(n)
    metric = get_metric("bertscore", cfg.metrics)
    scorer = BERTScorer(
        model_type=str(minilm_path()),
        num_layers=6,
        lang="en",
        rescale_with_baseline=True,
        baseline_path=str(MINILM_BASELINE),
    )
    pairs = n * rcfg.num_candidates
    hardware = f"{os.cpu_count()}-core CPU ({platform.processor() or platform.machine()}), torch {torch.__version__}, "
    hardware += f"{torch.get_num_threads()} threads"
    model_name = f"GPT-2 {LAYERS}x{WIDTH} (vocab {len(tok)}), trained {TRAIN_STEPS} steps on simulated dialogues"

    # warm up kernels and caches on a few contexts, so no way pays a first-call cost
    reference(model, tok, frame.iloc[:2], rcfg, scorer)
    dorl_way(model, tok, frame.iloc[:4], rcfg, metric)

    # The ways take turns, `repeats` times; each keeps its fastest round (other jobs on a shared machine
    # only ever slow a round down).
    t_ref = t_hf = t_dorl = None
    walls = {"reference": [], "hf": [], "dorl": []}  # every round's wall time, for the per-round ratios
    for _ in range(repeats):
        with Clock() as c:
            ref_cands, ref_rewards = reference(model, tok, frame, rcfg, scorer)
        t_ref = c if t_ref is None or c.wall < t_ref.wall else t_ref
        walls["reference"].append(c.wall)
        with Clock() as c:
            hf_cands, _, hf_stats = hf_batched(model, tok, frame, rcfg, metric)
        t_hf = c if t_hf is None or c.wall < t_hf.wall else t_hf
        walls["hf"].append(c.wall)
        with Clock() as c:
            cands, rewards, stats = dorl_way(model, tok, frame, rcfg, metric)
        t_dorl = c if t_dorl is None or c.wall < t_dorl.wall else t_dorl
        walls["dorl"].append(c.wall)
    same = cands == ref_cands and hf_cands == ref_cands
    diff = max_diff(rewards, ref_rewards)
    lengths = [len(tok(c)["input_ids"]) for cs in cands for c in cs]

    rows = [
        {
            "bench": "relabel",
            "way": "reference (one context at a time)",
            "contexts": n,
            "pairs": pairs,
            "seconds": t_ref.wall,
            "cpu_seconds": t_ref.cpu,
        },
        {
            "bench": "relabel",
            "way": "dorl with relabel.generator=hf (before)",
            "contexts": n,
            "pairs": pairs,
            "seconds": t_hf.wall,
            "cpu_seconds": t_hf.cpu,
            "generate_s": hf_stats["generate_s"],
            "score_s": hf_stats["score_s"],
        },
        {
            "bench": "relabel",
            "way": "dorl",
            "contexts": n,
            "pairs": pairs,
            "seconds": t_dorl.wall,
            "cpu_seconds": t_dorl.cpu,
            "generate_s": stats["generate_s"],
            "score_s": stats["score_s"],
        },
    ]
    for r in rows:
        r["pairs_per_s"] = r["pairs"] / r["seconds"]
        r["speedup_vs_reference"] = t_ref.wall / r["seconds"]
        r.update(model=model_name, hardware=hardware, same_candidates=same, max_reward_diff=diff)
    for r, key in zip(rows, ("reference", "hf", "dorl"), strict=True):
        r["round_seconds"] = walls[key]
        r["mean_candidate_tokens"] = sum(lengths) / len(lengths)

    # BERTScore alone, on dorl's candidate pairs
    flat_c = [c for cs in cands for c in cs if c]
    flat_r = [h for cs, h in zip(cands, frame["response"], strict=True) for c in cs if c]

    def per_context():
        for cs, h in zip(cands, frame["response"], strict=True):
            cs = [c for c in cs if c]
            if cs:
                scorer.score(cs, [h] * len(cs))

    t_bs_one = t_bs_ctx = t_bs_dorl = None
    bs_walls = {"one": [], "ctx": [], "dorl": []}
    for _ in range(repeats):
        with Clock() as c:
            scorer.score(flat_c, flat_r)  # bert-score's defaults: one call, batch 64
        t_bs_one = c if t_bs_one is None or c.wall < t_bs_one.wall else t_bs_one
        bs_walls["one"].append(c.wall)
        with Clock() as c:
            per_context()
        t_bs_ctx = c if t_bs_ctx is None or c.wall < t_bs_ctx.wall else t_bs_ctx
        bs_walls["ctx"].append(c.wall)
        with Clock() as c:
            metric.score(flat_c, flat_r)
        t_bs_dorl = c if t_bs_dorl is None or c.wall < t_bs_dorl.wall else t_bs_dorl
        bs_walls["dorl"].append(c.wall)
    for way, t, key in (
        ("bert-score defaults, one call", t_bs_one, "one"),
        ("bert-score, one call per context", t_bs_ctx, "ctx"),
        ("dorl batched scorer", t_bs_dorl, "dorl"),
    ):
        rows.append(
            {
                "bench": "bertscore",
                "way": way,
                "pairs": len(flat_c),
                "seconds": t.wall,
                "cpu_seconds": t.cpu,
                "pairs_per_s": len(flat_c) / t.wall,
                "speedup_vs_reference": t_bs_one.wall / t.wall,
                "round_seconds": bs_walls[key],
                "model": "all-MiniLM-L6-v2 layer 6, rescaled",
                "hardware": hardware,
            }
        )
    return rows + run_family(quick, repeats, "llama")


def run_family(quick: bool, repeats: int, arch: str) -> list[dict]:
    """Relabel with a model of another family (`arch`), the reference loop against dorl, as `run` does for GPT-2:
    the same contexts, the same size and vocabulary, the candidates checked equal. (Not the `hf` way or the
    BERTScore table: those do not depend on the model's family.)"""
    import torch
    from bert_score import BERTScorer

    from dorl import config
    from dorl.metrics import get_metric
    from dorl.metrics.bertscore import MINILM_BASELINE, minilm_path

    n = 64 if quick else 256
    rcfg = config.load(preset="tiny", sets=[f"relabel.chunk_size={n}"]).relabel
    model, tok = build_model(FAMILY_STEPS, arch)
    frame = contexts(n)
    metric = get_metric("bertscore", config.load(preset="tiny").metrics)
    scorer = BERTScorer(model_type=str(minilm_path()), num_layers=6, lang="en", rescale_with_baseline=True,
                        baseline_path=str(MINILM_BASELINE))  # fmt: skip
    reference(model, tok, frame.iloc[:2], rcfg, scorer)  # warm-up
    dorl_way(model, tok, frame.iloc[:4], rcfg, metric)
    best: dict[str, Clock] = {}
    walls: dict[str, list[float]] = {"reference": [], "dorl": []}
    for _ in range(repeats):
        with Clock() as c:
            ref_cands, _ = reference(model, tok, frame, rcfg, scorer)
        best["reference"] = c if "reference" not in best or c.wall < best["reference"].wall else best["reference"]
        walls["reference"].append(c.wall)
        with Clock() as c:
            cands, _, stats = dorl_way(model, tok, frame, rcfg, metric)
        best["dorl"] = c if "dorl" not in best or c.wall < best["dorl"].wall else best["dorl"]
        walls["dorl"].append(c.wall)
    hardware = f"{os.cpu_count()}-core CPU ({platform.processor() or platform.machine()}), torch {torch.__version__}, "
    hardware += f"{torch.get_num_threads()} threads"
    name = f"{arch} {LAYERS}x{WIDTH}, {KV_HEADS} kv heads (vocab {len(tok)}), trained {FAMILY_STEPS} steps"
    pairs = n * rcfg.num_candidates
    rows = []
    for way, key in (("reference (one context at a time)", "reference"), ("dorl", "dorl")):
        t = best[key]
        rows.append({"bench": f"relabel-{arch}", "way": way, "contexts": n, "pairs": pairs, "seconds": t.wall,
                     "cpu_seconds": t.cpu, "pairs_per_s": pairs / t.wall, "round_seconds": walls[key],
                     "speedup_vs_reference": best["reference"].wall / t.wall, "model": name, "hardware": hardware,
                     "same_candidates": cands == ref_cands})  # fmt: skip
    rows[-1].update(generate_s=stats["generate_s"], score_s=stats["score_s"])
    lengths = [len(tok(c)["input_ids"]) for cs in cands for c in cs]
    for r in rows:
        r["mean_candidate_tokens"] = sum(lengths) / len(lengths)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="64 contexts instead of 256")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's, one per core)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds per way; the fastest counts (default 3)")
    parser.add_argument("--family", help="only the reference-vs-dorl rows with a model of this family (e.g. llama)")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    os.environ.setdefault("DORL_LOG_LEVEL", "WARNING")
    rows = run_family(args.quick, args.repeats, args.family) if args.family else run(args.quick, args.repeats)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"model: {rows[0]['model']}\nhardware: {rows[0]['hardware']}")
    r0 = rows[0]
    diff = f", max |reward diff| {r0['max_reward_diff']:.1e}" if "max_reward_diff" in r0 else ""
    print(f"same candidates in all ways: {r0['same_candidates']}{diff}")
    print(f"mean candidate length {r0['mean_candidate_tokens']:.1f} tokens")
    print(f"{'bench':10} {'way':40} {'pairs':>6} {'wall s':>8} {'cpu s':>8} {'pairs/s':>9} {'x ref':>6}")
    for r in rows:
        print(
            f"{r['bench']:10} {r['way']:40} {r['pairs']:6d} {r['seconds']:8.2f} {r['cpu_seconds']:8.2f} "
            f"{r['pairs_per_s']:9.1f} {r['speedup_vs_reference']:6.2f}"
        )


if __name__ == "__main__":
    main()
