"""Train / validation / test splits, as the reference made them.

- ABCD: the file's own `train` / `dev` / `test` lists.
- MultiWOZ 2.2: the folders `train/` (dialogues_001..017), `dev/` (001..002), `test/` (001..002), in
  file order (what Hugging Face's `multi_woz_v22` yields as train / validation / test).
- Taskmaster-3: every dialog of data_00.json .. data_19.json in file order (what Hugging Face's
  `taskmaster3` loader yields as its one `train` split), then, exactly as the reference's
  `prepare_base_data.py`: `indices = np.random.RandomState(42).permutation(n).tolist()`, train =
  `indices[:int(n * 0.8)]`, validation = `indices[int(n * 0.8):int(n * 0.9)]`, test = `indices[int(n * 0.9):]`,
  each in permutation order. The official TM-3 split TSVs overlap (the reference's own comment), so
  neither it nor dorl uses them.

Dialogues skipped by --skip-bad keep their place while splitting (they are `Bad` entries), so the
remaining dialogues land in the same split as they would without the bad ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dorl.data.dialogue import Entry

SPLITS: tuple[str, ...] = ("train", "validation", "test")
TASKMASTER_SEED = 42


def seeded_split(n: int, seed: int = TASKMASTER_SEED) -> dict[str, list[int]]:
    """The reference's 80/10/10 permutation split of n items (indices into the file-order list)."""
    indices = np.random.RandomState(seed).permutation(n).tolist()
    return {
        "train": indices[: int(n * 0.8)],
        "validation": indices[int(n * 0.8) : int(n * 0.9)],
        "test": indices[int(n * 0.9) :],
    }


def taskmaster(entries: Sequence[Entry]) -> dict[str, list[Entry]]:
    return {split: [entries[i] for i in idx] for split, idx in seeded_split(len(entries)).items()}
