"""`dorl generate --model URI (--context TEXT | --data URI [--split test] [-n N]) [-k K] [--json]`:
the agent's reply a trained model suggests, as its method prompts and decodes (see `dorl.suggest`)."""

from __future__ import annotations

import json

import click

from dorl import methods, readers
from dorl.errors import ConfigError, DataError
from dorl.options import config_options


def user_text(text: str, what: str, whole_context: bool = False) -> str:
    """`text` a person typed (an argument, a line of stdin), checked: UTF-8 (Python hands undecodable bytes over as
    lone surrogates), and no special token of dorl's format in plain text (a person's turn cannot open or close
    turns); `whole_context`: a context in dorl's format (`<_soc_>…`), whose tokens are its own. DataError: one line."""
    from dorl.text import SPECIAL_TOKENS

    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        byte = text[e.start].encode("utf-8", "surrogateescape").hex()
        raise DataError(f"{what} is not UTF-8 text (byte 0x{byte} at character {e.start})") from None
    if not whole_context:
        found = [t for t in SPECIAL_TOKENS if t in text]
        if found:
            raise DataError(
                f"{what} holds {found[0]}, one of the model's special tokens: they are dorl's format, not text "
                "a person types"
            )
    return text


def show_turns(context: str) -> None:
    from dorl.suggest import turns_of

    for speaker, text in turns_of(context):
        click.echo(click.style(f"  {speaker:>8}: ", fg="cyan" if speaker == "customer" else "green") + text)


def show_suggestions(suggestions, indent: str = "  ") -> None:
    for j, s in enumerate(suggestions, 1):
        value = f"  (value {s.value:+.3f})" if s.value is not None else ""
        click.echo(f"{indent}{click.style(f'{j}.', bold=True)} {s.text or '(empty)'}{click.style(value, dim=True)}")


@click.command("generate")
@click.option(
    "--model", "model_uri", required=True, help="Model artifact (train/<method>) or a folder pulled from one."
)
@click.option(
    "--method",
    type=click.Choice(methods.names()),
    help="Must agree with the model's manifest (stage train/<method>), which is read anyway.",
)
@click.option("--context", help="A plain customer message, or a context in dorl's format (<_soc_>…).")
@click.option("--data", "data_uri", help="Data artifact: generate for its examples instead of --context.")
@click.option("--split", default="test", show_default=True, help="Split of --data.")
@click.option("-n", "n", type=int, default=5, show_default=True, help="First N examples of the split.")
@click.option("-k", "k", type=int, default=None, help="Responses per context (default eval.num_responses).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per context (JSON lines) on stdout.")
@config_options
def generate(model_uri, method, context, data_uri, split, n, k, as_json, cfg) -> None:
    """Suggest the agent's next reply with a trained model: its method's own prompt (DT asks for the top
    return) and decoding (eval.*, ilql.* for ILQL; change them with --set, e.g. --set ilql.beta=4)."""
    from dorl.store import Artifact
    from dorl.suggest import Suggester, as_context

    if (context is None) == (data_uri is None):
        raise ConfigError("give either --context TEXT or --data URI")
    if n < 1:
        raise ConfigError(f"-n must be >= 1, got {n}")
    rows: list[dict] = []
    if context is not None:
        from dorl.text import SOC

        context = user_text(context, "--context", whole_context=context.startswith(SOC))
        rows.append({"context": as_context(context)})
    else:
        data = Artifact(data_uri, expect_stage="data")
        name = f"examples/{split}.parquet"
        if name not in data.files:
            raise DataError(f"{data.uri} has no {name} (splits: train, validation, test)")
        df = readers.read_parquet(data.path(name)).head(n)
        for r in df.itertuples(index=False):
            rows.append(
                {"dialogue_id": r.dialogue_id, "turn_index": int(r.turn_index), "context": r.context}
                | {"true_response": r.response}
            )
    suggester = Suggester(cfg, model_uri, method, k)
    if not as_json:
        click.echo(click.style(suggester.describe(), dim=True))
    results = suggester.suggest([r["context"] for r in rows])
    for i, (row, suggestions) in enumerate(zip(rows, results, strict=True)):
        if as_json:
            out = {
                "method": suggester.name,
                **row,
                "prompt": suggester.prompt(row["context"]),
                "responses": [s.text for s in suggestions],
            }
            if any(s.value is not None for s in suggestions):  # a method with values (ILQL)
                out["values"] = [s.value for s in suggestions]
            click.echo(json.dumps(out, ensure_ascii=False))
            continue
        where = f"  {row['dialogue_id']}, turn {row['turn_index']}" if "dialogue_id" in row else ""
        click.echo(click.style(f"\n[{i + 1}]{where}", bold=True))
        show_turns(row["context"])
        if "true_response" in row:
            click.echo(click.style("     human: ", fg="yellow") + row["true_response"])
        click.echo(click.style("     model:", fg="magenta"))
        show_suggestions(suggestions, indent="    ")
