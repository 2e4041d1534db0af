"""The relabel stage: candidates, rewards and returns for every context.

    relabel(cfg, data_uri=D, base_uri=TF, out_uri=O)                  # everything in one process
    relabel(cfg, data_uri=D, base_uri=TF, out_uri=O, shard=(i, n))    # shard i of n -> <out>/shards/i-of-n
    relabel(cfg, data_uri=D, base_uri=TF, out_uri=O, assemble=n)      # <out> from the n shard artifacts
    relabel(cfg, data_uri=D, scored=FILE, out_uri=O)                    # your own scored responses, no beams
    relabel(cfg, data_uri=D, base_uri=TF, scored=FILE, out_uri=O)       # both: the beams and your rows

Your own scored responses (`scored`, or `data.sources.<dataset>.scored` with `candidates: scored|both`; rows of
prompt, completion and reward or label, read by dorl/data/scored.py) become candidates numbered after the beams
(from 1 without beams: candidate 0, the data's human response, comes only with the beams), and their rewards are
cut into returns with the same bins as the beams'.

Work is cut into chunks of `relabel.chunk_size` contexts per split, and shard i of n takes every n-th chunk
(dorl/relabel/shards.py: the plan and the assembly). A chunk is always computed the same way, so the output
is the same whichever way the stage runs. A finished chunk is saved under `checkpoints/` (outside
the manifest, synced to S3) and a re-run after a kill reuses it; once the artifact is committed they are removed.

Output (docs/store.md, "Artifacts"): `candidates/{split}.parquet` (`CANDIDATE_COLUMNS`), the scored candidates and
nothing method-specific: each method builds its training set from them in the train stage
(dorl/methods/training_set.py, with the `relabel.seed` and return bins this artifact records), so adding a
method never invalidates a relabel artifact. (Artifacts made before that also hold `methods/<method>/`: unused.)
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from pathlib import Path

import click
import pandas as pd

from dorl import log as dlog
from dorl import readers
from dorl.config import RunConfig, to_dict
from dorl.data.scored import COLUMNS as SCORED_COLUMNS
from dorl.data.scored import read_scored, scored_source
from dorl.errors import ConfigError, DataError, StoreError
from dorl.layout import stage_uri
from dorl.options import config_options, force_option
from dorl.relabel.candidates import CANDIDATE_COLUMNS, CHUNK_COLUMNS, relabel_chunk
from dorl.relabel.returns import edges, to_returns
from dorl.relabel.shards import SHARD_STAGE, Chunk, assemble_shards, contexts, empty_chunk, plan, shard_uri
from dorl.store import Artifact, ArtifactWriter, StageContext, StageResult, run_stage

log = logging.getLogger("dorl.relabel")

STAGE = "relabel"
assert SCORED_COLUMNS == CHUNK_COLUMNS  # your own scored rows join relabel's chunk rows
EXAMPLE_COLUMNS = ("dialogue_id", "turn_index", "context", "response")


def stage_config(cfg: RunConfig) -> dict:
    """What the stage's output depends on (besides its inputs): the relabel and metrics sections, and the model's
    dtype and attention kernel where set."""
    out = {"relabel": to_dict(cfg.relabel), "metrics": to_dict(cfg.metrics)}
    return {**out, **cfg.model.inference_settings()}


def read_examples(data: Artifact, split: str) -> pd.DataFrame:
    name = f"examples/{split}.parquet"
    if name not in data.files:
        have = sorted(f.split("/")[1].removesuffix(".parquet") for f in data.files if f.startswith("examples/"))
        raise ConfigError(f"{data.uri} has no split {split!r} ({name}); it has {', '.join(have)} (relabel.splits)")
    frame = readers.read_parquet(data.path(name))
    missing = [c for c in EXAMPLE_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{data.uri}/{name}: missing column(s) {', '.join(missing)}")
    for col in EXAMPLE_COLUMNS:
        bad = frame[col].isna()
        if col != "turn_index":
            bad |= ~frame[col].map(lambda v: isinstance(v, str))
        if bad.any():
            i = int(bad.to_numpy().nonzero()[0][0])
            want = "an integer" if col == "turn_index" else "text"
            raise DataError(
                f"{data.uri}/{name}: record {i} (dialogue {frame['dialogue_id'].iloc[i]!r}): field {col} is "
                f"{frame[col].iloc[i]!r}, expected {want}"
            )
    return frame.reset_index(drop=True)


class Worker:
    """Computes chunks (or reuses their checkpoints); loads the model and the metric once, lazily."""

    def __init__(self, ctx: StageContext, cfg: RunConfig, data: Artifact, model: Artifact):
        self.ctx, self.cfg, self.data, self.model_art = ctx, cfg, data, model
        self.examples: dict[str, pd.DataFrame] = {}
        self._model = self._tokenizer = self._metric = None
        self.totals = {"contexts": 0, "candidates": 0, "pairs_scored": 0, "generate_s": 0.0, "score_s": 0.0}
        self.totals.update(seconds=0.0, chunks_computed=0, chunks_resumed=0)

    @property
    def metric(self):
        if self._metric is None:
            from dorl.metrics import get_metric

            self._metric = get_metric(self.cfg.relabel.reward, self.cfg.metrics)
        return self._metric

    def model(self):
        if self._model is None:
            import torch

            from dorl.engine.models import compute_dtype, inference_kwargs
            from dorl.metrics import resolve_device
            from dorl.tokenizer import check_special_tokens

            folder = self.model_art.local_dir()
            self._tokenizer = readers.tokenizer(folder)
            check_special_tokens(self._tokenizer, where=f"the tokenizer of {self.model_art.uri}")
            self._tokenizer.padding_side = "left"
            device = resolve_device(self.cfg.relabel.device)
            # model.dtype 'auto' here: the saved float32 on every device (a GPU proposes the CPU's candidates)
            dtype = compute_dtype(self.cfg.model, device, auto=torch.float32)
            kw = inference_kwargs(self.cfg.model)
            self._model = readers.causal_lm(folder, dtype=dtype, **kw).to(device).eval()
        return self._model, self._tokenizer

    def split(self, split: str) -> pd.DataFrame:
        if split not in self.examples:
            self.examples[split] = read_examples(self.data, split)
        return self.examples[split]

    def run(self, chunks: list[Chunk]) -> dict[str, pd.DataFrame]:
        """Candidate rows (CHUNK_COLUMNS) of `chunks`, per split, ordered by example."""
        self.ctx.out.pull("checkpoints")
        frames: dict[str, list[pd.DataFrame]] = {}
        with dlog.progress() as bar:
            task = bar.add_task("relabel", total=len(chunks))
            for chunk in chunks:
                frames.setdefault(chunk.split, []).append(self._chunk(chunk))
                bar.advance(task)
        return {s: pd.concat(f, ignore_index=True) for s, f in frames.items()}

    def _chunk(self, chunk: Chunk) -> pd.DataFrame:
        expected = (chunk.stop - chunk.start) * (self.cfg.relabel.num_candidates + 1)
        path = self.ctx.out.path(f"{chunk.checkpoint}/candidates.parquet")
        if path.is_file():
            try:
                frame = pd.read_parquet(path)
                if list(frame.columns) == CHUNK_COLUMNS and len(frame) == expected:
                    self.totals["chunks_resumed"] += 1
                    return frame
            except Exception as e:  # a torn file: compute the chunk again
                log.warning("%s: unreadable checkpoint (%s): recomputing", path, e)
        model, tokenizer = self.model()
        examples = self.split(chunk.split).iloc[chunk.start : chunk.stop]
        n_chunks = math.ceil(len(self.split(chunk.split)) / self.cfg.relabel.chunk_size)
        frame, stats = relabel_chunk(examples, chunk.start, model, tokenizer, self.metric, self.cfg.relabel)
        tmp = path.with_name(path.name + ".tmp")
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)  # a chunk file is complete or absent
        self.ctx.out.sync(chunk.checkpoint)
        for k in ("contexts", "candidates", "pairs_scored", "generate_s", "score_s", "seconds"):
            self.totals[k] += stats[k]
        self.totals["chunks_computed"] += 1
        log.info(
            "%s chunk %d/%d: %d contexts, %d candidates in %.1f s (generate %.1f s, score %.1f s): "
            "%.2f contexts/s, %.1f candidates/s",
            chunk.split,
            chunk.index + 1,
            n_chunks,
            stats["contexts"],
            stats["candidates"],
            stats["seconds"],
            stats["generate_s"],
            stats["score_s"],
            stats["contexts"] / stats["seconds"],
            stats["candidates"] / stats["seconds"],
        )
        return frame

    def throughput(self) -> dict:
        t = dict(self.totals)
        if t["seconds"] > 0:
            t["contexts_per_s"] = t["contexts"] / t["seconds"]
            t["candidates_per_s"] = t["candidates"] / t["seconds"]
        if t["score_s"] > 0:
            t["scoring_pairs_per_s"] = t["pairs_scored"] / t["score_s"]
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in t.items()}


def finalize(
    ctx: StageContext, cfg: RunConfig, rows: dict[str, pd.DataFrame], sizes: dict[str, int], imported=None
) -> None:
    """Returns and the candidates tables, from every split's chunk rows (and your own scored rows, `imported`)."""
    r = cfg.relabel
    bin_edges = edges(r)
    counts = {}
    for split in r.splits:
        table = rows.get(split, empty_chunk())
        if len(table) != sizes[split] * (r.num_candidates + 1):
            raise StoreError(
                f"relabel: split {split} has {len(table)} candidate rows, expected "
                f"{sizes[split] * (r.num_candidates + 1)} (missing chunks)"
            )
        if imported is not None:
            table = pd.concat([table, imported.rows[split][CHUNK_COLUMNS]], ignore_index=True)
        table = table.sort_values(["example_index", "candidate_index"], kind="stable")
        returns = to_returns(table["reward"].to_numpy(), bin_edges)
        returns[table["candidate_index"].to_numpy() == 0] = r.return_bins - 1  # the human response: top return
        table = table.drop(columns="example_index").assign(**{"return": returns}).reset_index(drop=True)
        table[CANDIDATE_COLUMNS].to_parquet(ctx.out.path(f"candidates/{split}.parquet"), index=False)
        model_rows = table[table["candidate_index"] > 0]
        counts[split] = {
            "contexts": int(table.groupby(["dialogue_id", "turn_index", "context"]).ngroups),
            "candidates": len(table),
            "tf_top": int((returns == r.return_bins - 1).sum()),
            "mean_reward": round(float(model_rows["reward"].mean()), 6) if len(model_rows) else None,
            "returns": {str(k): int((returns == k).sum()) for k in range(r.return_bins)},
        }
        if imported is not None:
            counts[split]["imported"] = len(imported.rows[split])
        log.info(
            "%s: %d contexts, %d candidates, %d in the top return bin",
            split,
            counts[split]["contexts"],
            len(table),
            counts[split]["tf_top"],
        )
    data = ctx.inputs["data"]
    beams = sum(sizes.values()) > 0 or imported is None
    ctx.info.update(
        dataset=data.info.get("dataset"),
        counts=counts,
        return_bins=r.return_bins,
        return_edges=bin_edges,
        # what candidate_index means here: 0 the data's human response and 1..n the beams (with beams), then
        # your own scored rows from `imported_from`
        candidates={
            "human": beams,
            "beams": r.num_candidates if beams else 0,
            "imported_from": imported.facts["first_candidate_index"] if imported is not None else None,
        },
    )
    if beams:
        ctx.info["generator"] = r.generator
    for key in ("conversational", "respond_as"):  # how `dorl export` writes prompts
        if key in data.info:
            ctx.info[key] = data.info[key]
    if imported is not None:
        ctx.info["scored"] = imported.facts
        ctx.info.setdefault("reward", imported.facts)  # no beams: the reward is yours


