"""The data stage: raw files -> (context, response) examples and whole conversations, per split.

    art = prepare(cfg, "abcd", "runs/demo/abcd/data")                 # download, verify, parse
    art = prepare(cfg, "abcd", uri, source="path/to/abcd/data")       # a local copy, upstream layout
    art = prepare(cfg, "mylogs", uri, source="s3://b/chats.jsonl")     # your own conversations

A public dataset's raw files come from a local copy (`source` / `data.sources.D.path` / `data.source`), from
simulation (`data.simulate` > 0: simulated dialogues in the dataset's raw format), or else from their public URLs,
verified against their git blob ids. Your own dataset (any other name) is read from `source` or
`data.sources.NAME.path`: conversations as messages or ShareGPT rows (dorl/data/custom.py). Everything that can fail
on user input (missing files, checksums, malformed records) fails before the stage writes anything. Output
(docs/store.md, "Artifacts"):

    examples/{split}.parquet       dialogue_id, turn_index (int32), context, response
    conversations/{split}.parquet  dialogue_id, text
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path

import click

from dorl import log as dlog
from dorl.config import RunConfig
from dorl.config.data import SourceConfig, check_dataset_name
from dorl.data import DATASETS, splits
from dorl.data.dialogue import Dialogue, load_json
from dorl.data.download import digest_file, fetch, mismatch
from dorl.data.public import SPLIT_RULES, locate, read
from dorl.data.sources import SOURCES
from dorl.data.write import write_split
from dorl.errors import ConfigError, DataError
from dorl.options import config_options, force_option
from dorl.store import StageContext, StageResult, run_stage

log = logging.getLogger("dorl.data")

MAX_LISTED = 1000  # skipped dialogues listed one by one in the manifest
SIMULATED_MARKER = "SYNTHETIC.json"  # written by `dorl data simulate` at the top of its output


def prepare(
    cfg: RunConfig, *, dataset: str, source: str | None = None, out_uri: str, force: bool = False
) -> StageResult:
    """Run the data stage for `dataset` into `out_uri` (skipped when already complete for the same inputs)."""
    if dataset not in SOURCES:
        return _prepare_own(cfg, dataset, source, out_uri, force)
    own = cfg.data.sources.get(dataset)
    source = source or (own.path if own else None)
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

    info = dict(
        dataset=dataset,
        synthetic=any(d.synthetic for part in dialogues.values() for d in part),
        source="download" if source is None else (origin or str(source)),
        upstream={"repo": src.repo, "commit": src.commit, "folder": src.folder, "license": src.license},
        raw_files=raw,
        split_rule=SPLIT_RULES[dataset],
    )
    if simulator is not None:
        info["simulator"] = simulator
    if skip_bad:
        info["skipped"] = {"count": len(bad), "dialogues": [b.to_dict() for b in bad[:MAX_LISTED]]}
    body = _writer(dataset, dialogues, info, started, parsed)
    return run_stage("data", out_uri, config, {}, body, force=force)


def _writer(dataset: str, dialogues: dict[str, list[Dialogue]], info: dict, started: float, parsed: float):
    """The stage body: render and write every split, then record counts and throughput."""
    total = sum(len(v) for v in dialogues.values())

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
        ctx.info.update(info)
        ctx.info.update(counts=counts, dialogues=total, examples=n_ex)
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

    return body


def _prepare_own(cfg: RunConfig, dataset: str, source: str | None, out_uri: str, force: bool) -> StageResult:
    """Your own conversations (messages or ShareGPT rows) -> the same artifact as a public dataset's."""
    from dorl.data import custom, rows

    check_dataset_name(dataset, "--dataset")
    key = f"data.sources.{dataset}"
    own = cfg.data.sources.get(dataset) or SourceConfig()
    source = source or own.path
    if not source:
        raise ConfigError(
            f"dataset {dataset!r} is not one of the public ones ({', '.join(SOURCES)}): give --source (a file or "
            f"folder of your conversations, local or s3://) or set {key}.path"
        )
    skip_bad = cfg.data.skip_bad
    with tempfile.TemporaryDirectory(prefix=f"dorl-source-{dataset}-") as tmp:
        files, layout = rows.locate(source, Path(tmp), round(cfg.data.max_file_mb * 2**20))
        started = time.perf_counter()  # throughput counts reading, rendering and writing, not downloading
        raw = {name: {"size": d.size, "sha256": d.sha256} for name, d in rows.digests(files, source).items()}
        dialogues, bad, facts = custom.read(files, own, key, skip_bad)
    total = sum(len(v) for v in dialogues.values())
    if total == 0:
        raise DataError(f"{dataset}: no usable conversations in {source}")
    parsed = time.perf_counter()
    log.info("%s: read %d conversations (%d skipped) in %.1f s", dataset, total, len(bad), parsed - started)
    read = {"roles": own.roles, "respond_as": own.respond_as}
    if "seeded" in facts["split_rule"]:
        read.update(split_fractions=own.split_fractions, split_seed=own.split_seed)
    config = {
        "dataset": dataset,
        "skip_bad": skip_bad,
        "source": {"format": facts["format"], "files": {rel: r["sha256"] for rel, r in raw.items()}},
        "read": read,
    }
    info = dict(
        dataset=dataset,
        synthetic=False,
        source=str(source),
        format=facts["format"],
        layout=layout,
        conversational=True,  # prompts are message lists (`dorl export` writes TRL's conversational format)
        respond_as=own.respond_as,
        roles=own.roles,
        raw_files=raw,
        split_rule=facts["split_rule"],
    )
    if skip_bad:
        info["skipped"] = {"count": len(bad), "dialogues": [b.to_dict() for b in bad[:MAX_LISTED]]}
    body = _writer(dataset, dialogues, info, started, parsed)
    return run_stage("data", out_uri, config, {}, body, force=force)


