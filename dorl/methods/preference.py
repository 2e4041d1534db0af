"""What dpo and kto share: examples of two completions of one prompt, scored against a frozen reference model.

An example is a prompt (context + <_rep_start_>) and two completions (candidate + <_rep_end_>): DPO's chosen and
rejected, KTO's completion and the mismatched one its KL term reads. It is kept as one token row, prompt then
both completions (`prompt_len`, `first_len`), and collates into two sequences, prompt + first and prompt +
second, right-padded, the loss on the completion tokens: what TRL sums log-probabilities over (its
`completion_mask`). A long example keeps each completion's start and the end of the prompt, the same prompt
tokens in both sequences, so the two completions answer the same context (TRL keeps the start of each sequence:
`truncation_mode="keep_start"`).

The reference model is the base model the method starts from. Its log-probs of both sequences are computed
once, before the first step (`reference`, from the engine's module, so in the precision it trains in), kept
with the checkpoints and recorded in the training set; training never runs the reference again. (With a LoRA
model the reference is the model with its adapters disabled, as TRL does; at the first step LoRA's zero-initialised
B makes that the same model.) Dropout is off, as TRL's `disable_dropout=True`: the policy's log-probs are
compared with the reference's, which have none.
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np

from dorl.engine.data import Examples
from dorl.methods.base import Method
from dorl.methods.lines import check_relabel_inputs
from dorl.methods.registry import entry
from dorl.store import Artifact
from dorl.text import REP_END

SPLITS = ("train", "validation")


def context_ids(candidates) -> np.ndarray:
    """The context of every row of a candidates table, as 0, 1, … in order of first appearance: by (dialogue_id,
    turn_index) where the table has them (two dialogues may open with the same context), else by its text."""
    import pandas as pd

    if {"dialogue_id", "turn_index"} <= set(candidates.columns):
        keys = candidates["dialogue_id"].astype(str) + "\x00" + candidates["turn_index"].astype(str)
    else:
        keys = candidates["context"]
    return pd.factorize(keys.to_numpy())[0]


def completion(candidate: str) -> str:
    return candidate + REP_END


def encode_pairs(tok, prompts: list[str], firsts: list[str], seconds: list[str], max_length: int) -> Examples:
    """Token rows prompt + first + second, with `prompt_len` and `first_len`; each sequence (prompt + one
    completion) at most `max_length` tokens: completions keep their start, the prompt its end."""

    def ids(texts: list[str]) -> dict[str, list[int]]:
        unique = list(dict.fromkeys(texts))
        out = {}
        for i in range(0, len(unique), 2000):
            chunk = unique[i : i + 2000]
            out.update(zip(chunk, tok(chunk, add_special_tokens=False, verbose=False)["input_ids"], strict=True))
        return out

    p_ids, c_ids = ids(prompts), ids(firsts + seconds)
    rows, plens, flens = [], [], []
    for p, a, b in zip(prompts, firsts, seconds, strict=True):
        a_ids, b_ids = c_ids[a][:max_length], c_ids[b][:max_length]
        keep = max(max_length - max(len(a_ids), len(b_ids)), 0)  # prompt tokens that fit beside the longer one
        p_kept = p_ids[p][max(len(p_ids[p]) - keep, 0) :] if keep else []
        rows.append(np.asarray(p_kept + a_ids + b_ids, dtype=np.int32))
        plens.append(len(p_kept))
        flens.append(len(a_ids))
    return Examples.from_lists(
        rows, prompt_len=np.asarray(plens, dtype=np.int32), first_len=np.asarray(flens, dtype=np.int32)
    )


def split_pair(example: dict) -> tuple[dict, dict]:
    """The example's two sequences, each with its `label_start` (the prompt's length)."""
    ids, p, a = example["input_ids"], int(example["prompt_len"]), int(example["first_len"])
    first = {"input_ids": ids[: p + a], "label_start": p}
    second = {"input_ids": np.concatenate([ids[:p], ids[p + a :]]), "label_start": p}
    return first, second


def float_fields(examples: list[dict], names) -> dict:
    import torch

    return {k: torch.tensor([float(e[k]) for e in examples], dtype=torch.float64) for k in names}


class Preference(Method):
    """A method on pairs of completions scored against the frozen base model (subclasses: DPO, KTO)."""

    config_section = ""  # "<its section>.train" ("dpo.train"): its TrainConfig
    reference_columns: tuple[str, str] = ("ref_first", "ref_second")  # the reference log-probs' field names

    def __init__(self, cfg, name):
        super().__init__(cfg, name)
        self._info: dict = {}

    def train_config(self):
        return self.settings().train

    def hyperparameters(self) -> dict:
        """Its settings that shape the trained model (its optimisation is `train`)."""
        return {k: v for k, v in asdict(self.settings()).items() if k != "train"}

    def config(self) -> dict:
        section = entry(self.name).section
        return {"method": self.name, "train": asdict(self.train_config()), section: self.hyperparameters()}

    def check_inputs(self, data: Artifact, base: Artifact | None) -> None:
        check_relabel_inputs(self, data, base, f"{self.config_section}.max_length")

    # ---------------------------------------------------------------- data
    def pairs(self, rows) -> tuple[list[str], list[str], list[str]]:
        """(prompts, first completions, second completions) of a split's rows."""
        raise NotImplementedError

    def datasets(self, data: Artifact, tok, rows: dict):
        sets = []
        for split in SPLITS:
            ex = encode_pairs(tok, *self.pairs(rows[split]), self.train_config().max_length)
            for name, values in self.example_fields(rows[split]).items():
                ex.fields[name] = np.asarray(values)
            self._info[split] = {"examples": len(ex), "tokens": int(np.sum(self.sequence_lengths(ex_rows(ex))))}
            sets.append(ex)
        return sets[0], sets[1]

    def example_fields(self, rows) -> dict:
        """Per-example fields from the rows besides the tokens (KTO: desirable)."""
        return {}

    def sequence_lengths(self, examples: list[dict]) -> list[int]:
        """Both sequences of every example train (KTO's second, the KL term's, does not: see kto.py)."""
        return [int(e["prompt_len"]) + n for e in examples for n in (int(e["first_len"]), second_len(e))]

    def head_positions(self, batch: dict) -> int:
        return int((batch["labels"][:, 1:] != -100).sum())

    def target_count(self, batch: dict) -> int:
        return len(batch[self.reference_columns[0]])  # the loss is a mean over examples (pairs)

    # ---------------------------------------------------------------- model
    def model(self, tok, base: Artifact | None):
        import torch

        lm = super().model(tok, base)
        for module in lm.modules():  # TRL's disable_dropout_in_model
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
        return lm

    def reference(self, module, sets: dict, dist) -> dict:
        """The reference log-probs of both sequences of every example: the module's LM before its first step."""
        import torch

        from dorl.engine.causal_lm import collate_causal, sequence_logps
        from dorl.engine.reference import per_example

        def both(batch: dict):
            return torch.stack(sequence_logps(module.lm, batch["input_ids"], batch["labels"]).chunk(2), dim=1)

        def collate(examples: list[dict]) -> dict:
            first, second = zip(*(split_pair(e) for e in examples), strict=True)
            return collate_causal([*first, *second], self.pad_id)

        micro = self.train_config().micro_batch_size
        out = {}
        for split, ex in sets.items():
            values = per_example(both, ex, collate, micro, dist, desc=f"{self.name}: reference log-probs ({split})")
            out[split] = dict(zip(self.reference_columns, values.reshape(len(ex), 2).T, strict=True))
        return out

    def info(self) -> dict:
        return {"data": self._info}


def second_len(example: dict) -> int:
    return len(example["input_ids"]) - int(example["prompt_len"]) - int(example["first_len"])


def ex_rows(ex: Examples) -> list[dict]:
    return [ex[i] for i in range(len(ex))]