def _sizes(worker: Worker, splits: list[str]) -> dict[str, int]:
    return {s: len(worker.split(s)) for s in splits}


def relabel(
    cfg: RunConfig,
    *,
    data_uri: str,
    base_uri: str | None = None,
    scored: str | None = None,
    out_uri: str | None = None,
    shard: tuple[int, int] | None = None,
    assemble: int | None = None,
    force: bool = False,
) -> StageResult:
    data = Artifact(data_uri, expect_stage="data")
    scored, own, key = scored_source(cfg, data, scored, base_uri)  # how your scored rows are read, if any
    model = None
    if base_uri is not None:
        model = Artifact(base_uri)
        if not model.stage.startswith("train/"):
            raise StoreError(f"{base_uri} holds a '{model.stage}' artifact, expected a trained model (train/tf)")
    out_uri = out_uri or stage_uri(cfg, data.info.get("dataset", "data"), STAGE)
    config = stage_config(cfg)
    inputs = {"data": data, "model": model} if model is not None else {"data": data}
    if shard is not None and assemble is not None:
        raise ConfigError("choose --shard or --assemble, not both")
    if model is None and (shard is not None or assemble is not None):
        raise ConfigError("--shard and --assemble share out the beam search; your scored rows alone need neither")

    if shard is not None:
        index, count = shard
        if not 0 <= index < count:
            raise ConfigError(f"shard {index}/{count}: need 0 <= I < N")

        def shard_body(ctx: StageContext) -> None:
            worker = Worker(ctx, cfg, data, model)
            chunks = [
                c for c in plan(_sizes(worker, cfg.relabel.splits), cfg.relabel.chunk_size) if c.number % count == index
            ]
            rows = worker.run(chunks)
            for split in cfg.relabel.splits:
                rows.get(split, empty_chunk()).to_parquet(ctx.out.path(f"candidates/{split}.parquet"), index=False)
            ctx.info.update(
                shard=index,
                shards=count,
                chunks={s: [c.index for c in chunks if c.split == s] for s in cfg.relabel.splits},
                contexts=contexts(chunks, cfg.relabel.splits),  # the examples it holds: checked by the assembly
                reward=worker.metric.identity(),
            )
            ctx.metrics.update(worker.throughput())

        shard_config = {**config, "shard": {"index": index, "count": count}}
        uri = shard_uri(out_uri, index, count)
        return _drop_checkpoints(uri, run_stage(SHARD_STAGE, uri, shard_config, inputs, shard_body, force))

    imported = None
    if scored is not None:  # read and checked before anything is written
        first = 1 if model is None else cfg.relabel.num_candidates + 1
        with tempfile.TemporaryDirectory(prefix="dorl-scored-") as tmp:
            imported = read_scored(scored, data, own, key, first, round(cfg.data.max_file_mb * 2**20), Path(tmp))
        imported.rows = {s: imported.rows[s] for s in cfg.relabel.splits}
        mine = {"files": imported.files, "reward_name": own.reward_name}
        mine.update(split_fractions=own.split_fractions, split_seed=own.split_seed)
        if model is None:  # only what the returns depend on
            keep = ("splits", "threshold", "return_bins", "return_edges", "seed")
            made = {"relabel": {k: v for k, v in config["relabel"].items() if k in keep}, "scored": mine}
        else:
            made = {**config, "scored": mine}
    else:
        made = config

    def body(ctx: StageContext) -> None:
        ctx.exclude = ("checkpoints/", "shards/")
        if model is None:
            finalize(ctx, cfg, {}, {s: 0 for s in cfg.relabel.splits}, imported)
            return
        worker = Worker(ctx, cfg, data, model)
        sizes = _sizes(worker, cfg.relabel.splits)
        if assemble is None:
            rows = worker.run(plan(sizes, cfg.relabel.chunk_size))
            ctx.info["reward"] = worker.metric.identity()
            ctx.metrics.update(worker.throughput())
        else:
            rows = assemble_shards(ctx, out_uri, assemble, config, inputs, sizes)
        finalize(ctx, cfg, rows, sizes, imported)

    return _drop_checkpoints(out_uri, run_stage(STAGE, out_uri, made, inputs, body, force, keep=("shards/",)))


