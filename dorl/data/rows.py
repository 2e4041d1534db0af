"""Your own files, row by row: where they are (a file, a folder named by split, a `datasets.save_to_disk` folder;
local or s3://), which split each holds, and their rows with each row's position for error messages.

    files, layout = locate("s3://bucket/chats.jsonl", tmp, max_bytes)  # [SourceFile], "one file"
    for pos, row, problem in rows(files[0]): ...                      # problem: why the row is unreadable

Formats by file name: `.jsonl` (JSON Lines, read a line at a time; position = line number from 1), `.json` (a JSON
list, parsed whole; position = row index from 0), `.parquet` (pyarrow, in batches of 1,000 rows; row index from 0),
each optionally gzipped (`.jsonl.gz`, `.json.gz`); a `save_to_disk` folder (`datasets.load_from_disk`, a Dataset or a
DatasetDict whose keys name the splits). A folder of files names each file's split by its name: `train`,
`validation` (or `valid`, `val`, `dev`), `test`, optionally followed by `-…` / `_…` / `.…` (Hugging Face's
`train-00000-of-00002.parquet`), in the folder or its `data/`. S3 objects are downloaded into `tmp` first (sizes
checked before). A file over `max_bytes` is refused before it is read.
"""

from __future__ import annotations

import gzip
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dorl.errors import DataError

log = logging.getLogger("dorl.data")

KINDS = {".jsonl": "jsonl", ".jsonl.gz": "jsonl", ".json": "json", ".json.gz": "json", ".parquet": "parquet"}
SPLIT_NAMES = {"train": "train", "validation": "validation", "valid": "validation", "val": "validation",
               "dev": "validation", "test": "test"}  # fmt: skip
_SPLIT_FILE = re.compile(r"^(train|validation|valid|val|dev|test)([-_.].*)?$")
BATCH = 1000


@dataclass(frozen=True)
class SourceFile:
    name: str  # as messages name it: the path or URI given (a folder's file: joined to it)
    path: Path  # where it is read (a downloaded copy for s3://)
    kind: str  # jsonl | json | parquet | arrow (a save_to_disk folder)
    split: str | None = None  # from its name (or the DatasetDict key); None: the rows say, or the seeded split
    size: int = 0

    @property
    def unit(self) -> str:
        return "line" if self.kind == "jsonl" else "row"


def kind_of(name: str) -> str | None:
    low = name.lower()
    return next((k for ext, k in KINDS.items() if low.endswith(ext)), None)


def _stem(name: str) -> str:
    low = name.lower()
    for ext in sorted(KINDS, key=len, reverse=True):
        if low.endswith(ext):
            return name[: -len(ext)]
    return name


def split_of_name(name: str) -> str | None:
    m = _SPLIT_FILE.match(_stem(name).lower())
    return SPLIT_NAMES[m.group(1)] if m else None


