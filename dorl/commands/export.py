"""`dorl export`: a relabel artifact's scored candidates as TRL-ready datasets (an artifact of JSON Lines files).

    dorl export --relabel runs/demo/mylogs/relabel --out runs/demo/mylogs/trl [--kinds sft,kto,dpo] [--splits ...]
                [--format auto|conversational|standard]

Writes `<kind>/<split>.jsonl` for each kind (dorl/relabel/export.py: SFT rows of the top return, KTO rows with their
label, DPO pairs of each context's best and worst candidate), in TRL's conversational format when the data was your
own conversations, else dorl's prompt text (`--format` picks: conversational suits a chat model with any data).
Load one with `datasets.load_dataset("json", data_dir=f"{out}/kto")` (the file names are the splits) and hand it to
TRL's `KTOTrainer` (`SFTTrainer`, `DPOTrainer`) as it is.
"""

from __future__ import annotations

import json
import logging

import click

from dorl.errors import ConfigError
from dorl.store import Artifact, StageResult, run_stage

log = logging.getLogger("dorl.export")
STAGE = "export/trl"
FORMATS = ("auto", "conversational", "standard")


def export(
    relabel_uri: str, out_uri: str, kinds: list[str], splits: list[str], force: bool = False, form: str = "auto"
) -> StageResult:
    from dorl.methods.training_set import read_candidates, return_bins
    from dorl.relabel.export import KINDS, Format, trl_rows

    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise ConfigError(f"--kinds: {', '.join(unknown) or 'none'} is not one of {', '.join(KINDS)}")
    if form not in FORMATS:
        raise ConfigError(f"--format: {form} is not one of {', '.join(FORMATS)}")
    relabel = Artifact(relabel_uri, expect_stage="relabel")
    bins = return_bins(relabel)
    missing = [s for s in splits if f"candidates/{s}.parquet" not in relabel.files]
    if missing:
        raise ConfigError(f"--splits: {relabel.uri} has no candidates of {', '.join(missing)} (relabel.splits)")
    # auto: the source's own form; a public dataset's contexts (customer/agent turns) read as user/assistant too
    conversational = bool(relabel.info.get("conversational")) if form == "auto" else form == "conversational"
    fmt = Format(conversational, relabel.info.get("respond_as", "assistant"))
    tables = {s: read_candidates(relabel, s, bins) for s in splits}  # every field checked before writing

    def body(ctx) -> None:
        counts: dict = {}
        for split, table in tables.items():
            rows, skipped = trl_rows(table, bins, fmt)
            for kind in kinds:
                path = ctx.out.path(f"{kind}/{split}.jsonl")
                path.parent.mkdir(parents=True, exist_ok=True)
                with open(path, "w", encoding="utf-8") as f:
                    for row in rows[kind]:
                        f.write(json.dumps(row, ensure_ascii=False) + "\n")
                counts.setdefault(kind, {})[split] = len(rows[kind])
            if "dpo" in kinds:
                counts.setdefault("dpo_skipped", {})[split] = skipped
        ctx.info.update(
            dataset=relabel.info.get("dataset"),
            format="conversational" if fmt.conversational else "standard (dorl's prompt text)",
            counts=counts,
            return_bins=bins,
        )
        log.info("export: %s", ", ".join(f"{k} {sum(v.values())}" for k, v in counts.items() if k in kinds))

    config = {"kinds": kinds, "splits": splits, "format": "conversational" if conversational else "standard"}
    return run_stage(STAGE, out_uri, config, {"relabel": relabel}, body, force=force)


@click.command("export")
@click.option("--relabel", "relabel_uri", required=True, help="A relabel artifact (its scored candidates).")
@click.option("--out", "out_uri", required=True, help="Output artifact: <kind>/<split>.jsonl (local or s3://).")
@click.option("--kinds", default="sft,kto,dpo", show_default=True, help="Comma-separated: sft, kto, dpo.")
@click.option("--splits", default="train,validation", show_default=True, help="Comma-separated candidate splits.")
@click.option(
    "--format",
    "form",
    default="auto",
    show_default=True,
    help="conversational (TRL's message lists: for a chat model), standard (dorl's prompt text) or auto (the "
    "source's: conversational for your own conversations, standard for the public datasets).",
)
@click.option("--force", is_flag=True, help="Replace an existing output made with another config.")
def export_cmd(relabel_uri: str, out_uri: str, kinds: str, splits: str, form: str, force: bool) -> None:
    """Write a relabel artifact's scored candidates as TRL-ready SFT, KTO and DPO datasets (JSON Lines)."""
    art = export(
        relabel_uri, out_uri, [k for k in kinds.split(",") if k], [s for s in splits.split(",") if s], force, form
    ).artifact
    click.echo(art.uri)
    for kind, per_split in art.info["counts"].items():
        click.echo(f"  {kind}: " + ", ".join(f"{s} {n}" for s, n in per_split.items()))
