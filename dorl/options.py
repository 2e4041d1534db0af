"""Options shared by every stage command: the run configuration and --force."""

from __future__ import annotations

import functools

import click

from dorl import config as cfglib


def config_options(f):
    """Add --config FILE, --preset NAME and --set KEY=VALUE (repeatable); pass `cfg: RunConfig`."""

    @click.option("--config", "config_file", type=click.Path(dir_okay=False), help="Run config YAML.")
    @click.option("--preset", type=click.Choice(sorted(cfglib.PRESETS)), help="Named configuration to start from.")
    @click.option(
        "--set",
        "sets",
        multiple=True,
        metavar="KEY=VALUE",
        help="Override one config key, e.g. --set tf.lr=1e-4 (repeatable; see `dorl config keys`).",
    )
    @functools.wraps(f)
    def wrapper(*args, config_file=None, preset=None, sets=(), **kwargs):
        kwargs["cfg"] = cfglib.load(preset=preset, file=config_file, sets=sets)
        return f(*args, **kwargs)

    return wrapper


force_option = click.option("--force", is_flag=True, help="Replace an existing output made with another config.")
