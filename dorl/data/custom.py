"""Your own dataset: its files' rows -> dialogues per split, the rows skipped, and the facts the manifest records.

    by_split, bad, facts = read(files, source_config, "data.sources.mylogs", skip_bad=False)

Splits, in this order: the files' names (a folder of train / validation / test files, a DatasetDict), else every
row's `split` field, else a seeded split by conversation: the conversations ranked by the sha256 of
"<split_seed>:<id>", the first int(n * f_train) train, the next up to int(n * (f_train + f_validation)) validation,
the rest test. Ranking by id rather than by position keeps a conversation's split when the file is reordered or
converted, and moves only conversations near a cut when rows are added. Each split keeps the files' order.
Ids must be unique over the whole dataset; with `skip_bad` a bad row (and a repeated id) is skipped and listed.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from dorl.data.conversations import Conversations, RowWhere
from dorl.data.dialogue import Bad, Dialogue
from dorl.data.rows import SourceFile, rows
from dorl.data.splits import SPLITS
from dorl.errors import DataError

if TYPE_CHECKING:
    from dorl.config.data import SourceConfig


def seeded(dialogues: list[Dialogue], fractions: list[float], seed: int) -> dict[str, list[Dialogue]]:
    """The seeded split: rank by sha256(f"{seed}:{id}"), cut at int(n*f0) and int(n*(f0+f1)); file order kept."""
    n = len(dialogues)
    rank = sorted(range(n), key=lambda i: hashlib.sha256(f"{seed}:{dialogues[i].id}".encode()).digest())
    cut1, cut2 = int(n * fractions[0]), int(n * (fractions[0] + fractions[1]))
    where = {}
    for r, i in enumerate(rank):
        where[i] = "train" if r < cut1 else "validation" if r < cut2 else "test"
    out: dict[str, list[Dialogue]] = {s: [] for s in SPLITS}
    for i, d in enumerate(dialogues):
        out[where[i]].append(d)
    return out


def read(
    files: list[SourceFile], src: SourceConfig, key: str, skip_bad: bool
) -> tuple[dict[str, list[Dialogue]], list[Bad], dict]:
    """Dialogues per split (file order), the skipped rows, and {format, split_rule}."""
    reader = Conversations(src.format, src.roles, src.respond_as, key)
    seen: dict[str, tuple[str, str, int]] = {}  # id -> (file, unit, position) of its first row
    kept: list[tuple[Dialogue, str | None]] = []
    bad: list[Bad] = []
    by_column: bool | None = None  # whether rows carry `split` (decided by the first good row)
    for f in files:
        for pos, row, problem in rows(f):
            where = RowWhere(f.name, f.unit, pos)
            try:
                if problem is not None:
                    raise where.error(problem)
                reader.detect(row, where)
                dialogue, split = reader.parse(row, where)
                if by_column is None:
                    by_column = split is not None and f.split is None
                if f.split is not None:
                    if split is not None and split != f.split:
                        raise where.error(f"{split!r} in a file of the {f.split} split", "split")
                    split = f.split
                elif by_column and split is None:
                    raise where.error("missing, while the first row has one: give every row a split or none", "split")
                elif not by_column and split is not None:
                    raise where.error("set, while the first row has none: give every row a split or none", "split")
                first = seen.setdefault(dialogue.id, (f.name, f.unit, pos))
                if first != (f.name, f.unit, pos):
                    given = isinstance(row, dict) and row.get("id") is not None
                    what = "id" if given else "conversation (no id given: the same content)"
                    raise where.error(f"duplicate {what}, first at {first[0]}: {first[1]} {first[2]}", "id")
            except DataError as e:
                if not skip_bad:
                    raise
                bad.append(Bad(f.name, pos, where.dialogue_id, str(e)))
                continue
            kept.append((dialogue, split))
    if reader.fmt is None:
        raise DataError(f"{files[0].name if files else 'the source'}: no rows")
    if files[0].split is not None or by_column:
        by_split: dict[str, list[Dialogue]] = {s: [] for s in SPLITS}
        for d, split in kept:
            by_split[split].append(d)
        rule = "the files' names" if files[0].split is not None else "each row's split field"
    else:
        by_split = seeded([d for d, _ in kept], src.split_fractions, src.split_seed)
        f = src.split_fractions
        rule = (f"seeded by conversation: ranked by sha256('{src.split_seed}:<id>'); train {f[0]:g}, validation "
                f"{f[1]:g}, test {f[2]:g} (cut at int(n * share))")  # fmt: skip
    return by_split, bad, {"format": reader.fmt, "split_rule": rule}
