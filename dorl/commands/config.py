"""`dorl config keys|show`: every configuration key with its help, and a resolved configuration."""

from __future__ import annotations

import json

import click
import yaml
from rich.console import Console
from rich.table import Table
from rich.text import Text

from dorl import config as cfglib
from dorl.config.loader import describe
from dorl.options import config_options


@click.group("config")
def config() -> None:
    """Inspect the run configuration (keys, presets, resolved values)."""


@config.command("keys")
@click.argument("prefix", required=False, default="")
@click.option("--json", "as_json", is_flag=True, help="A JSON list of {key, type, default, help} instead of a table.")
def keys(prefix: str, as_json: bool) -> None:
    """List configuration keys (optionally those starting with PREFIX) with type, default and help."""
    if as_json:
        rows = [dict(zip(("key", "type", "default", "help"), r)) for r in describe(cfglib.RunConfig)]
        click.echo(json.dumps([r for r in rows if r["key"].startswith(prefix)], indent=2, default=str))
        return
    table = Table(show_lines=False)
    for col in ("key", "type", "default", "help"):
        table.add_column(col, overflow="fold")
    # The defaults are read off the resolved configuration, what `dorl config show` prints: a section
    # built by a default_factory (methods, ilql.train, k8s) has other defaults than its class.
    resolved = cfglib.load()
    for key, tp, default, help_ in describe(cfglib.RunConfig):
        if key.startswith(prefix):  # a key under a mapping's <name> (data.sources.<name>.path): its class default
            value = default if "<name>" in key else resolved_value(resolved, key)
            table.add_row(*map(Text, (key, tp, repr(value), help_)))  # text, not markup: `pip install 'dorl[mlflow]'`
    Console().print(table)


def resolved_value(cfg, key: str):
    value = cfg
    for part in key.split("."):
        value = value[part] if isinstance(value, dict) else getattr(value, part)
    return value


@config.command("show")
@config_options
def show(cfg) -> None:
    """Print the resolved configuration as YAML (defaults < preset < file < --set)."""
    click.echo(yaml.safe_dump(cfglib.to_dict(cfg), sort_keys=False))