def _check_size(name: str, size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise DataError(
            f"{name}: {size / 2**20:.3g} MiB is over the limit of {max_bytes / 2**20:.3g} MiB (data.max_file_mb); "
            "split it into several files or raise data.max_file_mb"
        )


# ---------------------------------------------------------------- where the files are


def locate(source: str, tmp: Path, max_bytes: int) -> tuple[list[SourceFile], str]:
    """The files of `source` (a local path or s3:// URI) and how they are laid out: 'one file', 'split files',
    'save_to_disk'. S3 objects are copied into `tmp`."""
    from dorl.store import Location

    loc = Location(source)  # a malformed URI: StoreError, a user error
    if loc.is_local:
        root = Path(loc.key)
        if not root.exists():
            raise DataError(f"{source}: no such file or folder")
        listing = None if root.is_file() else [(p.relative_to(root).as_posix(), p.stat().st_size)
                                               for p in sorted(root.rglob("*")) if p.is_file()]  # fmt: skip
    else:
        listing = [(e.name, e.size) for e in loc.walk()]
        if not listing:  # not a prefix with objects below: one object, or nothing
            entry = next((e for e in loc.parent().listdir() if e.name == loc.name and not e.is_dir), None)
            if entry is None:
                raise DataError(f"{source}: no such object or prefix")
            listing = None
            _check_size(source, entry.size, max_bytes)
            root = tmp / loc.name
            loc.parent().download(loc.name, root)
    if listing is None:  # one file
        kind = kind_of(root.name)
        if kind is None:
            raise DataError(f"{source}: not a .jsonl, .json or .parquet file (optionally .gz), nor a folder of them")
        _check_size(source, root.stat().st_size, max_bytes)
        return [SourceFile(source, root, kind, None, root.stat().st_size)], "one file"

    names = {n for n, _ in listing}
    if "dataset_dict.json" in names or "state.json" in names:  # datasets.save_to_disk
        for rel, size in listing:
            _check_size(f"{source.rstrip('/')}/{rel}", size, max_bytes)
        if not loc.is_local:
            root = tmp / "dataset"
            for rel, _ in listing:
                loc.download(rel, root / rel)
        return _save_to_disk(source, root), "save_to_disk"

    found, ignored = [], []
    for rel, size in listing:
        parts = rel.split("/")
        split = split_of_name(parts[-1]) if kind_of(parts[-1]) else None
        if split is None or not (len(parts) == 1 or (len(parts) == 2 and parts[0] == "data")):
            ignored.append(rel)
            continue
        name = f"{source.rstrip('/')}/{rel}"
        _check_size(name, size, max_bytes)
        found.append((rel, split, size))
    if not found:
        raise DataError(
            f"{source}: a folder without files named by split (train, validation, test; .jsonl, .json or .parquet) "
            "nor a datasets.save_to_disk folder; for one file of conversations give the file itself"
        )
    if ignored:
        log.warning("%s: ignored %d file(s) not named by split: %s", source, len(ignored), ", ".join(ignored[:5]))
    files = []
    for rel, split, size in found:
        path = root / rel if loc.is_local else tmp / "files" / rel
        if not loc.is_local:
            loc.download(rel, path)
        files.append(SourceFile(f"{source.rstrip('/')}/{rel}", path, kind_of(rel), split, size))
    return files, "split files"


def _save_to_disk(source: str, root: Path) -> list[SourceFile]:
    dd = root / "dataset_dict.json"
    if not dd.is_file():
        return [SourceFile(source, root, "arrow", None)]
    try:
        keys = json.loads(dd.read_bytes())["splits"]
    except (ValueError, KeyError, TypeError):
        raise DataError(f"{source}/dataset_dict.json: not a datasets.save_to_disk DatasetDict index") from None
    files = []
    for key in keys:
        split = SPLIT_NAMES.get(str(key).lower())
        if split is None:
            raise DataError(f"{source}: DatasetDict split {key!r} is not train, validation (valid, val, dev) or test")
        files.append(SourceFile(f"{source.rstrip('/')}/{key}", root / str(key), "arrow", split))
    return files


def digests(files: list[SourceFile], source: str) -> dict:
    """{name under `source`: Digest} of every file read (a save_to_disk folder: each file in it)."""
    from dorl.data.download import digest_file

    base, out = source.rstrip("/"), {}
    for f in files:
        rel = f.name[len(base) + 1 :] if f.name.startswith(base + "/") else ""
        if f.path.is_dir():
            for p in sorted(p for p in f.path.rglob("*") if p.is_file()):
                out["/".join(x for x in (rel, p.relative_to(f.path).as_posix()) if x)] = digest_file(p)
        else:
            out[rel or f.path.name] = digest_file(f.path)
    return out


# ---------------------------------------------------------------- their rows


def rows(f: SourceFile) -> Iterator[tuple[int, Any, str | None]]:
    """(position, row, None) for every row of `f`, or (position, None, why) for a line that is not JSON."""
    if f.kind == "jsonl":
        yield from _jsonl(f)
    elif f.kind == "json":
        data = _load_json(f)
        if not isinstance(data, list):
            raise DataError(f"{f.name}: expected a JSON list of rows (one per conversation), got {type(data).__name__}")
        for i, row in enumerate(data):
            yield i, row, None
    elif f.kind == "parquet":
        yield from _batches(f, _parquet_batches(f))
    else:
        yield from _batches(f, _arrow_batches(f))


def _open(f: SourceFile):
    return gzip.open(f.path, "rb") if f.path.name.lower().endswith(".gz") else open(f.path, "rb")


def _jsonl(f: SourceFile) -> Iterator[tuple[int, Any, str | None]]:
    with _open(f) as fh:
        try:
            for lineno, raw in enumerate(fh, 1):
                if not raw.strip():
                    continue  # a blank line (e.g. the last one) holds no row
                try:
                    yield lineno, json.loads(raw), None
                except json.JSONDecodeError as e:
                    yield lineno, None, f"not JSON (column {e.colno}: {e.msg})"
                except UnicodeDecodeError as e:
                    yield lineno, None, f"not UTF-8 text (byte {e.start} of the line)"
                except RecursionError:
                    yield lineno, None, "JSON nested too deeply"
        except (gzip.BadGzipFile, EOFError, OSError) as e:
            raise DataError(f"{f.name}: not a readable gzip file ({e})") from None


def _load_json(f: SourceFile) -> Any:
    try:
        with _open(f) as fh:
            return json.loads(fh.read())
    except json.JSONDecodeError as e:
        raise DataError(f"{f.name}: not JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{f.name}: not UTF-8 text at byte {e.start}") from None
    except RecursionError:
        raise DataError(f"{f.name}: JSON nested too deeply") from None
    except (gzip.BadGzipFile, EOFError, OSError) as e:
        raise DataError(f"{f.name}: not a readable gzip file ({e})") from None


def _parquet_batches(f: SourceFile):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(f.path)
        yield from pf.iter_batches(batch_size=BATCH)
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{f.name}: not a readable parquet file ({e})") from None


def _arrow_batches(f: SourceFile):
    import datasets

    try:
        ds = datasets.load_from_disk(str(f.path))
    except (FileNotFoundError, ValueError, OSError) as e:
        raise DataError(f"{f.name}: not a readable datasets.save_to_disk folder ({e})") from None
    if isinstance(ds, datasets.DatasetDict):  # save_to_disk of a DatasetDict, given one split's folder
        raise DataError(f"{f.name}: a DatasetDict: give the folder holding dataset_dict.json")
    yield from ds.data.table.to_batches(max_chunksize=BATCH)


def _batches(f: SourceFile, batches) -> Iterator[tuple[int, Any, str | None]]:
    i = 0
    for batch in batches:
        for row in batch.to_pylist():
            yield i, row, None
            i += 1