def _drop_checkpoints(uri: str, result: StageResult) -> StageResult:
    """The chunk checkpoints only serve resuming, which a committed artifact never does: removed (locally and in
    the store), so the folder holds only its files (e.g. for `load_dataset("parquet", data_dir=...)`)."""
    if not result.skipped:
        ArtifactWriter(uri).remove("checkpoints")
    return result


# ---------------------------------------------------------------- the command


def _parse_shard(ctx, param, value):
    if value is None:
        return None
    try:
        index, count = (int(x) for x in value.split("/"))
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected I/N, e.g. 0/4") from None
    if count < 1 or not 0 <= index < count:
        raise click.BadParameter(f"{value!r}: need N >= 1 and 0 <= I < N")
    return index, count


@click.command()
@click.option("--data", "data_uri", required=True, help="The `data` artifact (examples per split).")
@click.option("--base", "base_uri", help="The base model: a `train/tf` artifact (as `dorl train --base`).")
@click.option("--model", "old_model", hidden=True, help="Renamed to --base.")
@click.option(
    "--scored",
    help="Your own scored responses (rows of prompt, completion and reward or label; .jsonl/.json/.parquet, local "
    "or s3://): without --base the candidates are these rows alone, with it they join the beams. Default: "
    "data.sources.<dataset>.scored when its candidates are 'scored' or 'both'.",
)
@click.option("--out", "out_uri", help="Output artifact (default: <root>/<run>/<dataset>/relabel).")
@click.option(
    "--shard",
    metavar="I/N",
    callback=_parse_shard,
    help="Compute shard I (0-based) of N only, as its own artifact at <out>/shards/I-of-N.",
)
@click.option("--assemble", type=click.IntRange(min=1), metavar="N", help="Build <out> from its N shard artifacts.")
@config_options
@force_option
def relabel_cmd(cfg, data_uri, base_uri, old_model, scored, out_uri, shard, assemble, force):
    """Relabel every context: beam candidates of the base model, rewards and returns.

    Prompts are context + <_rep_start_> (last relabel.prompt_tokens tokens); relabel.num_candidates
    beam-search candidates each, scored against the human response with relabel.reward (BERTScore
    by default; see the metrics section). Work goes in chunks of relabel.chunk_size contexts: a
    killed run resumes from its finished chunks. With --shard I/N, N processes (pods, GPUs) each
    compute their share, and --assemble N builds the same artifact a single process would.
    Each method builds its training set from these candidates when it trains. With --scored, your own scored
    responses join the beams, or (without --base) are the candidates alone.
    """
    if old_model is not None:
        raise click.UsageError("--model was renamed to --base (the base `train/tf` model, as in `dorl train`)")
    if shard is not None and assemble is not None:
        raise click.UsageError("choose --shard or --assemble, not both")

    art = relabel(
        cfg,
        data_uri=data_uri,
        base_uri=base_uri,
        scored=scored,
        out_uri=out_uri,
        shard=shard,
        assemble=assemble,
        force=force,
    ).artifact
    click.echo(art.uri)
    if shard is None:
        for split, c in art.info.get("counts", {}).items():
            click.echo(f"  {split}: {c['contexts']} contexts, {c['candidates']} candidates, {c['tf_top']} top-return")