# ---------------------------------------------------------------- the commands


@click.group("data")
def data() -> None:
    """Prepare ABCD / MultiWOZ 2.2 / Taskmaster-3 or your own conversations, simulate dialogues, show sizes."""


@data.command("prepare")
@click.option(
    "--dataset",
    required=True,
    help=f"{', '.join(DATASETS)}, or a name of your own for your conversations (lowercase letters, digits, _ and -; "
    "with --source or data.sources.NAME.path).",
)
@click.option(
    "--source",
    help="Public dataset: a local copy of the raw files in the upstream layout (see docs/data.md); default: download "
    "and verify the public files (or data.source / data.simulate). Your own: a .jsonl / .json / .parquet file, a "
    "folder of them named by split, or a datasets.save_to_disk folder; local or s3://.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["messages", "sharegpt"]),
    help="Your conversations' row format (default: data.sources.NAME.format, else told from the first row).",
)
@click.option("--out", help="Output artifact URI (default: <root>/<run>/<dataset>/data).")
@click.option("--skip-bad", is_flag=True, help="Skip malformed dialogues (counted and listed in the manifest).")
@force_option
@config_options
def prepare_cmd(
    dataset: str, source: str | None, fmt: str | None, out: str | None, skip_bad: bool, force: bool, cfg
) -> None:
    """Turn a dataset's raw files into (context, response) examples and conversations per split."""
    import dataclasses

    from dorl.layout import stage_uri

    check_dataset_name(dataset, "--dataset")
    if skip_bad:
        cfg.data.skip_bad = True
    if fmt is not None:
        if dataset in DATASETS:
            raise ConfigError(f"--format is for your own conversations; {dataset} is read in its upstream format")
        own = cfg.data.sources.get(dataset) or SourceConfig()
        cfg.data.sources[dataset] = dataclasses.replace(own, format=fmt)
    art = prepare(cfg, dataset=dataset, source=source, out_uri=out or stage_uri(cfg, dataset, "data"), force=force)
    art = art.artifact
    counts = art.info.get("counts", {})
    summary = ", ".join(f"{s} {c['dialogues']} dialogues / {c['examples']} examples" for s, c in counts.items())
    click.echo(f"{art.uri}: {summary}")


@data.command("simulate")
@click.option("--format", "fmt", type=click.Choice(DATASETS), required=True, help="Raw format to write.")
@click.option("-n", "n", type=click.IntRange(min=1), required=True, help="Number of dialogues.")
@click.option("--seed", type=int, default=42, show_default=True, help="Same seed, same bytes.")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Folder to write (upstream layout).")
def simulate_cmd(fmt: str, n: int, seed: int, out: str) -> None:
    """Write N synthetic dialogues in a dataset's raw format, for `prepare --source OUT`."""
    from dorl.data.simulate import simulate

    click.echo(simulate(fmt, n, seed, out))


@data.command("stats")
@click.argument("uri")
@click.option("--tokenizer", help="Count tokens with 'gpt2', an HF tokenizer id / folder or a model artifact URI.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def stats_cmd(uri: str, tokenizer: str | None, as_json: bool) -> None:
    """Dialogues, examples and token-length percentiles per split of a data artifact."""
    from rich.console import Console

    from dorl.data.stats import stats, table

    result = stats(uri, tokenizer)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        Console().print(table(result))
