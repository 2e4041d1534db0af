"""`dorl config keys` shows the defaults `dorl config show` resolves, including fields built by default_factory."""

import yaml

from tests.conftest import run_dorl


def keys_defaults(prefix: str) -> dict[str, str]:
    """key -> default column of `dorl config keys PREFIX` (one line per key: a wide table)."""
    r = run_dorl("config", "keys", prefix, env={"COLUMNS": "400"})
    assert r.returncode == 0, r.stderr
    out = {}
    for line in r.stdout.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) >= 4 and cells[1].startswith(prefix):
            out[cells[1]] = cells[3]
    return out


def test_keys_show_the_resolved_defaults():
    shown = yaml.safe_load(run_dorl("config", "show").stdout)
    defaults = keys_defaults("")
    checked = 0
    for section in ("finetune", "ilql", "k8s", "tf"):
        for key, value in shown[section].items():
            if isinstance(value, dict | list):
                continue
            if key == "train":
                continue
            assert defaults[f"{section}.{key}"] == repr(value), f"{section}.{key}"
            checked += 1
    for key, value in shown["ilql"]["train"].items():
        if not isinstance(value, dict | list):
            assert defaults[f"ilql.train.{key}"] == repr(value), f"ilql.train.{key}"
            checked += 1
    assert defaults["k8s.cpu_pod.memory"] == repr(shown["k8s"]["cpu_pod"]["memory"])
    assert checked > 60


def test_keys_table_prints_help_as_text_not_markup():
    """`[mlflow]` in a key's help is the pip extra to install, not a markup tag for the table to swallow."""
    r = run_dorl("config", "keys", "tracking", env={"COLUMNS": "400"})
    assert r.returncode == 0, r.stderr
    assert "pip install 'dorl[mlflow]'" in r.stdout and "pip install 'dorl[wandb]'" in r.stdout
