"""The three public datasets' raw files: where they are in a local copy, and how they parse into dialogues.

    files = locate(SOURCES["abcd"], Path("path/to/abcd"))        # {rel: path}, checked complete
    by_split, bad = read("abcd", files, names, skip_bad=False)   # {split: [Dialogue | Bad]}, skipped ones

The parsers per format are `dorl.data.abcd`, `dorl.data.multiwoz`, `dorl.data.taskmaster`; splits
follow each dataset's rule (`SPLIT_RULES`, `dorl.data.splits`).
"""

from __future__ import annotations

from pathlib import Path

from dorl.data import abcd, multiwoz, splits, taskmaster
from dorl.data.dialogue import Bad, Entry, drop_duplicates
from dorl.data.sources import Source
from dorl.errors import DataError

SPLIT_RULES = {
    "abcd": "official: abcd_v1.1.json keys train / dev / test",
    "multiwoz22": "official: folders train / dev / test",
    "taskmaster3": "all dialogs of data_00..19 in file order; numpy RandomState(42).permutation; 80/10/10",
}


def locate(src: Source, root: Path) -> dict[str, Path]:
    """The dataset's files in a local copy: ROOT/rel (the dataset folder) or ROOT/folder/rel (a clone)."""
    if not root.is_dir():
        raise DataError(f"--source {root}: not a folder")
    found, missing = {}, []
    for f in src.files:
        candidates = [root / f.rel, root / src.folder / f.rel]
        if f.rel.endswith(".json.gz"):  # the reference's download script gunzips in place
            candidates += [c.with_suffix("") for c in candidates]
        hit = next((c for c in candidates if c.is_file()), None)
        if hit is None:
            missing.append(f.rel)
        else:
            found[f.rel] = hit
    if missing:
        shown = ", ".join(missing[:5]) + (f" … ({len(missing)} in all)" if len(missing) > 5 else "")
        raise DataError(
            f"--source {root}: missing {src.dataset} file(s) {shown}; expected the upstream layout of "
            f"{src.repo}/{src.folder} (see docs/data.md)"
        )
    return found


def read(
    dataset: str, files: dict[str, Path], names: dict[str, str], skip_bad: bool
) -> tuple[dict[str, list[Entry]], list[Bad]]:
    """Parse every file and split: ({split: entries in order}, skipped dialogues in file order).

    Duplicate ids are checked over the whole dataset."""
    if dataset == "taskmaster3":
        flat: list[Entry] = []
        for rel, path in files.items():  # data_00 .. data_19, in order
            flat += taskmaster.parse_file(path, names[rel], skip_bad)
        flat = drop_duplicates(flat, skip_bad)
        return splits.taskmaster(flat), [e for e in flat if isinstance(e, Bad)]
    if dataset == "abcd":
        (rel,) = files
        parts = abcd.parse_file(files[rel], names[rel], skip_bad)
    else:
        parts = {s: [] for s in splits.SPLITS}
        for rel, path in files.items():
            parts[multiwoz.SPLITS[rel.split("/")[0]]] += multiwoz.parse_file(path, names[rel], skip_bad)
    flat = drop_duplicates([e for s in splits.SPLITS for e in parts[s]], skip_bad)
    return _regroup(parts, flat), [e for e in flat if isinstance(e, Bad)]


def _regroup(parts: dict[str, list[Entry]], flat: list[Entry]) -> dict[str, list[Entry]]:
    out, i = {}, 0
    for s in splits.SPLITS:
        out[s] = flat[i : i + len(parts[s])]
        i += len(parts[s])
    return out
