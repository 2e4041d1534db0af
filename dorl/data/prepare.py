"""The data stage: raw files -> (context, response) examples and whole conversations, per split.

    art = prepare(cfg, "abcd", "runs/demo/abcd/data")                 # download, verify, parse
    art = prepare(cfg, "abcd", uri, source="path/to/abcd/data")       # a local copy, upstream layout

The raw files come from a local copy (`source` / `data.source`), from simulation (`data.simulate` > 0:
simulated dialogues in the dataset's raw format), or else from their public URLs, verified against
their git blob ids. Everything that can fail on user input (missing files, checksums, malformed
records) fails before the stage writes anything. Output (README "Artifacts"):

    examples/{split}.parquet       dialogue_id, turn_index (int32), context, response
    conversations/{split}.parquet  dialogue_id, text
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from dorl import log as dlog
from dorl.config import RunConfig
from dorl.data import abcd, multiwoz, splits, taskmaster
from dorl.data.dialogue import Bad, Dialogue, Entry, drop_duplicates, load_json
from dorl.data.download import digest_file, fetch, mismatch
from dorl.data.sources import SOURCES, Source
from dorl.errors import DataError
from dorl.store import StageContext, StageResult, run_stage
from dorl.text import examples, render_conversation

log = logging.getLogger("dorl.data")

EXAMPLES = pa.schema(
    [("dialogue_id", pa.string()), ("turn_index", pa.int32()), ("context", pa.string()), ("response", pa.string())]
)
CONVERSATIONS = pa.schema([("dialogue_id", pa.string()), ("text", pa.string())])
BATCH = 1000  # dialogues per parquet row group: bounds memory on the full datasets
MAX_LISTED = 1000  # skipped dialogues listed one by one in the manifest
SIMULATED_MARKER = "SYNTHETIC.json"  # written by `dorl data simulate` at the top of its output


def prepare(
    cfg: RunConfig, *, dataset: str, source: str | None = None, out_uri: str, force: bool = False
) -> StageResult:
    """Run the data stage for `dataset` into `out_uri` (skipped when already complete for the same inputs)."""
    if dataset not in SOURCES:
        raise DataError(f"unknown dataset {dataset!r}; choose one of {', '.join(SOURCES)}")
    source = source or (cfg.data.source.replace("{dataset}", dataset) if cfg.data.source else None)
    if source is None and cfg.data.simulate > 0:
        from dorl.data.simulate import simulate

        with tempfile.TemporaryDirectory(prefix=f"dorl-sim-{dataset}-") as tmp:
            log.info("simulating %d %s-format dialogues (seed %d)", cfg.data.simulate, dataset, cfg.data.seed)
            simulate(dataset, cfg.data.simulate, cfg.data.seed, tmp)
            return _prepare(cfg, dataset, out_uri, Path(tmp), force, origin="simulated")
    return _prepare(cfg, dataset, out_uri, Path(source) if source else None, force)


def _prepare(
    cfg: RunConfig, dataset: str, out_uri: str, source: Path | None, force: bool, origin: str | None = None
) -> StageResult:
    src = SOURCES[dataset]
    skip_bad = cfg.data.skip_bad
    if source is None:
        files = fetch(src, cfg.data.base_url, cfg.data.cache_dir, timeout=cfg.data.download_timeout)
        names = {rel: f"{src.repo}@{src.commit[:12]}:{src.folder}/{rel}" for rel in files}
    else:
        files = locate(src, source)
        names = {rel: str(p) for rel, p in files.items()}
    started = time.perf_counter()  # throughput counts reading, rendering and writing, not downloading
    raw = {}
    for rel, path in files.items():
        d = digest_file(path)
        upstream = path.name == Path(rel).name and mismatch(src.file(rel), d) is None
        raw[rel] = {"file": path.name, "size": d.size, "sha256": d.sha256, "git_blob": d.blob, "upstream": upstream}

    by_split, bad = read(dataset, files, names, skip_bad)
    dialogues = {s: [e for e in part if isinstance(e, Dialogue)] for s, part in by_split.items()}
    total = sum(len(v) for v in dialogues.values())
    if total == 0:
        raise DataError(f"{dataset}: no usable dialogues in {source or 'the downloaded files'}")
    parsed = time.perf_counter()
    log.info("%s: read %d dialogues (%d skipped) in %.1f s", dataset, total, len(bad), parsed - started)

    simulator = None
    if source is not None and (source / SIMULATED_MARKER).is_file():
        simulator = load_json(source / SIMULATED_MARKER)
    config = {"dataset": dataset, "skip_bad": skip_bad, "raw_sha256": {rel: r["sha256"] for rel, r in raw.items()}}

    def body(ctx: StageContext) -> None:
        counts = {}
        with dlog.progress() as bar:
            task = bar.add_task(f"{dataset}: render", total=total)
            for split in splits.SPLITS:
                part = dialogues[split]
                if not part:
                    log.warning("%s: split %s is empty", dataset, split)
                n_ex = write_split(
                    part,
                    ctx.out.path(f"examples/{split}.parquet"),
                    ctx.out.path(f"conversations/{split}.parquet"),
                    lambda k: bar.advance(task, k),
                )
                counts[split] = {"dialogues": len(part), "examples": n_ex}
        wall = time.perf_counter() - started
        n_ex = sum(c["examples"] for c in counts.values())
        ctx.info.update(
            dataset=dataset,
            synthetic=any(d.synthetic for part in dialogues.values() for d in part),
            source="download" if source is None else (origin or str(source)),
            upstream={"repo": src.repo, "commit": src.commit, "folder": src.folder, "license": src.license},
            counts=counts,
            dialogues=total,
            examples=n_ex,
            raw_files=raw,
            split_rule=SPLIT_RULES[dataset],
        )
        if simulator is not None:
            ctx.info["simulator"] = simulator
        if skip_bad:
            ctx.info["skipped"] = {"count": len(bad), "dialogues": [b.to_dict() for b in bad[:MAX_LISTED]]}
        ctx.metrics.update(
            dialogues_per_s=round(total / wall, 1),
            examples_per_s=round(n_ex / wall, 1),
            read_s=round(parsed - started, 3),
            write_s=round(time.perf_counter() - parsed, 3),
        )
        log.info(
            "%s: %d dialogues, %d examples (%s) in %.1f s: %.0f dialogues/s",
            dataset,
            total,
            n_ex,
            ", ".join(f"{s} {c['dialogues']}/{c['examples']}" for s, c in counts.items()),
            wall,
            total / wall,
        )

    return run_stage("data", out_uri, config, {}, body, force=force)


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
            f"{src.repo}/{src.folder} (see README, 'Data')"
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


def write_split(dialogues: list[Dialogue], examples_path: Path, conversations_path: Path, advance=None) -> int:
    """Render and write one split in row groups of BATCH dialogues; returns the number of examples."""
    n_examples = 0
    with (
        pq.ParquetWriter(examples_path, EXAMPLES, compression="zstd") as ex_writer,
        pq.ParquetWriter(conversations_path, CONVERSATIONS, compression="zstd") as conv_writer,
    ):
        for start in range(0, max(len(dialogues), 1), BATCH):
            batch = dialogues[start : start + BATCH]
            ex = {name: [] for name in EXAMPLES.names}
            for d in batch:
                for turn_index, context, response in examples(d.turns):
                    ex["dialogue_id"].append(d.id)
                    ex["turn_index"].append(turn_index)
                    ex["context"].append(context)
                    ex["response"].append(response)
            n_examples += len(ex["dialogue_id"])
            ex_writer.write_table(pa.table(ex, schema=EXAMPLES))
            conv = {"dialogue_id": [d.id for d in batch], "text": [render_conversation(d.turns) for d in batch]}
            conv_writer.write_table(pa.table(conv, schema=CONVERSATIONS))
            if advance:
                advance(len(batch))
    return n_examples
