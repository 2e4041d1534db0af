"""`dorl relabel`: candidates, rewards and the offline-RL training sets, in one process or in shards."""

from __future__ import annotations

import click

from dorl.options import config_options, force_option


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
def relabel(cfg, data_uri, base_uri, old_model, out_uri, shard, assemble, force):
    """Relabel every context: beam candidates of the base model, rewards, returns, method datasets.

    Prompts are context + <_rep_start_> (last relabel.prompt_tokens tokens); relabel.num_candidates
    beam-search candidates each, scored against the human response with relabel.reward (BERTScore
    by default; see the metrics section). Work goes in chunks of relabel.chunk_size contexts: a
    killed run resumes from its finished chunks. With --shard I/N, N processes (pods, GPUs) each
    compute their share, and --assemble N builds the same artifact a single process would.
    """
    if old_model is not None:
        raise click.UsageError("--model was renamed to --base (the base `train/tf` model, as in `dorl train`)")
    if base_uri is None:
        raise click.UsageError("Missing option '--base' (the base `train/tf` artifact).")
    if shard is not None and assemble is not None:
        raise click.UsageError("choose --shard or --assemble, not both")
    from dorl.relabel.stage import relabel as run

    art = run(
        cfg, data_uri=data_uri, base_uri=base_uri, out_uri=out_uri, shard=shard, assemble=assemble, force=force
    ).artifact
    click.echo(art.uri)
    if shard is None:
        for split, c in art.info.get("counts", {}).items():
            click.echo(f"  {split}: {c['contexts']} contexts, {c['candidates']} candidates, {c['tf_top']} top-return")
