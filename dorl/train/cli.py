"""`dorl train`: the base model (tf) or a method model from the relabelled data."""

from __future__ import annotations

import click

from dorl import methods
from dorl.options import config_options, force_option


@click.command("train")
@click.option(
    "--method",
    required=True,
    type=click.Choice(methods.names()),
    help=f"{methods.BASE}: the base model from the data artifact; {', '.join(methods.relabelled())}: from a relabel "
    "artifact and --base.",
)
@click.option(
    "--seed",
    type=int,
    default=None,
    help="Training seed for this run: sets the method's TrainConfig.seed (tf.seed, finetune.seed, ilql.train.seed); "
    "the pipeline passes each of pipeline.seeds. Default: the config's.",
)
@click.option("--data", "data_uri", required=True, help="Input: a `data` artifact (tf) or a `relabel` artifact.")
@click.option("--base", "base_uri", default=None, help="The base `train/tf` artifact the methods start from.")
@click.option("--out", "out_uri", required=True, help="Output artifact URI (local folder or s3://bucket/prefix).")
@config_options
@force_option
def train(cfg, method: str, seed: int | None, data_uri: str, base_uri: str | None, out_uri: str, force: bool) -> None:
    """Train a model with DeepSpeed; one process here, or N per node under torchrun / `deepspeed`.

    \b
    dorl train --method tf --data runs/demo/abcd/data --out runs/demo/abcd/tf --preset tiny
    dorl train --method dt --data runs/demo/abcd/relabel --base runs/demo/abcd/tf --out runs/demo/abcd/dt
    dorl train --method dt --seed 1 --data runs/demo/abcd/relabel --base runs/demo/abcd/tf \\
        --out runs/demo/abcd/seed-1/dt
    torchrun --nproc_per_node 8 -m dorl train --method tf --data s3://b/run/abcd/data --out s3://b/run/abcd/tf

    Killed and run again with the same arguments, it resumes from its last checkpoint.
    """
    from dorl.train.stage import train as run

    result = run(cfg, method=method, seed=seed, data_uri=data_uri, base_uri=base_uri, out_uri=out_uri, force=force)
    click.echo(result.artifact.uri)
